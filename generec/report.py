"""Readable end-of-run and leaderboard tables (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

MAIN_METRICS = ("hr", "ndcg", "mrr")


def print_run_table(record: dict, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(
        title=f"{record['model']} on {record['dataset']['name']} (seed {record['seed']}, "
        f"best epoch {record['best_epoch']})"
    )
    table.add_column("metric")
    for split in ("valid", "test"):
        table.add_column(split, justify="right")
    keys = [k for k in record["metrics"]["valid"] if k.split("@")[0] in MAIN_METRICS]
    for k in sorted(keys, key=lambda k: (MAIN_METRICS.index(k.split("@")[0]), int(k.split("@")[1]))):
        table.add_row(k, *(f"{record['metrics'][s].get(k, float('nan')):.4f}" for s in ("valid", "test")))
    console.print(table)
    console.print(
        f"{record['train_seconds_per_epoch']:.2f} s/epoch over {record['epochs_run']} epochs, "
        f"{record['eval_seconds']:.2f} s/eval, peak memory {record['peak_memory_mib']:.0f} MiB"
    )

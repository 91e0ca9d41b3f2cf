"""Minimal leaderboard: mean +- std over seeds per (dataset, protocol, model)."""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

from rich.console import Console
from rich.table import Table

from generec.results import read_records


def group_records(records: list[dict], metrics: list[str], split: str = "test") -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        d = r["dataset"]
        groups[(d["name"], d.get("protocol"), r["model"])].append(r)
    rows = []
    for (dataset, protocol, model), recs in sorted(groups.items()):
        row = {"dataset": dataset, "protocol": protocol, "model": model, "seeds": len(recs)}
        for m in metrics:
            vals = [r["metrics"][split][m] for r in recs if m in r["metrics"].get(split, {})]
            row[m] = (
                (statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0) if vals else None
            )
        row["s/epoch"] = statistics.fmean(r["train_seconds_per_epoch"] for r in recs)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="generec leaderboard")
    parser.add_argument("folders", nargs="*", default=["results"])
    parser.add_argument("--metrics", default="hr@10,ndcg@10,mrr@10,recall@20")
    parser.add_argument("--split", default="test", choices=["valid", "test"])
    args = parser.parse_args(argv)
    metrics = args.metrics.split(",")
    rows = group_records(read_records(*args.folders), metrics, args.split)
    table = Table(title=f"generec leaderboard ({args.split})")
    for col in ("dataset", "protocol", "model", "seeds", *metrics, "s/epoch"):
        table.add_column(col, justify="right" if col not in ("dataset", "protocol", "model") else "left")
    for row in rows:
        cells = [row["dataset"], str(row["protocol"]), row["model"], str(row["seeds"])]
        cells += ["-" if row[m] is None else f"{row[m][0]:.4f} ± {row[m][1]:.4f}" for m in metrics]
        cells.append(f"{row['s/epoch']:.2f}")
        table.add_row(*cells)
    Console().print(table)
    return 0

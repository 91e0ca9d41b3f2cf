"""Seconds of one full-ranking validation pass: batches in width order (generec's loader) vs user order.

Trimmed evaluation batches are as wide as their longest row. In user order nearly every batch of a
short-sequence dataset holds one user at ``max_len``, so the encoder pays for 50 positions per row;
in width order each batch pays for its own rows. The script runs the datamodule's real
``val_dataloader`` (width order) and the same rows in user order through a seeded SASRec, checks that
the metrics agree, and prints best-of-N seconds as JSON.

    GENEREC_DATA_DIR=../shared/data python scripts/bench/eval_order.py --dataset toys --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from generec.data.datamodule import SeqDataModule  # noqa: E402
from generec.eval.metrics import MetricAccumulator, target_ranks  # noqa: E402
from generec.eval.ranking import prepare_scores  # noqa: E402
from generec.models.sasrec import SASRec  # noqa: E402


@torch.no_grad()
def evaluate(model: SASRec, batches) -> tuple[float, dict[str, float], int]:
    """(seconds, metrics, encoder positions) of one pass over ``batches``."""
    acc = MetricAccumulator((10, 20))
    positions = 0
    t0 = time.perf_counter()
    for b in batches:
        positions += b["input_ids"].numel()
        acc.update(target_ranks(prepare_scores(model.score(b), b.get("history")), b["targets"]))
    return time.perf_counter() - t0, acc.compute(), positions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="toys")
    p.add_argument("--eval-batch-size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dm = SeqDataModule(registry=args.dataset, protocol="last", eval_batch_size=args.eval_batch_size)
    dm.setup()
    dm.set_trimming(True)
    torch.manual_seed(0)
    model = SASRec(num_items=dm.num_items, max_len=dm.max_len).eval()
    rows = dm.eval_rows["valid"]
    orders = {
        "width order (val_dataloader)": lambda: dm.val_dataloader(),
        "user order": lambda: (
            rows[torch.arange(i, min(i + args.eval_batch_size, len(rows)))]
            for i in range(0, len(rows), args.eval_batch_size)
        ),
    }
    out = {}
    for name, batches in orders.items():
        runs = [evaluate(model, batches()) for _ in range(args.repeats)]
        out[name] = {"best_s": min(r[0] for r in runs), "positions": runs[0][2], "metrics": runs[0][1]}
    a, b = (out[k]["metrics"] for k in orders)
    same = all(abs(a[k] - b[k]) <= 1e-6 * max(abs(b[k]), 1e-12) for k in b)
    report = {
        "dataset": args.dataset,
        "users": len(rows),
        "items": dm.num_items,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "same_metrics": same,
        "speedup": out["user order"]["best_s"] / out["width order (val_dataloader)"]["best_s"],
        **{k: {"best_s": round(v["best_s"], 3), "positions": v["positions"]} for k, v in out.items()},
    }
    print(json.dumps(report, indent=1))
    if not same:
        sys.exit("metrics differ between the two orders")


if __name__ == "__main__":
    main()

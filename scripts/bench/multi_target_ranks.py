"""Seconds to rank several held-out targets per user among the whole catalogue (the ComiRec protocol).

Compares generec's binned count (``generec.eval.metrics.target_ranks``: bucket every item score between
the user's sorted target scores, one suffix sum) with the full per-user sort it replaced, on random scores
shaped like a Beauty evaluation batch. Both must return identical ranks; the script checks that first.

    python scripts/bench/multi_target_ranks.py --users 1024 --items 12101 --targets 40 --threads 1
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

from generec.eval.metrics import PADDED_RANK, target_ranks  # noqa: E402


def sorted_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The previous implementation: one full sort per user, then a bisection per target."""
    real = scores[:, 1:]
    ascending = real.sort(dim=1).values.contiguous()
    at_least = real.shape[1] - torch.searchsorted(
        ascending, scores.gather(1, targets).contiguous(), side="left"
    )
    return torch.where(targets > 0, at_least - 1, PADDED_RANK)


def best_seconds(fn, scores: torch.Tensor, targets: torch.Tensor, repeats: int) -> float:
    fn(scores, targets)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(scores, targets)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=1024)
    p.add_argument("--items", type=int, default=12101)
    p.add_argument("--targets", type=int, default=40, help="target slots per user (padded)")
    p.add_argument(
        "--fill", type=float, default=0.2, help="share of the slots after the fifth that hold a target"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(args.users, args.items + 1, generator=g)
    scores[:, 0] = -torch.inf
    targets = torch.randint(1, args.items + 1, (args.users, args.targets), generator=g)
    keep = torch.rand(args.users, args.targets, generator=g) < args.fill
    keep[:, :5] = True
    targets = targets * keep
    if not torch.equal(sorted_ranks(scores, targets), target_ranks(scores, targets)):
        raise SystemExit("the two implementations disagree")
    old = best_seconds(sorted_ranks, scores, targets, args.repeats)
    new = best_seconds(target_ranks, scores, targets, args.repeats)
    print(json.dumps({
        "users": args.users, "items": args.items, "target_slots": args.targets, "threads": args.threads,
        "sort_s": round(old, 4), "binned_s": round(new, 4), "speedup": round(old / new, 2),
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()

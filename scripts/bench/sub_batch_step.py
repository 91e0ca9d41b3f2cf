"""CPU seconds per SASRec training step (forward + backward + Adam) on Beauty: whole vs sub-batched.

CPU time (user + sys, from getrusage) rather than wall time, so the figure holds on a shared machine;
sys time shows the allocator's page-fault cost (run once plain and once with LD_PRELOAD=tcmalloc). Each
configuration runs in a fresh process: glibc's malloc adapts its mmap threshold to what was freed before,
so configurations measured one after another in one process would not be independent.

    OMP_NUM_THREADS=1 GENEREC_DATA_DIR=../shared/data python scripts/bench/sub_batch_step.py
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys

import torch

from generec.data.datamodule import SeqDataModule
from generec.models.sasrec import SASRec


def cpu_seconds_per_step(dm: SeqDataModule, parts: int, steps: int, warmup: int = 2) -> tuple[float, float]:
    """(user, sys) CPU seconds per step, after ``warmup`` steps."""
    dm.sub_batches = parts
    torch.manual_seed(0)
    model = SASRec(num_items=dm.num_items)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = iter(dm.train_dataloader())
    for i in range(warmup + steps):
        if i == warmup:
            r0 = resource.getrusage(resource.RUSAGE_SELF)
        opt.zero_grad()
        model.compute_loss(next(batches)).backward()
        opt.step()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return (r1.ru_utime - r0.ru_utime) / steps, (r1.ru_stime - r0.ru_stime) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="beauty")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--parts", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--one", nargs=2, metavar=("PROTOCOL", "PARTS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    batch_size = {"prefixes": 2048, "all_positions": 256}
    if args.one:  # the child process: one configuration
        protocol, parts = args.one[0], int(args.one[1])
        dm = SeqDataModule(registry=args.dataset, batch_size=batch_size[protocol], protocol=protocol, seed=1)
        dm.setup()
        dm.set_trimming(True)
        user, sys_ = cpu_seconds_per_step(dm, parts, args.steps)
        allocator = os.path.basename(os.environ.get("LD_PRELOAD", "")) or "glibc"
        if allocator == "glibc" and "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
            allocator = "glibc, tuned"  # no mmap/trim churn: see docs/benchmarks.md
        row = [
            protocol,
            batch_size[protocol],
            parts,
            allocator,
            f"{user:.3f}",
            f"{sys_:.3f}",
            f"{user + sys_:.3f}",
        ]
        print("| " + " | ".join(map(str, row)) + " |", flush=True)
        return
    print("| protocol | batch | sub_batches | allocator | user s/step | sys s/step | CPU s/step |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for protocol in batch_size:
        for parts in args.parts:
            cmd = [sys.executable, __file__, "--dataset", args.dataset, "--steps", str(args.steps)]
            subprocess.run([*cmd, "--one", protocol, str(parts)], check=True)


if __name__ == "__main__":
    main()

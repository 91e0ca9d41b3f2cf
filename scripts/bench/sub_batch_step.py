"""CPU seconds per training step (forward + backward + Adam) of SASRec or a contrastive variant: whole vs sub-batched.

CPU time (user + sys, from getrusage) rather than wall time, so the figure holds on a shared machine;
sys time shows the allocator's page-fault cost (run once plain and once with LD_PRELOAD=tcmalloc). Each
configuration runs in a fresh process: glibc's malloc adapts its mmap threshold to what was freed before,
so configurations measured one after another in one process would not be independent.

    OMP_NUM_THREADS=1 GENEREC_DATA_DIR=../shared/data python scripts/bench/sub_batch_step.py
    # DA4Rec's setting (one row per sequence, batch 1024) for the contrastive baselines:
    OMP_NUM_THREADS=1 GENEREC_DATA_DIR=../shared/data python scripts/bench/sub_batch_step.py \
        --dataset toys --protocols last --models sasrec cl4srec duorec
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys

import torch

from generec.data.datamodule import SeqDataModule
from generec.models.ac_sasrec import ACSASRec
from generec.models.cl4srec import CL4SRec
from generec.models.duorec import DuoRec
from generec.models.sasrec import SASRec

MODELS = {"sasrec": SASRec, "ac_sasrec": ACSASRec, "cl4srec": CL4SRec, "duorec": DuoRec}
BATCH_SIZE = {"prefixes": 2048, "all_positions": 256, "last": 1024}  # RecBole's, generec's, DA4Rec's


def cpu_seconds_per_step(
    dm: SeqDataModule, model_name: str, parts: int, steps: int, warmup: int = 2
) -> tuple[float, float]:
    """(user, sys) CPU seconds per step, after ``warmup`` steps."""
    dm.sub_batches = parts
    torch.manual_seed(0)
    model = MODELS[model_name](num_items=dm.num_items)
    if isinstance(model, DuoRec):  # what on_fit_start does in a run: same-target positives
        rows = dm.train_rows.tensors
        model.set_positive_pool(rows["input_ids"], rows["targets"][:, -1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = iter(dm.train_dataloader())
    for i in range(warmup + steps):
        if i == warmup:
            r0 = resource.getrusage(resource.RUSAGE_SELF)
        opt.zero_grad()
        if isinstance(model, ACSASRec):  # its two losses, each into its own parameter group
            model.backward_both(*model.calibrated_losses(next(batches)))
        else:
            model.compute_loss(next(batches)).backward()
        opt.step()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return (r1.ru_utime - r0.ru_utime) / steps, (r1.ru_stime - r0.ru_stime) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="beauty")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--parts", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--protocols", nargs="+", default=["prefixes", "all_positions"], choices=list(BATCH_SIZE))
    ap.add_argument("--models", nargs="+", default=["sasrec"], choices=list(MODELS))
    ap.add_argument("--batch-size", type=int, default=0, help="0: the protocol's usual batch")
    ap.add_argument("--one", nargs=3, metavar=("MODEL", "PROTOCOL", "PARTS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.one:  # the child process: one configuration
        model_name, protocol, parts = args.one[0], args.one[1], int(args.one[2])
        batch_size = args.batch_size or BATCH_SIZE[protocol]
        dm = SeqDataModule(registry=args.dataset, batch_size=batch_size, protocol=protocol, seed=1)
        dm.setup()
        dm.set_trimming(True)
        user, sys_ = cpu_seconds_per_step(dm, model_name, parts, args.steps)
        allocator = os.path.basename(os.environ.get("LD_PRELOAD", "")) or "glibc"
        if allocator == "glibc" and "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
            allocator = "glibc, tuned"  # no mmap/trim churn: see docs/benchmarks.md
        row = [
            model_name,
            args.dataset,
            protocol,
            batch_size,
            parts,
            allocator,
            f"{user:.3f}",
            f"{sys_:.3f}",
            f"{user + sys_:.3f}",
        ]
        print("| " + " | ".join(map(str, row)) + " |", flush=True)
        return
    print(
        "| model | dataset | protocol | batch | sub_batches | allocator | user s/step | sys s/step | CPU s/step |"
    )
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    cmd = [sys.executable, __file__, "--dataset", args.dataset, "--steps", str(args.steps)]
    cmd += ["--batch-size", str(args.batch_size)]
    for model_name in args.models:
        for protocol in args.protocols:
            for parts in args.parts:
                subprocess.run([*cmd, "--one", model_name, protocol, str(parts)], check=True)


if __name__ == "__main__":
    main()

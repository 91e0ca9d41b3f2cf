"""Scaling curves of SASRec's training step: time and peak memory vs catalogue size, sequence length
and batch size, for the plain full-softmax CE, the chunked CE and the sampled softmax.

Catalogue sizes above the real one are synthetic ids laid on the real sequence structure: each real
item gets a distinct random id in 1..N (N >= real size) or id mod N (N < real size), so sequence
lengths, repetitions and co-occurrence are the real dataset's. Every configuration runs in a fresh
process with an address-space budget, so "does not fit" is a measured outcome (an allocation
failure inside the budget), not a guess, and one configuration's allocator state cannot leak into
the next.

    python scripts/bench/scaling.py --out bench_out/scaling            # all three sweeps
    python scripts/bench/scaling.py --sweep catalogue --device cuda    # one sweep, on a GPU
    python scripts/bench/scaling.py --report bench_out/scaling         # markdown tables
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHUNK = 16384
SAMPLED_NEGATIVES = 1024
LOSSES = {  # name -> SASRec loss kwargs
    "plain_ce": {"loss": "ce", "ce_chunk_size": 0},
    "chunked_ce": {"loss": "ce", "ce_chunk_size": CHUNK},
    "sampled_ce": {"loss": "sampled_ce", "num_negatives": SAMPLED_NEGATIVES},
}
SWEEPS = {
    # dataset, max_len, batch, catalogue, losses: one value list per sweep
    "catalogue": [
        {"dataset": "beauty", "max_len": 50, "batch": 256, "items": n, "loss": loss}
        for n in (10_000, 100_000, 300_000, 1_000_000)
        for loss in LOSSES
    ],
    "length": [
        {"dataset": "ml-100k", "max_len": n, "batch": 64, "items": 0, "loss": "plain_ce", "trim": False}
        for n in (50, 100, 200, 500, 1000)
    ],
    "batch": [
        {"dataset": "beauty", "max_len": 50, "batch": b, "items": 100_000, "loss": loss}
        for b in (64, 256, 1024, 2048)
        for loss in ("plain_ce", "chunked_ce")
    ],
}


def _synthetic_ids(items, num_real: int, n: int, seed: int = 0):
    """Real ids 1..num_real -> ids in 1..n, distinct when n >= num_real (0 stays padding)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    if n >= num_real:
        table = torch.cat([torch.zeros(1, dtype=torch.long), torch.randperm(n, generator=g)[:num_real] + 1])
    else:
        table = torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(num_real) % n + 1])
    return table[items]


def measure(cfg: dict, device: str, steps: int, warmup: int, threads: int) -> dict:
    """One configuration, in this process: median step time (s) and peak memory (MiB)."""
    import torch

    from generec.data.datamodule import SeqDataModule
    from generec.models.sasrec import SASRec

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dm = SeqDataModule(registry=cfg["dataset"], max_len=cfg["max_len"], batch_size=cfg["batch"], seed=0)
    dm.setup()
    dm.set_trimming(cfg.get("trim", True))
    n_items = cfg["items"] or dm.num_items
    batches = []
    for b in dm.train_dataloader():
        batches.append({k: _synthetic_ids(v, dm.num_items, n_items).to(device) for k, v in b.items()})
        if len(batches) == steps + warmup:
            break
    model = SASRec(num_items=n_items, max_len=cfg["max_len"], **LOSSES[cfg["loss"]]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = []
    for i, batch in enumerate(batches):
        sync()
        t0 = time.perf_counter()
        loss = model.compute_loss(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    tokens = [int((b["targets"] > 0).sum()) for b in batches[warmup:]]
    out = {
        "step_seconds": statistics.median(times),
        "supervised_positions_per_step": statistics.median(tokens),
        "width": statistics.median([b["input_ids"].shape[1] for b in batches[warmup:]]),
        "items": n_items,
        "loss_value": float(loss.detach()),
    }
    if device.startswith("cuda"):
        out["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["peak_memory_mib"], out["step_memory_mib"] = peak, peak - rss_before
    return out


def _child(args) -> None:
    cfg = json.loads(args.child)
    if args.memory_gib and not args.device.startswith("cuda"):
        limit = int(args.memory_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        result = {"status": "ok", **measure(cfg, args.device, args.steps, args.warmup, args.threads)}
    except (MemoryError, RuntimeError) as err:  # CPU allocator failure or torch.cuda.OutOfMemoryError
        if "memory" not in str(err).lower() and not isinstance(err, MemoryError):
            raise
        result = {"status": "out_of_memory", "error": str(err).splitlines()[0][:200]}
    print("RESULT " + json.dumps(result), flush=True)


def run_sweeps(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(SWEEPS) if args.sweep == "all" else [args.sweep]
    for name in names:
        rows = []
        for cfg in SWEEPS[name]:
            cmd = [sys.executable, __file__, "--child", json.dumps(cfg), "--device", args.device]
            cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
            cmd += ["--memory-gib", str(args.memory_gib)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                # killed by the kernel (or a failure outside the allocator): reported, not hidden
                result = {"status": f"failed (exit {proc.returncode})", "error": proc.stderr.strip()[-300:]}
            else:
                result = json.loads(lines[-1][len("RESULT ") :])
            rows.append({**cfg, **result})
            print(
                name,
                cfg,
                {k: result.get(k) for k in ("status", "step_seconds", "peak_memory_mib")},
                flush=True,
            )
        meta = {
            "device": args.device,
            "threads": args.threads,
            "memory_budget_gib": args.memory_gib,
            "steps": args.steps,
            "warmup": args.warmup,
            "loadavg_after": os.getloadavg(),
            "python": sys.version.split()[0],
            "torch": __import__("torch").__version__,
        }
        tmp = out / f"{name}.json.tmp"
        tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        tmp.replace(out / f"{name}.json")


def _cell(row: dict, key: str, fmt: str) -> str:
    if row.get("status") != "ok":
        return "does not fit" if row.get("status") == "out_of_memory" else row.get("status", "?")
    return format(row[key], fmt)


def report(folder: Path) -> str:
    lines = []
    for name in SWEEPS:
        path = folder / f"{name}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        meta, rows = data["meta"], data["rows"]
        lines += [
            f"### {name} sweep ({meta['device']}, {meta['threads']} thread(s), torch {meta['torch']}, "
            f"budget {meta['memory_budget_gib']} GiB, median of {meta['steps']} steps after {meta['warmup']} warm-up)",
            "",
            "| dataset | max_len | batch | catalogue | loss | positions/step | s/step | peak MiB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            items = r.get("items") or r["items"]
            positions = r.get("supervised_positions_per_step", "-")
            lines.append(
                f"| {r['dataset']} | {r['max_len']} | {r['batch']} | {items:,} | {r['loss']} | {positions} "
                f"| {_cell(r, 'step_seconds', '.3f')} | {_cell(r, 'peak_memory_mib', '.0f')} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", default="all", choices=["all", *SWEEPS])
    p.add_argument("--out", default="bench_out/scaling")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--memory-gib", type=float, default=12.0, help="address-space budget per configuration (CPU)"
    )
    p.add_argument("--report", default=None, help="print markdown tables for a finished --out folder")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args)
    elif args.report:
        print(report(Path(args.report)))
    else:
        run_sweeps(args)


if __name__ == "__main__":
    main()

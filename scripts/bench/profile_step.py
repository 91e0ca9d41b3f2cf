"""Where the time of one SASRec training step goes, before and after generec's step optimisations.

"before": every batch padded to max_len (no trimming, no length bucketing) and PyTorch's stock
dropout; "after": all-padding columns trimmed per batch, rows bucketed by length, and the faster CPU
dropout of ``generec.models.layers.Dropout``. Same data, model, seed and number of steps; the
torch profiler's self time per operator (top rows) and the wall time per step are reported.

    python scripts/bench/profile_step.py --dataset beauty --out bench_out/profile   # one whole epoch per variant
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from generec.data.datamodule import SeqDataModule
from generec.models import layers
from generec.models.sasrec import SASRec

VARIANTS = {
    "before": {"trim": False, "bucketing": False, "fast_dropout": False},
    "after": {"trim": True, "bucketing": True, "fast_dropout": True},
}


def profile_variant(dataset: str, steps: int, warmup: int, device: str, variant: dict, top: int) -> dict:
    torch.manual_seed(0)
    dm = SeqDataModule(registry=dataset, batch_size=256, seed=0, length_bucketing=variant["bucketing"])
    dm.setup()
    dm.set_trimming(variant["trim"])
    original = layers.Dropout.forward
    if not variant["fast_dropout"]:
        layers.Dropout.forward = nn.Dropout.forward  # PyTorch's own kernel
    try:
        model = SASRec(num_items=dm.num_items, max_len=50).to(device).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(1)  # warm-up batches from another epoch
        warm = [{k: v.to(device) for k, v in b.items()} for _, b in zip(range(warmup), loader, strict=False)]
        loader.sampler.set_epoch(0)  # profiled: the first `steps` batches of epoch 0 (0 = the whole epoch)
        batches = [{k: v.to(device) for k, v in b.items()} for b in loader]
        batches = warm + (batches[:steps] if steps > 0 else batches)
        steps = len(batches) - warmup

        def step(batch):
            loss = model.compute_loss(batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        for b in batches[:warmup]:
            step(b)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
        with profile(activities=activities) as prof:
            t0 = time.perf_counter()
            for b in batches[warmup:]:
                step(b)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            wall = (time.perf_counter() - t0) / steps
    finally:
        layers.Dropout.forward = original
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "wall_seconds_per_step": wall,
        "steps": steps,
        "mean_width": sum(b["input_ids"].shape[1] for b in batches[warmup:]) / steps,
        "ops": [
            {
                "op": e.key,
                "self_ms_per_step": e.self_cpu_time_total / 1000 / steps,
                "share": e.self_cpu_time_total / total,
                "calls_per_step": e.count / steps,
            }
            for e in rows
        ],
    }


def to_markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [
        f"SASRec training step on {meta['dataset']} (batch 256, d=64, 2 layers, CE), {meta['device']}, "
        f"{meta['threads']} thread(s), torch {meta['torch']}, {'one whole epoch (every training row once)' if meta['steps'] == 0 else str(meta['steps']) + ' profiled steps'} "
        f"per variant, after {meta['warmup']} warm-up steps.",
        "",
        "| variant | steps | mean batch width | wall ms/step | wall s total |",
        "|---|---|---|---|---|",
    ]
    for name in VARIANTS:
        v = result[name]
        total = v["wall_seconds_per_step"] * v["steps"]
        lines.append(
            f"| {name} | {v['steps']} | {v['mean_width']:.1f} | {1000 * v['wall_seconds_per_step']:.1f} | {total:.1f} |"
        )
    for name in VARIANTS:
        lines += ["", f"Top operators, {name} (self CPU time):", "", "| op | ms/step | share | calls/step |"]
        lines.append("|---|---|---|---|")
        for op in result[name]["ops"]:
            lines.append(
                f"| `{op['op']}` | {op['self_ms_per_step']:.1f} | {100 * op['share']:.1f}% "
                f"| {op['calls_per_step']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--steps", type=int, default=0, help="profiled steps; 0 = one whole epoch")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--out", default="bench_out/profile")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = {
        "meta": {
            "dataset": args.dataset,
            "device": args.device,
            "threads": args.threads,
            "torch": torch.__version__,
            "steps": args.steps,
            "warmup": args.warmup,
        }
    }
    for name, variant in VARIANTS.items():
        result[name] = profile_variant(args.dataset, args.steps, args.warmup, args.device, variant, args.top)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json.tmp").write_text(json.dumps(result, indent=1))
    (out / "profile.json.tmp").replace(out / "profile.json")
    md = to_markdown(result)
    (out / "profile.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

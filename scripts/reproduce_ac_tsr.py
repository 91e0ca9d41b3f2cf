"""Reproduction driver for AC-TSR: trains backbones and calibrated models, then tabulates the records.

Each run is one ``python -m generec.train`` call writing a results record to
``<root>/<dataset>/<variant>/``; existing records are reused, so an interrupted sweep resumes.
The table is built from the records only (``--table-only`` rebuilds it without training).

Full protocol (GPU):
    python scripts/reproduce_ac_tsr.py --datasets beauty sports toys yelp --seeds 1 2 3
Short CPU protocol used in docs/reproductions/ac_tsr.md: see that file for the exact command.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
METRICS = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20")
# variant -> (model config, extra overrides)
VARIANTS = {
    "sasrec": ("sasrec", []),
    "ac_sasrec": ("ac_sasrec", []),
    "bert4rec": ("bert4rec", []),
    "ac_bert4rec": ("ac_bert4rec", []),
    "gru4rec": ("gru4rec", []),
    "ac_sasrec_spatial": ("ac_sasrec", ["model.adversarial=false"]),
    "ac_sasrec_adversarial": ("ac_sasrec", ["model.spatial=false"]),
}
# Models whose training step may be cut into length-sorted trimmed parts (data.sub_batches): the same
# losses and gradients at ~2.5x less CPU on Beauty's prefixes (docs/benchmarks.md). BERT4Rec's do not.
SUB_BATCHED_MODELS = {"sasrec", "ac_sasrec"}
COLOURS = {  # one per variant in the diagnostic plot
    "sasrec": "tab:gray",
    "ac_sasrec": "tab:blue",
    "ac_sasrec_spatial": "tab:green",
    "ac_sasrec_adversarial": "tab:orange",
}
BACKBONE = {
    "ac_sasrec": "sasrec",
    "ac_bert4rec": "bert4rec",
    "ac_sasrec_spatial": "sasrec",
    "ac_sasrec_adversarial": "sasrec",
}


def overrides(
    dataset: str,
    variant: str,
    seed: int,
    extra: list[str],
    root: Path,
    preset: bool = True,
    sub_batches: int = 1,
) -> list[str]:
    """The Hydra overrides of one run; ``preset=False`` uses the model's own defaults plus ``extra``."""
    model, variant_args = VARIANTS[variant]
    if sub_batches > 1 and model in SUB_BATCHED_MODELS:
        variant_args = [*variant_args, f"data.sub_batches={sub_batches}"]
    if not preset:
        base = [f"data={dataset}", f"model={model}"]
    elif model == "gru4rec":  # the preset's transformer keys do not apply; same data/training protocol
        base = [
            f"data={dataset}", "model=gru4rec", "data.protocol=prefixes", "data.max_len=50",
            "data.batch_size=256", "model.lr=1e-4", "monitor=valid/hr@10",
            "callbacks.early_stopping.patience=10",
        ]  # fmt: skip
    else:
        base = [f"experiment=ac_tsr/{dataset}", f"model={model}"]
    out = root / dataset / variant
    return [
        *base,
        *variant_args,
        *extra,
        f"seed={seed}",
        f"results_dir={out}",
        f"hydra.run.dir={out}/runs/seed{seed}",
        "trainer.enable_progress_bar=false",
    ]


def records(root: Path, dataset: str, variant: str) -> list[dict]:
    folder = root / dataset / variant
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def train(args: argparse.Namespace) -> None:
    for dataset in args.datasets:
        for variant in args.variants:
            for seed in args.seeds:
                if any(r["seed"] == seed for r in records(args.root, dataset, variant)):
                    print(f"[skip] {dataset}/{variant}/seed{seed}: record exists", flush=True)
                    continue
                cmd = [
                    sys.executable,
                    "-m",
                    "generec.train",
                    *overrides(
                        dataset, variant, seed, args.extra, args.root, not args.no_preset, args.sub_batches
                    ),
                ]
                if args.nice:
                    cmd = ["nice", "-n", str(args.nice), *cmd]
                print("[run]", " ".join(cmd), flush=True)
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=os.environ.copy())
                log = args.root / dataset / variant / f"seed{seed}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text(proc.stdout + proc.stderr)
                status = "ok" if proc.returncode == 0 else f"FAILED rc={proc.returncode} (see {log})"
                print(f"  {status} in {time.perf_counter() - t0:.0f}s", flush=True)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(args: argparse.Namespace) -> str:
    """Markdown: metrics mean +- std over seeds, AC change vs backbone, and the cost of calibration."""
    lines = []
    for dataset in args.datasets:
        runs = {v: records(args.root, dataset, v) for v in args.variants}
        runs = {v: r for v, r in runs.items() if r}
        if not runs:
            continue
        lines += [f"### {dataset}", "", "| model | seeds | epochs (best) | " + " | ".join(METRICS) + " |"]
        lines.append("|" + "---|" * (3 + len(METRICS)))
        for v, rs in runs.items():
            cells = []
            for m in METRICS:
                mu, sd = mean_std([r["metrics"]["test"][m] for r in rs])
                cells.append(f"{mu:.4f} ± {sd:.4f}")
            epochs = ", ".join(f"{r['epochs_run']} ({r['best_epoch']})" for r in rs)
            lines.append(f"| {v} | {len(rs)} | {epochs} | " + " | ".join(cells) + " |")
        lines += ["", "Relative change of each calibrated model over its backbone (test, mean over seeds);",
                  "`*` = the difference of means exceeds the sum of the two seed standard deviations.", ""]  # fmt: skip
        lines += ["| model vs backbone | " + " | ".join(METRICS) + " |", "|" + "---|" * (1 + len(METRICS))]
        for v, base in BACKBONE.items():
            if v not in runs or base not in runs:
                continue
            cells = []
            for m in METRICS:
                a_mu, a_sd = mean_std([r["metrics"]["test"][m] for r in runs[v]])
                b_mu, b_sd = mean_std([r["metrics"]["test"][m] for r in runs[base]])
                if min(len(runs[v]), len(runs[base])) < 2:
                    star = " (1 seed)"  # no spread to compare with
                else:
                    star = "*" if abs(a_mu - b_mu) > a_sd + b_sd else ""
                cells.append(f"{100 * (a_mu - b_mu) / b_mu:+.1f}%{star}")
            lines.append(f"| {v} vs {base} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "| model | train s/epoch | ratio to backbone | peak RSS MiB | ratio |",
            "|---|---|---|---|---|",
        ]
        for v, rs in runs.items():
            t, _ = mean_std([r["train_seconds_per_epoch"] for r in rs])
            mem, _ = mean_std([r["peak_memory_mib"] for r in rs])
            base = BACKBONE.get(v)
            if base in runs:
                bt, _ = mean_std([r["train_seconds_per_epoch"] for r in runs[base]])
                bm, _ = mean_std([r["peak_memory_mib"] for r in runs[base]])
                lines.append(f"| {v} | {t:.1f} | {t / bt:.2f}x | {mem:.0f} | {mem / bm:.2f}x |")
            else:
                lines.append(f"| {v} | {t:.1f} | - | {mem:.0f} | - |")
        lines.append("")
    return "\n".join(lines)


def curves(args: argparse.Namespace) -> str:
    """Validation HR@10 / NDCG@10 per epoch (mean over seeds) from the CSV logs, runs finished or not.

    Compares models at matched epochs when a slower model could not finish its epochs.
    """
    import csv

    lines = []
    for dataset in args.datasets:
        per: dict[str, dict[int, list[tuple[float, float]]]] = {}
        for variant in args.variants:
            for f in sorted((args.root / dataset / variant / "runs").glob("seed*/csv/version_*/metrics.csv")):
                rows = list(csv.DictReader(f.open()))
                # Training epochs log a train/loss row; the re-validation of the best checkpoint does not.
                trained = {row["epoch"] for row in rows if row.get("train/loss")}
                for row in rows:
                    if row.get("valid/hr@10") and row["epoch"] in trained:
                        key = (float(row["valid/hr@10"]), float(row["valid/ndcg@10"]))
                        per.setdefault(variant, {}).setdefault(int(row["epoch"]), []).append(key)
        if not per:
            continue
        epochs = sorted({e for v in per.values() for e in v})
        lines += [f"### Validation per epoch on {dataset}: HR@10 / NDCG@10, mean over seeds (n seeds)", ""]
        lines += ["| epoch | " + " | ".join(per) + " |", "|---|" + "---|" * len(per)]
        for e in epochs:
            cells = []
            for v in per.values():
                xs = v.get(e, [])
                hr = statistics.fmean(x[0] for x in xs) if xs else None
                nd = statistics.fmean(x[1] for x in xs) if xs else None
                cells.append(f"{hr:.4f} / {nd:.4f} ({len(xs)})" if xs else "-")
            lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def last_position_attention(model, input_ids: torch.Tensor) -> torch.Tensor:
    """Last layer's attention of the last position, averaged over heads: [B, L] (eval mode)."""
    if hasattr(model, "calibrated_forward"):
        return model.calibrated_forward(input_ids)[0].attentions[-1][:, :, -1].mean(1)
    captured = {}
    attn = model.blocks[-1].attn
    handle = attn.register_forward_pre_hook(lambda mod, args: captured.update(x=args[0], mask=args[1]))
    model.sequence_hidden(input_ids)
    handle.remove()
    x, mask = captured["x"], captured["mask"]  # [B, L, d], [B, 1, L, L]
    B, L, D = x.shape
    q, k, _ = attn.qkv(x).view(B, L, 3, attn.heads, D // attn.heads).permute(2, 0, 3, 1, 4)  # [B, h, L, d_h]
    scores = (q @ k.transpose(-1, -2)) / (D // attn.heads) ** 0.5
    return scores.masked_fill(~mask, float("-inf")).softmax(-1)[:, :, -1].mean(1)  # [B, L]


@torch.no_grad()
def diagnostic(args: argparse.Namespace) -> str:
    """Attention mass the last position puts on history items sharing a category with the target.

    For each test user (up to ``--diag-users``): the share of attention on history items that share
    at least one category (``item_side[--diag-field]``) with the held-out target, divided by the share
    of such items in the history (1.0 = attention blind to the category; > 1 = concentrated on them).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from generec.data.datamodule import SeqDataModule
    from generec.models.ac_sasrec import ACSASRec
    from generec.models.sasrec import SASRec

    dataset = args.datasets[0]
    dm = SeqDataModule(registry=dataset)
    dm.setup()
    side = dm.data.item_side[args.diag_field]
    cats = [set(str(c).split()) for c in side]
    # A category on most items (Toys' attribute 2 is on every item: the catalogue's root) says nothing
    # about the target and would make every history item "same-category"; drop such categories.
    counts = collections.Counter(c for item in cats[1:] for c in item)
    common = {c for c, k in counts.items() if k > args.diag_max_share * (len(cats) - 1)}
    cats = [item - common for item in cats]
    test = dm.eval_rows["test"].tensors
    n = min(args.diag_users, len(test["targets"]))
    ids, targets = test["input_ids"][:n], test["targets"][:n].tolist()
    share = torch.zeros_like(ids, dtype=torch.bool)  # [n, L] history item shares a category with target
    for b in range(n):
        tc = cats[targets[b]]
        share[b] = torch.tensor([i > 0 and bool(cats[i] & tc) for i in ids[b].tolist()])
    real = ids > 0
    frac = share.sum(1) / real.sum(1)  # [n]
    keep = (frac > 0) & (frac < 1)  # users with both kinds of history items
    lines = [
        f"### Attention diagnostic ({dataset}, field `{args.diag_field}`, {int(keep.sum())} test users)",
        "",
    ]
    if common:
        lines += [
            f"Ignored: {len(common)} value(s) on more than {args.diag_max_share:.0%} of items "
            f"({', '.join(sorted(common)[:5])}).",
            "",
        ]
    lines += ["| model | seed | attention on same-category items | their share of the history | ratio |"]
    lines.append("|---|---|---|---|---|")
    ratios: dict[str, list[float]] = {}
    classes = {
        "sasrec": SASRec,
        "ac_sasrec": ACSASRec,
        "ac_sasrec_spatial": ACSASRec,
        "ac_sasrec_adversarial": ACSASRec,
    }
    runs = [(v, r["seed"], r["checkpoint"]) for v in classes for r in records(args.root, dataset, v)]
    for spec in args.diag_ckpt:  # VARIANT:SEED:PATH, e.g. a run that did not finish
        variant, seed, path = spec.split(":", 2)
        runs.append((variant, int(seed), path))
    for variant, seed, path in runs:
        model = classes[variant].load_from_checkpoint(path, map_location="cpu").eval()
        att = last_position_attention(model, ids)  # [n, L]
        mass = (att * share).sum(1)
        m, f = float(mass[keep].mean()), float(frac[keep].mean())
        ratio = float((mass[keep] / frac[keep]).mean())
        ratios.setdefault(variant, []).append(ratio)
        lines.append(f"| {variant} | {seed} | {m:.3f} | {f:.3f} | {ratio:.3f} |")
    if args.diag_plot and ratios:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        names = list(ratios)
        ax.bar(
            names,
            [statistics.fmean(v) for v in ratios.values()],
            color=[COLOURS.get(n, "tab:purple") for n in names],
        )
        for i, v in enumerate(ratios.values()):
            ax.scatter([i] * len(v), v, color="black", zorder=3, s=12)
        ax.axhline(1.0, ls="--", color="red", lw=1)
        ax.tick_params(axis="x", labelrotation=15, labelsize=8)
        ax.set_ylabel("attention share / history share\n(same-category items)")
        ax.set_title(f"{dataset}: last-position attention, last layer", fontsize=9)
        fig.tight_layout()
        fig.savefig(args.diag_plot, dpi=120)
        lines += ["", f"plot: {args.diag_plot}"]
    return "\n".join(lines)


def _count(t: torch.Tensor, total: list[int]) -> torch.Tensor:
    total[0] += t.numel() * t.element_size()
    return t


def _train_step(model, opt: torch.optim.Optimizer, batch: dict[str, torch.Tensor]) -> None:
    """One optimiser step the way training does it (both losses for adversarial models)."""
    opt.zero_grad()
    if hasattr(model, "calibrated_losses") and model.adversarial:
        model.backward_both(*model.calibrated_losses(batch))
    else:
        model.compute_loss(batch).backward()
    opt.step()


def _full_pass(batch: dict) -> dict:
    """The batch without its ``last_only`` flag: every model then computes all L rows of its final block."""
    return {k: v for k, v in batch.items() if k != "last_only"}


def bench(args: argparse.Namespace) -> str:
    """Cost of one training step (forward + backward + Adam) per model on real batches, same process.

    CPU time (``time.process_time``, one thread) is far less sensitive to a shared machine's load
    than wall time; activation memory is the total size of the tensors autograd saves for backward.
    Model sizes follow the dataset's ``experiment=ac_tsr/<dataset>`` preset. With ``bench_full_pass``
    every step is also taken without the last-position fast path, alternating with the fast one, so
    the fast path's saving is measured under the same load.
    """
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from generec.data.datamodule import SeqDataModule

    torch.set_num_threads(1)
    both = bool(getattr(args, "bench_full_pass", False))
    dataset = args.datasets[0]
    dm = SeqDataModule(registry=dataset, protocol="prefixes", max_len=50, batch_size=256)
    dm.setup()
    g = torch.Generator().manual_seed(0)
    rows = dm.train_rows[torch.randperm(len(dm.train_rows), generator=g)[: 256 * (args.bench_steps + 1)]]
    batches = [  # flags such as ``last_only`` pass through unsliced
        {k: v[i * 256 : (i + 1) * 256] if torch.is_tensor(v) else v for k, v in rows.items()}
        for i in range(args.bench_steps + 1)
    ]
    lines = [f"### Training-step cost on {dataset} (batch 256, L = 50, preset sizes, 1 CPU thread)", ""]
    header = "| model | parameters | CPU s / step | ratio | saved activations MiB | ratio |"
    rule = "|---|---|---|---|---|---|"
    if both:
        header += " full pass CPU s / step | full pass saved MiB | fast path saves (time, memory) |"
        rule += "---|---|---|"
    lines += [header, rule]
    cost: dict[str, tuple[float, float]] = {}
    for variant in args.variants:
        model_name, variant_args = VARIANTS[variant]
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            preset = [] if model_name == "gru4rec" else [f"experiment=ac_tsr/{dataset}"]
            cfg = compose(
                "train", overrides=[*preset, f"data={dataset}", f"model={model_name}", *variant_args]
            )
        torch.manual_seed(0)
        model = instantiate(cfg.model, num_items=dm.num_items, _convert_="all").train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        paths = [lambda b: b, _full_pass] if both else [lambda b: b]
        saved = [[0] for _ in paths]
        for path, total in zip(paths, saved, strict=True):  # warm-up, also measures the saved activations
            with torch.autograd.graph.saved_tensors_hooks(lambda t, n=total: _count(t, n), lambda t: t):
                _train_step(model, opt, path(batches[0]))
        spent = [0.0 for _ in paths]
        for b in batches[1:]:
            for i, path in enumerate(paths):  # alternating, so both paths see the same load
                t0 = time.process_time()
                _train_step(model, opt, path(b))
                spent[i] += time.process_time() - t0
        seconds = spent[0] / args.bench_steps
        cost[variant] = (seconds, saved[0][0] / 2**20)
        base = cost.get(BACKBONE.get(variant, ""))
        ratio_t = f"{seconds / base[0]:.2f}x" if base else "-"
        ratio_m = f"{cost[variant][1] / base[1]:.2f}x" if base else "-"
        n_params = sum(p.numel() for p in model.parameters())
        line = (
            f"| {variant} | {n_params:,} | {seconds:.3f} | {ratio_t} | {cost[variant][1]:.0f} | {ratio_m} |"
        )
        if both:
            full_s, full_mib = spent[1] / args.bench_steps, saved[1][0] / 2**20
            line += (
                f" {full_s:.3f} | {full_mib:.0f} |"
                f" {1 - seconds / full_s:.0%}, {1 - cost[variant][1] / full_mib:.0%} |"
            )
        lines.append(line)
        print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["beauty", "sports", "toys", "yelp"])
    p.add_argument("--variants", nargs="+", default=["sasrec", "ac_sasrec", "bert4rec", "ac_bert4rec", "gru4rec"],
                   choices=sorted(VARIANTS))  # fmt: skip
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--root", type=Path, default=REPO / "results" / "ac_tsr")
    p.add_argument("--nice", type=int, default=0, help="run each training under nice -n N")
    p.add_argument(
        "--sub-batches", type=int, default=4, help="data.sub_batches for SASRec / AC-SASRec (1: off)"
    )
    p.add_argument("--no-preset", action="store_true", help="data=<dataset> model=<model> + extra only")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--table-out", type=Path, default=None, help="also write the markdown table here")
    p.add_argument(
        "--diagnostic", action="store_true", help="attention diagnostic on sasrec/ac_sasrec checkpoints"
    )
    p.add_argument("--curves", action="store_true", help="validation metrics per epoch from the CSV logs")
    p.add_argument("--bench", action="store_true", help="per-step CPU time and activation memory per model")
    p.add_argument("--bench-steps", type=int, default=5)
    p.add_argument(
        "--bench-full-pass",
        action="store_true",
        help="also time every step without the last-position fast path (alternating), and report the saving",
    )
    p.add_argument("--diag-field", default="class", help="item side field holding space-separated categories")
    p.add_argument("--diag-users", type=int, default=2000)
    p.add_argument(
        "--diag-max-share",
        type=float,
        default=0.5,
        help="ignore category values carried by more than this fraction of items",
    )
    p.add_argument("--diag-ckpt", action="append", default=[], help="VARIANT:SEED:CHECKPOINT (repeatable)")
    p.add_argument("--diag-plot", type=Path, default=None)
    p.add_argument("extra", nargs="*", help="Hydra overrides for every run, e.g. trainer.max_epochs=5")
    args = p.parse_args()
    if args.diagnostic:
        print(diagnostic(args))
        return
    if args.curves:
        print(curves(args))
        return
    if args.bench:
        text = bench(args)
        print(text)
        if args.table_out:
            args.table_out.write_text(text + "\n")
        return
    if not args.table_only:
        train(args)
    text = table(args)
    print(text)
    if args.table_out:
        args.table_out.write_text(text + "\n")


if __name__ == "__main__":
    main()

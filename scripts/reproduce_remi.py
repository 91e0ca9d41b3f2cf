"""Reduced REMI grid: multi-interest models with/without IHN and RR under the ComiRec protocol.

Runs ``python -m generec.train`` once per (model, variant, seed), then summarises the results records:
Recall/HR/NDCG@{20,50} mean +- std over seeds, the routing-collapse statistic (mean max routing weight
per interest, test users), seconds per training epoch (the IHN + RR overhead, same machine, same run),
popularity on the same split, and ComiRec's diversity of the merged top-50 (datasets with categories).

    python scripts/reproduce_remi.py --dataset beauty --models comirec_sa --seeds 1 2 --epochs 5 \
        --jobs 2 --out results/remi_beauty
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generec.data.datamodule import SeqDataModule  # noqa: E402
from generec.eval.metrics import MetricAccumulator, target_ranks  # noqa: E402
from generec.eval.ranking import prepare_scores  # noqa: E402
from generec.eval.retrieval import ItemIndex, category_coverage, item_categories, pairwise_diversity, retrieve  # noqa: E402
from generec.results import atomic_write_text  # noqa: E402

METRICS = ("recall@20", "recall@50", "hr@20", "hr@50", "ndcg@20", "ndcg@50")


def variants(beta: float, lam: float) -> dict[str, tuple[float, float]]:
    """(IHN beta, RR lambda) per variant. ``live`` is the plain model with a live routing graph
    (ComiRec-DR / MIND only): RR needs that graph, so it separates RR's effect from the graph's."""
    return {
        "base": (0.0, 0.0),
        "ihn": (beta, 0.0),
        "rr": (0.0, lam),
        "ihn+rr": (beta, lam),
        "live": (0.0, 0.0),
    }


VARIANT_OVERRIDES = {"live": ("model.routing_gradient=live",)}


def finished_record(args, model: str, variant: str, seed: int) -> Path | None:
    """The results record of a finished run of this grid, or None."""
    results = args.out / "records" / f"{model}-{variant.replace('+', '_')}-s{seed}"
    return next(results.glob("*.json"), None) if results.is_dir() else None


def run_one(args, model: str, variant: str, beta: float, lam: float, seed: int) -> Path:
    tag = f"{model}-{variant.replace('+', '_')}-s{seed}"
    results = args.out / "records" / tag
    if (done := finished_record(args, model, variant, seed)) is not None:
        return done  # finished earlier: resume the grid
    if (args.out / "runs" / tag).is_dir():  # started by an earlier (interrupted) grid: wait for its record
        for _ in range(args.wait_minutes * 6):
            time.sleep(10)
            if results.is_dir() and list(results.glob("*.json")):
                return next(results.glob("*.json"))
        raise RuntimeError(
            f"{tag}: {args.out / 'runs' / tag} exists but no record appeared; delete it to rerun"
        )
    cmd = [
        sys.executable, "-m", "generec.train", f"experiment=remi/{args.dataset}", f"model={model}",
        f"model.ihn_beta={beta}", f"model.rr_lambda={lam}", f"seed={seed}",
        f"trainer.max_epochs={args.epochs}", "trainer.enable_progress_bar=false",
        f"hydra.run.dir={args.out / 'runs' / tag}", f"results_dir={results}", "logger=csv",
        *VARIANT_OVERRIDES.get(variant, ()), *args.extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    (args.out / "logs" / f"{tag}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{tag} failed (rc {proc.returncode}); see {args.out / 'logs' / (tag + '.log')}")
    print(f"done {tag} in {time.time() - t0:.0f}s", flush=True)
    return next(results.glob("*.json"))


def popularity(dm: SeqDataModule) -> dict[str, float]:
    """Most-popular items among training users, evaluated on the same test users and targets."""
    data, split = dm.data, dm.split
    counts = np.zeros(data.num_items + 1)
    for u in split.train_users:
        np.add.at(counts, data.sequence(u), 1)
    test = dm.eval_rows["test"].tensors
    acc = MetricAccumulator((20, 50))
    scores = torch.tensor(counts, dtype=torch.float32).expand(len(test["targets"]), -1)
    acc.update(target_ranks(prepare_scores(scores), test["targets"]))
    return acc.compute()


@torch.no_grad()
def diversity(dm: SeqDataModule, checkpoint: str, categories: np.ndarray, n: int = 50) -> dict[str, float]:
    """Merged top-``n`` of all interests via faiss for the test users; ComiRec's diversity + coverage."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    module, name = ckpt["generec_model_class"].rsplit(".", 1)
    model = getattr(importlib.import_module(module), name).load_from_checkpoint(
        checkpoint, map_location="cpu"
    )
    model.eval()
    index = ItemIndex(model.item_embeddings(), backend="faiss")
    cats = torch.from_numpy(categories)
    div, cov = [], []
    rows = dm.eval_rows["test"].tensors
    for i in range(0, len(rows["input_ids"]), 1024):
        _, ids = retrieve(index, model.encode({"input_ids": rows["input_ids"][i : i + 1024]}), n)
        div.append(pairwise_diversity(ids, cats))
        cov.append(category_coverage(ids, cats))
    return {f"diversity@{n}": float(torch.cat(div).mean()), f"coverage@{n}": float(torch.cat(cov).mean())}


def step_overhead(
    dataset: str, beta: float, lam: float, steps: int, seed: int = 0, model: str = "comirec_sa"
) -> dict[str, float]:
    """ms per training step (forward, backward, Adam) of one encoder without vs with IHN + RR.

    Same process, same batches, the two models interleaved step by step, so machine load hits both alike.
    """
    from generec.models.multi_interest import MIND, ComiRecDR, ComiRecSA

    encoder = {"comirec_sa": ComiRecSA, "comirec_dr": ComiRecDR, "mind": MIND}[model]
    dm = SeqDataModule(registry=dataset, split="comirec", max_len=50, batch_size=128, seed=seed)
    dm.setup()
    models, opts, times = {}, {}, {"base": [], "ihn+rr": []}
    for name, (b, r) in {"base": (0.0, 0.0), "ihn+rr": (beta, lam)}.items():
        torch.manual_seed(seed)
        models[name] = encoder(num_items=dm.num_items, max_len=50, ihn_beta=b, rr_lambda=r)
        opts[name] = torch.optim.Adam(models[name].parameters(), lr=1e-3)
    for i, batch in enumerate(dm.train_dataloader()):
        if i >= steps + 5:
            break
        for name in models:
            torch.manual_seed(seed + i)  # same negatives and cut points for both
            t0 = time.perf_counter()
            loss = models[name].compute_loss(batch)
            opts[name].zero_grad()
            loss.backward()
            opts[name].step()
            if i >= 5:  # warm-up steps are not timed
                times[name].append(time.perf_counter() - t0)
    base, both = statistics.median(times["base"]), statistics.median(times["ihn+rr"])
    return {
        "model": model,
        "steps": steps,
        "base_ms": 1e3 * base,
        "ihn_rr_ms": 1e3 * both,
        "overhead_pct": 100 * (both / base - 1),
    }


def epoch_table(out: Path, models: list[str], variants_: list[str], seeds: list[int]) -> str:
    """Validation metrics at the largest epoch every run reached (from each run's CSV log): mean +- std."""
    import csv

    per_run = {}
    for model in models:
        for variant in variants_:
            for seed in seeds:
                tag = f"{model}-{variant.replace('+', '_')}-s{seed}"
                files = sorted((out / "runs" / tag).glob("csv/version_*/metrics.csv"))
                rows = [r for f in files[-1:] for r in csv.DictReader(f.open()) if r.get("valid/recall@50")]
                per_run[(model, variant, seed)] = rows
    reached = [len(r) for r in per_run.values()]
    if not reached or min(reached) == 0:
        return "(no validation epochs logged yet)"
    epoch = min(reached)  # rows are epochs 0..; the last row of a finished run repeats the best epoch
    cols = [m for m in METRICS] + ["routing_max"]
    lines = [f"validation after epoch {epoch} (same epoch for every run), mean ± std over seeds {seeds}",
             "", "| model | variant | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]  # fmt: skip
    for model in models:
        for variant in variants_:
            runs = [per_run[(model, variant, s)][epoch - 1] for s in seeds]
            cells = [mean_std([float(r[f"valid/{c}"]) for r in runs]) for c in cols]
            lines.append(f"| {model} | {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_std(values: list[float], digits: int = 4) -> str:
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--models", nargs="+", default=["comirec_sa"])
    p.add_argument("--variants", nargs="+", default=["base", "ihn", "rr", "ihn+rr"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--rr-lambda", type=float, default=100.0)
    p.add_argument("--jobs", type=int, default=1, help="training runs at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--wait-minutes", type=int, default=120, help="wait this long for runs started earlier")
    p.add_argument("--out", type=Path, default=REPO / "results" / "remi")
    p.add_argument("--overhead-steps", type=int, default=0, help="only time IHN + RR per step, then exit")
    p.add_argument("--epoch-table", action="store_true", help="only summarise the per-epoch validation logs")
    p.add_argument(
        "--summarise-only", action="store_true", help="train nothing: tabulate the runs whose records exist"
    )
    p.add_argument("extra", nargs="*", help="further Hydra overrides for every run")
    args = p.parse_args()
    args.out = args.out.resolve()
    if args.overhead_steps:
        torch.set_num_threads(args.threads)
        for model in args.models:
            cost = step_overhead(args.dataset, args.beta, args.rr_lambda, args.overhead_steps, model=model)
            print(json.dumps(cost), flush=True)
        return
    if args.epoch_table:
        print(epoch_table(args.out, args.models, args.variants, args.seeds))
        return
    grid = variants(args.beta, args.rr_lambda)
    jobs = [(m, v, *grid[v], s) for s in args.seeds for m in args.models for v in args.variants]
    t0 = time.time()
    if args.summarise_only:  # e.g. a grid cut short: report what finished, say what did not
        found = [(j, finished_record(args, j[0], j[1], j[4])) for j in jobs]
        missing = [f"{m}-{v}-s{s}" for (m, v, _, _, s), path in found if path is None]
        if missing:
            print(f"not finished, left out of the table: {', '.join(missing)}", flush=True)
        jobs, paths = [j for j, path in found if path], [path for _, path in found if path]
    else:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            paths = list(pool.map(lambda j: run_one(args, *j), jobs))
    wall = time.time() - t0

    dm = SeqDataModule(registry=args.dataset, split="comirec", max_len=50)
    dm.setup()
    cats = None
    if "attributes" in dm.data.item_side:
        cats = item_categories(dm.data.item_side)
    summary = {"dataset": args.dataset, "epochs": args.epochs, "seeds": args.seeds, "wall_seconds": wall,
               "popularity_test": popularity(dm), "rows": []}  # fmt: skip
    for (model, variant, beta, lam, seed), path in zip(jobs, paths, strict=True):
        rec = json.loads(Path(path).read_text())
        row = {"model": model, "variant": variant, "beta": beta, "rr_lambda": lam, "seed": seed,
               "test": rec["metrics"]["test"], "sec_per_epoch": rec["train_seconds_per_epoch"],
               "best_epoch": rec["best_epoch"], "record": str(path)}  # fmt: skip
        if cats is not None and rec.get("checkpoint") and Path(rec["checkpoint"]).is_file():
            row["test"].update(diversity(dm, rec["checkpoint"], cats))
        summary["rows"].append(row)
    atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=1))

    extra = ["routing_max"] + (["diversity@50", "coverage@50"] if cats is not None else [])
    cols = [*METRICS, *extra, "sec/epoch", "best epoch", "seeds"]
    lines = ["| model | variant | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for model in args.models:
        for variant in args.variants:
            rows = [r for r in summary["rows"] if r["model"] == model and r["variant"] == variant]
            cells = [mean_std([r["test"][m] for r in rows if m in r["test"]]) for m in [*METRICS, *extra]]
            cells.append(mean_std([r["sec_per_epoch"] for r in rows], digits=1))
            cells.append(mean_std([float(r["best_epoch"]) for r in rows if r["best_epoch"] is not None], 1))
            cells.append(str(len(rows)))
            lines.append(f"| {model} | {variant} | " + " | ".join(cells) + " |")
    pop = summary["popularity_test"]
    lines.append(
        "| popularity | - | " + " | ".join(f"{pop[m]:.4f}" if m in pop else "-" for m in cols) + " |"
    )
    table = "\n".join(lines)
    atomic_write_text(args.out / "table.md", table + "\n")
    print(table)
    print(f"grid wall time {wall:.0f}s; summary {args.out / 'summary.json'}")


if __name__ == "__main__":
    main()

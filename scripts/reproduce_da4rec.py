"""DA4Rec driver: augmentation-only SASRec vs contrastive SASRec variants, several seeds, one table.

Each run is ``python -m generec.train`` in a subprocess (the results record is the source of truth);
the table is rebuilt from whatever records exist, so an interrupted grid can be resumed or reported.

Full grid of the issue (a GPU week, not a CPU afternoon):
    python scripts/reproduce_da4rec.py --grid full --datasets beauty sports toys yelp --seeds 1 2 3 \
        --cold-start 1.0 0.5 0.25 --out results/da4rec
Reduced CPU grid actually run for docs/reproductions/da4rec.md: see that file for the exact command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the summary works from a checkout without the package installed

from generec.eval.breakdown import LENGTH_EDGES, POPULARITY_EDGES, bucket_metrics, bucket_names  # noqa: E402
from generec.results import atomic_write_text  # noqa: E402

OPS = ["insert", "delete", "replace", "crop", "mask", "reorder", "subset_split"]

# name -> overrides. "SASRec without augmentation" = data.protocol=last (one row per training
# sequence, target = its last item), exactly DA4Rec's baseline; slide_window = every prefix.
BASE = ["data.protocol=last"]
# ICLRec contrasts flattened [L, d] view states, so its rows need one common width (no sub-batches).
NO_SUB_BATCHES = {"iclrec"}


def grid(kind: str) -> dict[str, list[str]]:
    full = {"sasrec": ["model=sasrec"], "sasrec+slide_window": ["model=sasrec", "augment=slide_window"]}
    for op in OPS:
        full[f"sasrec+{op}"] = ["model=sasrec", f"augment={op}"]
        full[f"sasrec+slide_window+{op}"] = ["model=sasrec", f"augment=[slide_window,{op}]"]
    for m in ("cl4srec", "coserec", "iclrec", "duorec"):
        full[m] = [f"model={m}"]
    # The CL methods on slide-window rows too (RecBole-based CL code trains on every prefix): does the
    # contrastive term add anything once the rows are augmented? Run with --only, not in "full".
    extra = {f"{m}+slide_window": [f"model={m}", "augment=slide_window"] for m in ("cl4srec", "duorec")}
    if kind == "with_cl_slide_window":
        return {**full, **extra}
    if kind == "full":
        return full
    if kind == "reduced":
        keep = ["sasrec", "sasrec+slide_window", "sasrec+crop", "cl4srec", "duorec"]
        return {k: full[k] for k in keep}
    raise ValueError(kind)


def run_tag(dataset: str, cold: float, name: str, seed: int) -> str:
    """One run's folder name under ``records/``, ``runs/`` and ``logs/``."""
    return f"{dataset}-cold{cold}-{name}-s{seed}".replace("+", "_")


def run_one(name, overrides, dataset, seed, cold, args) -> Path | None:
    tag = run_tag(dataset, cold, name, seed)
    res_dir = Path(args.out) / "records" / tag
    if list(res_dir.glob("*.json")):
        return res_dir  # resumable
    cmd = [
        sys.executable, "-m", "generec.train", f"data={dataset}", *BASE, *overrides, f"seed={seed}",
        f"data.batch_size={args.batch_size}", f"trainer.max_epochs={args.epochs}",
        f"callbacks.early_stopping.patience={args.patience}", "trainer.enable_progress_bar=false",
        f"hydra.run.dir={Path(args.out) / 'runs' / tag}", f"results_dir={res_dir}", *args.extra,
    ]  # fmt: skip
    if cold < 1.0:
        cmd.append(f"data.cold_start_ratio={cold}")
    if args.sub_batches > 1 and name not in NO_SUB_BATCHES:  # same step, ~4x less CPU on short sequences
        cmd.append(f"data.sub_batches={args.sub_batches}")
    log = Path(args.out) / "logs" / f"{tag}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    t0 = time.time()
    with log.open("w") as fh:
        fh.write(" ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.run(["nice", "-n", str(args.nice), *cmd], cwd=REPO, stdout=fh, stderr=fh, env=env)
    print(f"[{time.strftime('%H:%M:%S')}] {tag}: rc={proc.returncode} in {time.time() - t0:.0f}s", flush=True)
    return res_dir if proc.returncode == 0 else None


def popularity(dataset: str, cold: float) -> dict[str, float]:
    """Most-popular-in-training baseline on the same split (a floor every model must clear)."""
    import torch

    from generec.data.datamodule import SeqDataModule
    from generec.eval.metrics import MetricAccumulator, target_ranks
    from generec.eval.ranking import prepare_scores

    dm = SeqDataModule(registry=dataset, cold_start_ratio=None if cold >= 1 else cold)
    dm.setup()
    data, split = dm.data, dm.split
    rows = np.repeat(np.arange(data.num_users), data.lengths)
    position = np.arange(len(data.items)) - np.repeat(data.offsets[:-1], data.lengths)
    counts = np.bincount(data.items[position < split.train_end[rows]], minlength=data.num_items + 1)
    test = dm.eval_rows["test"].tensors
    scores = torch.tensor(counts, dtype=torch.float32).expand(len(test["targets"]), -1)
    acc = MetricAccumulator((10, 20))
    acc.update(target_ranks(prepare_scores(scores), test["targets"]))
    return acc.compute()


def mean_std(v: np.ndarray) -> str:
    """'mean ± sample std'; one seed has no spread to show."""
    return f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" if len(v) > 1 else f"{v.mean():.4f}"


METRIC_KEYS = ["hr@10", "ndcg@10", "hr@20", "ndcg@20"]
BUCKETS = {"popularity": ("target_pop", POPULARITY_EDGES), "length": ("history_len", LENGTH_EDGES)}


def bucket_tables(out: Path, names: list[str], dataset: str, seeds, cold: float, metric: str = "ndcg@10"):
    """Test ``metric`` per target-popularity and per history-length bucket, from the runs' ranks dumps.

    The dumps (``<run_id>.ranks.npz``, written by every ``generec.train`` run) hold each test user's
    rank, target popularity (training interactions) and history length, so nothing is scored again.
    """
    lines = []
    for by, (field, edges) in BUCKETS.items():
        header = None
        rows = []
        for name in names:
            per_seed = []
            for seed in seeds:
                for dump in (out / "records" / run_tag(dataset, cold, name, seed)).glob("*.ranks.npz"):
                    z = np.load(dump)
                    per_seed.append(bucket_metrics(z["ranks"], z[field], edges, ks=(10, 20)))
            if not per_seed:
                continue
            header = header or per_seed[0]
            cells = []
            for bucket in bucket_names(edges):
                v = np.array([m[bucket].get(metric, np.nan) for m in per_seed])
                cells.append(mean_std(v))
            rows.append(f"| {name} | " + " | ".join(cells) + f" | {len(per_seed)} |")
        if not rows:
            continue
        what = "target item's training interactions" if by == "popularity" else "history length"
        lines += [
            f"\nTest {metric} by {what} (users per bucket: "
            + ", ".join(f"{b}: {header[b]['users']}" for b in bucket_names(edges)) + ")\n",
            "| method | " + " | ".join(bucket_names(edges)) + " | seeds |",
            "|---|" + "---|" * (len(edges) + 1),
            *rows,
        ]  # fmt: skip
    return lines


def run_entry(tag: str, rec: dict) -> dict:
    """The few facts of one run that the tables and ``--summary-json`` keep (the record has the rest)."""
    best = rec["best_epoch"]
    return {
        "run": tag,
        "run_id": rec["run_id"],
        "seed": rec["seed"],
        "test": {k: rec["metrics"]["test"][k] for k in METRIC_KEYS},
        "valid_ndcg@10": rec["metrics"]["valid"].get("ndcg@10"),
        "best_epoch": best,
        "epochs_run": rec["epochs_run"],
        "train_seconds_per_epoch": round(rec["train_seconds_per_epoch"], 2),
        "seconds_to_best": round(sum(rec["epoch_seconds"][: (best or 0) + 1]), 1),
        "eval_seconds": round(rec["eval_seconds"], 2),
        "peak_memory_mib": round(rec["peak_memory_mib"]),
        "num_train_rows": rec["dataset"]["num_train_rows"],
        "fingerprint": rec["dataset"].get("fingerprint"),
        "git_commit": rec["git_commit"],
    }


def collect(out: Path, names, datasets, seeds, colds, earlier: dict[str, dict]) -> dict[str, dict]:
    """Run tag -> entry for the grid: from the records under ``out``, else from ``earlier`` entries.

    ``earlier`` is a summary JSON committed by a previous session, whose ``results/`` may be gone: its
    runs still count in the tables (but not in the bucket tables, which need the ranks dumps).
    """
    entries = {}
    for dataset in datasets:
        for cold in colds:
            for name in names:
                for seed in seeds:
                    tag = run_tag(dataset, cold, name, seed)
                    recs = [json.loads(p.read_text()) for p in (out / "records" / tag).glob("*.json")]
                    if recs:  # a re-run leaves two records: the newest counts
                        newest = max(recs, key=lambda r: (r.get("created") or "", r["run_id"]))
                        entries[tag] = run_entry(tag, newest)
                    elif tag in earlier:
                        entries[tag] = earlier[tag]
    return entries


def summarize(out: Path, names: list[str], datasets, seeds, colds, entries: dict[str, dict]) -> str:
    lines = []
    for dataset in datasets:
        for cold in colds:
            lines += [
                f"\n### {dataset}, {'warm (all users)' if cold >= 1 else f'cold start: {cold:.0%} of users'}\n",
                "| method | " + " | ".join(f"test {k}" for k in METRIC_KEYS)
                + " | seeds | train rows | best epoch | s/epoch (train) | s to best | peak RSS MiB |",
                "|---|" + "---|" * (len(METRIC_KEYS) + 6),
            ]  # fmt: skip
            for name in names:
                runs = [entries[t] for s in seeds if (t := run_tag(dataset, cold, name, s)) in entries]
                if not runs:
                    lines.append(
                        f"| {name} | " + " | ".join("not run" for _ in METRIC_KEYS) + " | 0 | | | | | |"
                    )
                    continue
                cells = [mean_std(np.array([r["test"][k] for r in runs])) for k in METRIC_KEYS]
                to_best = [r["seconds_to_best"] for r in runs if "seconds_to_best" in r]
                cells += [
                    str(len(runs)),
                    str(runs[0]["num_train_rows"]),
                    " / ".join(str(r["best_epoch"]) for r in runs),
                    f"{np.mean([r['train_seconds_per_epoch'] for r in runs]):.1f}",
                    f"{np.mean(to_best):.0f}" if len(to_best) == len(runs) else "",
                    f"{np.mean([r['peak_memory_mib'] for r in runs]):.0f}",
                ]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            try:
                pop = popularity(dataset, cold)
                lines.append(
                    "| popularity | " + " | ".join(f"{pop[k]:.4f}" for k in METRIC_KEYS) + " | – | | | | | |"
                )
            except Exception as e:  # noqa: BLE001 - the table is still worth writing
                print(f"popularity baseline on {dataset} not computed: {e}", file=sys.stderr)
                first = str(e).splitlines()[0].replace("|", "/") if str(e) else type(e).__name__
                lines.append(f"| popularity | not computed ({first}; full error on stderr) |")
            lines += bucket_tables(out, names, dataset, seeds, cold)
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", choices=["reduced", "full", "with_cl_slide_window"], default="reduced")
    p.add_argument("--datasets", nargs="+", default=["toys"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    p.add_argument("--cold-start", nargs="+", type=float, default=[1.0], help="user fractions (1.0 = warm)")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument(
        "--sub-batches", type=int, default=16, help="data.sub_batches for every method but ICLRec (1: off)"
    )
    p.add_argument("--workers", type=int, default=1, help="runs in parallel")
    p.add_argument("--threads", type=int, default=1, help="OMP threads per run")
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("--only", nargs="*", default=None, help="subset of method names")
    p.add_argument("--out", default="results/da4rec")
    p.add_argument("--summarize-only", action="store_true")
    p.add_argument(
        "--summary-json",
        type=Path,
        help="per-run summary to read and update: its runs without a record under --out still count",
    )
    p.add_argument("extra", nargs="*", help="extra Hydra overrides for every run (after --)")
    args = p.parse_args()
    out = Path(args.out)
    methods = grid(args.grid)
    if args.only:
        unknown = [m for m in args.only if m not in methods]
        if unknown:  # a typo or a method of a larger grid must not turn into "0 runs"
            wider = {m: g for g in ("with_cl_slide_window", "full") for m in grid(g)}
            hints = [f"{m} (in --grid {wider[m]})" if m in wider else m for m in unknown]
            p.error(
                f"--only: not in --grid {args.grid}: {', '.join(hints)}; this grid has: {', '.join(methods)}"
            )
        methods = {k: v for k, v in methods.items() if k in args.only}
    jobs = [
        (name, ov, d, s, c)
        for d in args.datasets
        for c in args.cold_start
        for s in args.seeds
        for name, ov in methods.items()
    ]
    if not args.summarize_only:
        print(f"{len(jobs)} runs, {args.workers} at a time", flush=True)
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(lambda j: run_one(*j, args), jobs))
    earlier = {}
    if args.summary_json is not None and args.summary_json.is_file():
        earlier = {e["run"]: e for e in json.loads(args.summary_json.read_text())}
    entries = collect(out, list(methods), args.datasets, args.seeds, args.cold_start, earlier)
    if args.summary_json is not None:  # runs outside this grid's selection are kept as they were
        merged = {**earlier, **entries}
        atomic_write_text(args.summary_json, json.dumps([merged[k] for k in sorted(merged)], indent=1) + "\n")
    table = summarize(out, list(methods), args.datasets, args.seeds, args.cold_start, entries)
    atomic_write_text(out / "table.md", table)
    print(table)
    missing = sum(1 for line in table.splitlines() if "not run" in line)
    if missing:
        print(f"{missing} method rows without records", file=sys.stderr)


if __name__ == "__main__":
    main()

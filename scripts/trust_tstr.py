"""Train-on-synthetic, test-on-real (TSTR) utility of sequence generators, with a trust index across them.

    python scripts/trust_tstr.py --record results/ml100k/<run>.json --creator outputs/creator_ml100k.pt \
        --generators copy creator popularity random --seeds 1 2 --max-epochs 30 --out-dir outputs/tstr_ml100k

For each generator (``generec.trust.synthetic``) the real training targets are replaced by the
generator's items (teacher-forced on the real prefixes), written as a ``sequences`` file, and the
record's model is trained on it through ``generec train data.path=...`` for every seed; the held-out
valid/test items stay real. ``copy`` (the real sequences, same pipeline) is the reference:
``utility/tstr_ratio`` = mean test NDCG@10 / copy's. ``privacy/copy_rate`` is the share of
synthetic training targets equal to the real item at that position (a memorising generator scores 1).
Writes ``<out-dir>/tstr.json`` (atomically) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def synthesize(args, out: Path) -> dict[str, dict]:
    """Writes one sequences file per generator; returns their statistics."""
    from generec.data.batching import prefix_targets
    from generec.predict import load_model
    from generec.trust.cli import _checkpoint, _datamodule
    from generec.trust.synthetic import synthetic_items, write_sequences

    record_path = Path(args.record)
    record = json.loads(record_path.read_text())
    dm = _datamodule(record, record_path)
    data, train_end = dm.data, dm.split.train_end
    model = creator = None
    if "creator" in args.generators and not (args.reuse and (out / "creator.txt").is_file()):
        from generec.generative.creator import Creator

        model, _ = load_model(_checkpoint(record, record_path))
        model.eval()
        creator, extra = Creator.load(args.creator)
        if extra.get("dataset_fingerprint") not in (None, data.fingerprint):
            sys.exit(f"--creator {args.creator} was trained on another dataset (fingerprint differs)")
    _, pos = prefix_targets(data.offsets, train_end)
    stats = {}
    for gen in args.generators:
        t0 = time.perf_counter()
        path = out / f"{gen}.txt"
        if args.reuse and path.is_file():  # the file of an earlier run: its items, read back
            items = read_items(path, data)
        else:
            items = synthetic_items(
                data, train_end, gen, model=model, creator=creator, max_len=dm.max_len, seed=0
            )
            path = write_sequences(path, data, items)
        stats[gen] = {
            "file": str(path),
            "targets": int(len(pos)),
            "copy_rate": float((items[pos] == data.items[pos]).mean()),
            "distinct_items": int(len(np.unique(items[pos]))),
            "seconds": time.perf_counter() - t0,
        }
        print(f"{gen}: {stats[gen]}", flush=True)
    stats["_meta"] = {"dataset": data.name, "fingerprint": data.fingerprint, "model": record["model"]}
    return stats


def read_items(path: Path, data) -> np.ndarray:
    """Items [N] (remapped ids, ``data``'s layout) of a sequences file written by ``write_sequences``."""
    index = {str(t): i for i, t in enumerate(data.item_tokens)}
    lines = path.read_text().split("\n")[: data.num_users]
    items = np.array([index[t] for line in lines for t in line.split()[1:]], dtype=np.int64)
    if len(items) != len(data.items):
        sys.exit(f"{path}: {len(items)} items, expected {len(data.items)}: not written for this data")
    return items


def train_all(args, out: Path, stats: dict) -> dict[str, list[dict]]:
    """Trains the record's model on every generator's file for every seed, ``--jobs`` at a time."""
    model_name, dataset = stats["_meta"]["model"], stats["_meta"]["dataset"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    jobs = []
    for gen in args.generators:
        for seed in args.seeds:
            done = [
                p
                for p in (out / "results" / gen).glob("*.json")
                if json.loads(p.read_text()).get("seed") == seed
            ]
            if args.reuse and done:
                continue
            cmd = [
                sys.executable,
                "-m",
                "generec.train",
                f"data.path={stats[gen]['file']}",
                "data.format=sequences",
                f"data.name={dataset}-tstr-{gen}",
                f"model={model_name}",
                f"seed={seed}",
                f"trainer.max_epochs={args.max_epochs}",
                "trainer.enable_progress_bar=false",
                "data.length_bucketing=true",
                f"results_dir={out / 'results' / gen}",
                f"hydra.run.dir={out / 'runs' / f'{gen}_s{seed}'}",
                *args.override,
            ]
            jobs.append((gen, seed, cmd))
    (out / "logs").mkdir(exist_ok=True)
    running: list[tuple[str, int, subprocess.Popen]] = []
    while jobs or running:
        while jobs and len(running) < args.jobs:
            gen, seed, cmd = jobs.pop(0)
            with (out / "logs" / f"{gen}_s{seed}.log").open("w") as log:
                proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            running.append((gen, seed, proc))
        time.sleep(2)
        for item in list(running):
            gen, seed, proc = item
            if proc.poll() is not None:
                running.remove(item)
                if proc.returncode != 0:
                    sys.exit(
                        f"training on {gen} (seed {seed}) failed: see {out / 'logs' / f'{gen}_s{seed}.log'}"
                    )
                print(f"trained {gen} seed {seed}", flush=True)
    results: dict[str, list[dict]] = {}
    for gen in args.generators:
        recs = [json.loads(p.read_text()) for p in sorted((out / "results" / gen).glob("*.json"))]
        results[gen] = [
            {
                "seed": r["seed"],
                "test": r["metrics"]["test"],
                "best_epoch": r["best_epoch"],
                "run_id": r["run_id"],
            }
            for r in recs
            if r["seed"] in args.seeds
        ]
    return results


def summarise(stats: dict, results: dict[str, list[dict]]) -> dict:
    from generec.trust.index import trust_index

    out = {}
    for gen, runs in results.items():
        ndcg = np.array([r["test"]["ndcg@10"] for r in runs])
        hr = np.array([r["test"]["hr@10"] for r in runs])
        out[gen] = {
            "seeds": [r["seed"] for r in runs],
            "ndcg@10": [float(ndcg.mean()), float(ndcg.std(ddof=1)) if len(ndcg) > 1 else 0.0],
            "hr@10": [float(hr.mean()), float(hr.std(ddof=1)) if len(hr) > 1 else 0.0],
            "copy_rate": stats[gen]["copy_rate"],
            "distinct_items": stats[gen]["distinct_items"],
        }
    if "copy" in out:
        ref = out["copy"]["ndcg@10"][0]
        for gen in out:
            out[gen]["tstr_ratio"] = out[gen]["ndcg@10"][0] / ref if ref > 0 else float("nan")
        candidates = {
            gen: {"utility/tstr_ratio": min(v["tstr_ratio"], 1.0), "privacy/copy_rate": v["copy_rate"]}
            for gen, v in out.items()
        }
        if len(candidates) > 1:
            for gen, score in trust_index(candidates).items():
                out[gen]["trust_index"] = score.index
                out[gen]["trust_dimensions"] = score.dimensions
    return out


def table(summary: dict) -> str:
    lines = [
        "| generator | seeds | test NDCG@10 | test HR@10 | TSTR ratio | copy rate | distinct items | trust index |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for gen, v in summary.items():
        lines.append(
            f"| {gen} | {len(v['seeds'])} | {v['ndcg@10'][0]:.4f} ± {v['ndcg@10'][1]:.4f} | "
            f"{v['hr@10'][0]:.4f} ± {v['hr@10'][1]:.4f} | {v.get('tstr_ratio', float('nan')):.3f} | "
            f"{v['copy_rate']:.3f} | {v['distinct_items']} | {v.get('trust_index', float('nan')):.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--record", required=True, help="results record of the real run (its checkpoint and data)")
    p.add_argument("--creator", help="creator checkpoint (generec.generative.run task=train) for 'creator'")
    p.add_argument("--generators", nargs="+", default=["copy", "creator", "popularity", "random"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--jobs", type=int, default=2, help="trainings at a time (one thread each)")
    p.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for every training")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--reuse", action="store_true", help="keep existing sequence files and finished trainings")
    args = p.parse_args()
    if "creator" in args.generators and not args.creator:
        p.error("generator 'creator' needs --creator")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats = synthesize(args, out)
    results = train_all(args, out, stats)
    summary = summarise(stats, results)
    from generec.results import atomic_write_text

    payload = {"args": vars(args), "stats": stats, "summary": summary}
    atomic_write_text(out / "tstr.json", json.dumps(payload, indent=1))
    print(table(summary))


if __name__ == "__main__":
    main()

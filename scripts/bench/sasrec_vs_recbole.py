"""generec vs RecBole 1.2.1 (SASRec, BERT4Rec or GRU4Rec), same data / split / hyper-parameters, one run.

    python scripts/bench/sasrec_vs_recbole.py --dataset ml-100k --epochs 10 --out-dir bench_out/ml-100k
    python scripts/bench/sasrec_vs_recbole.py --model gru4rec --dataset ml-100k --epochs 3 --out-dir bench_out/gru
    python scripts/bench/sasrec_vs_recbole.py --report bench_out/ml-100k   # prints the Markdown table

Three jobs run back to back (so they see the same machine state):
1. RecBole's model (its own venv, scripts/bench/recbole_runner.py), prefix protocol, capped at --epochs;
2. generec's model with the same protocol (``data.protocol=prefixes``) and batch size, same cap;
3. generec's model with its default protocol (``all_positions``) until early stopping.
Both sides use RecBole's default hyper-parameters for the model (generec's conf/model/<name>.yaml
carries the same values).
Each writes a JSON; ``--report`` turns them into ratios: time per epoch under the same protocol, time to
RecBole's best validation NDCG@10, evaluation time, peak memory, test metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RECBOLE_PY = Path(os.environ.get("RECBOLE_VENV", REPO / ".venv-recbole")) / "bin" / "python"
# generec model config name -> RecBole model class name
RECBOLE_MODEL = {"sasrec": "SASRec", "bert4rec": "BERT4Rec", "gru4rec": "GRU4Rec"}


def run(cmd: list[str], log: Path, env: dict | None = None) -> float:
    print("+", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(
            cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}), see {log}")
    return time.perf_counter() - t0


def generec_job(
    args, out: Path, name: str, protocol: str, epochs: int, batch_size: int, extra: list[str]
) -> None:
    results = out / name
    cmd = [
        sys.executable,
        "-m",
        "generec.train",
        f"data={args.dataset}",
        f"model={args.model}",
        f"seed={args.seed}",
        f"data.protocol={protocol}",
        f"data.batch_size={batch_size}",
        f"trainer.max_epochs={epochs}",
        f"callbacks.early_stopping.patience={args.patience}",
        "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu" if args.device == "cpu" else "trainer.accelerator=gpu",
        f"results_dir={results}",
        f"hydra.run.dir={out}/{name}_run",
        *extra,
    ]
    run(cmd, out / f"{name}.log")
    record = json.loads(next(results.glob("*.json")).read_text())
    (out / f"{name}.json").write_text(json.dumps(record, indent=1))


def main_run(args) -> None:
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    machine = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "device": args.device,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "machine.json").write_text(json.dumps(machine, indent=1))
    if not args.skip_recbole:
        if not RECBOLE_PY.exists():
            sys.exit(f"{RECBOLE_PY} not found: run scripts/bench/setup_recbole_venv.sh first")
        run(
            [
                str(RECBOLE_PY),
                "scripts/bench/recbole_runner.py",
                "--dataset",
                args.dataset,
                "--model",
                RECBOLE_MODEL[args.model],
                "--data-dir",
                args.data_dir,
                "--work-dir",
                str(out / "recbole_work"),
                "--epochs",
                str(args.epochs),
                "--seed",
                str(args.seed),
                "--stopping-step",
                str(args.patience),
                "--train-batch-size",
                str(args.batch_size),
                "--device",
                args.device,
                "--out",
                str(out / "recbole.json"),
            ],
            out / "recbole.log",
        )
    bucketing = ["data.length_bucketing=true"] if args.prefix_bucketing else []
    generec_job(args, out, "generec_prefixes", "prefixes", args.epochs, args.batch_size, bucketing)
    if args.skip_all_positions:
        return
    generec_job(
        args,
        out,
        "generec_all_positions",
        "all_positions",
        args.max_epochs,
        args.all_positions_batch,
        ["data.length_bucketing=true"]
        + ([f"data.window_stride={args.window_stride}"] if args.window_stride else []),
    )


def seconds_to_reach(record: dict, target: float) -> tuple[float | None, int | None]:
    """Cumulative train + eval seconds until validation NDCG@10 first reaches ``target``."""
    total = 0.0
    for epoch, (train_s, eval_s, valid) in enumerate(
        zip(record["epoch_seconds"], record["eval_seconds_per_epoch"], record["valid_history"], strict=False)
    ):
        total += train_s + eval_s
        if valid.get("valid/ndcg@10", -1) >= target:
            return total, epoch
    return None, None


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def report(out_dir: str) -> str:
    out = Path(out_dir)
    rb = json.loads((out / "recbole.json").read_text())
    gp = json.loads((out / "generec_prefixes.json").read_text())
    ga_path = out / "generec_all_positions.json"  # absent after --skip-all-positions
    ga = json.loads(ga_path.read_text()) if ga_path.exists() else None
    machine = json.loads((out / "machine.json").read_text())
    rb_best_valid = max(rb["valid_ndcg@10_per_epoch"])
    rows = []
    runs = [("prefixes (same protocol)", gp)] + ([("all_positions (default)", ga)] if ga else [])
    for label, rec in runs:
        label = f"generec {rec.get('model', 'sasrec')}, {label}"
        reach, epoch = seconds_to_reach(rec, rb_best_valid)
        rows.append(
            (
                label,
                median(rec["epoch_seconds"]),
                median(rec["eval_seconds_per_epoch"]),
                reach,
                epoch,
                rec["peak_memory_mib"],
                rec["metrics"]["test"]["ndcg@10"],
                rec["metrics"]["test"]["hr@10"],
                rec["epochs_run"],
                rec["best_epoch"],
            )
        )
    lines = [
        f"Dataset `{rb['dataset']}`, seed {rb['seed']}, machine: {machine['platform']}, {machine['cpus']} CPUs, "
        f"device {machine['device']}; RecBole {rb['version']} / torch {rb['torch']}; generec torch "
        f"{gp['versions']['torch']}, lightning {gp['versions']['lightning']}. Started {machine['started']}.",
        "",
        "| system | median s/epoch | median eval s | s to RecBole's best valid NDCG@10 | epochs run (best) "
        "| peak memory MiB | test NDCG@10 | test HR@10 |",
        "|---|---|---|---|---|---|---|---|",
        f"| RecBole {rb.get('model', 'SASRec')} (prefixes) | {median(rb['epoch_seconds']):.1f} | {median(rb['eval_seconds']):.2f} | "
        f"{rb['seconds_to_best']:.0f} (its best, {rb_best_valid:.4f}) | {rb['epochs_run']} ({rb['best_epoch']}) | "
        f"{rb['peak_rss_mib']:.0f} (RSS) | {rb['test']['ndcg@10']:.4f} | {rb['test']['hr@10']:.4f} |",
    ]
    for label, ep, ev, reach, epoch, mem, ndcg, hr, n, best in rows:
        reach_s = "not reached" if reach is None else f"{reach:.0f} (epoch {epoch})"
        lines.append(
            f"| {label} | {ep:.1f} | {ev:.2f} | {reach_s} | {n} ({best}) | {mem:.0f} (RSS) | "
            f"{ndcg:.4f} | {hr:.4f} |"
        )
    lines.append("")
    ratio_epoch = median(rb["epoch_seconds"]) / rows[0][1]
    lines.append(
        f"Ratios (RecBole / generec): time per epoch under the same protocol {ratio_epoch:.1f}x; "
        f"evaluation pass {median(rb['eval_seconds']) / rows[0][2]:.1f}x; peak memory "
        f"{rb['peak_rss_mib'] / rows[0][5]:.1f}x."
    )
    for label, _, _, reach, _, _, _, _, _, _ in rows:
        if reach is not None:
            lines.append(
                f"Time to RecBole's best validation NDCG@10, {label}: "
                f"{rb['seconds_to_best'] / reach:.1f}x faster."
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--model", default="sasrec", choices=sorted(RECBOLE_MODEL))
    p.add_argument(
        "--data-dir", default=os.environ.get("GENEREC_DATA_DIR", str(REPO.parent / "shared" / "data"))
    )
    p.add_argument("--epochs", type=int, default=10, help="cap for the two prefix-protocol runs")
    p.add_argument("--max-epochs", type=int, default=200, help="cap for generec's all_positions run")
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=2048, help="RecBole's default train_batch_size")
    p.add_argument("--all-positions-batch", type=int, default=256, help="rows (whole sequences) per batch")
    p.add_argument(
        "--window-stride",
        type=int,
        default=0,
        help="data.window_stride for the all_positions run (0: consecutive windows, generec's default)",
    )
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--skip-recbole", action="store_true")
    p.add_argument(
        "--prefix-bucketing",
        action="store_true",
        help="length bucketing for generec's prefix run (same objective, batches of equal-length prefixes)",
    )
    p.add_argument("--skip-all-positions", action="store_true", help="only the two prefix-protocol runs")
    p.add_argument("--out-dir", default="bench_out")
    p.add_argument("--report", metavar="OUT_DIR", help="only print the Markdown table for a finished run")
    args = p.parse_args()
    if args.report:
        print(report(args.report))
        return
    main_run(args)
    print(report(args.out_dir))


if __name__ == "__main__":
    main()

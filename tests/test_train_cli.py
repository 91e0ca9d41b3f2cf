"""The real entry points, run as users run them in a subprocess: the `generec` console script
(from another working directory, as the README does) and `python -m generec.train`."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from generec.data.datamodule import SeqDataModule
from generec.eval.metrics import MetricAccumulator, target_ranks
from generec.eval.ranking import prepare_scores

REPO = Path(__file__).resolve().parents[1]


CONSOLE_SCRIPT = Path(sys.executable).with_name("generec")


def run_cli(
    module: str, *overrides: str, env: dict | None = None, console: bool = False, cwd: Path = REPO
) -> subprocess.CompletedProcess:
    """``python -m generec.<x>`` from the repo, or (``console``) ``generec <x>`` from ``cwd``."""
    command = module.removeprefix("generec.")
    launcher = [str(CONSOLE_SCRIPT), command] if console else [sys.executable, "-m", module]
    proc = subprocess.run(
        [
            *launcher,
            *overrides,
            *(["trainer.enable_progress_bar=false"] if module.endswith("train") else []),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )
    assert proc.returncode == 0, f"{module} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def only_record(folder: Path) -> dict:
    files = list(folder.glob("*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


@pytest.fixture
def synthetic_pairs(tmp_path: Path) -> Path:
    """A small learnable dataset: each user walks the item ring with a user-specific stride."""
    rng = np.random.default_rng(0)
    lines = []
    for u in range(1, 121):
        start, stride, n = rng.integers(1, 60), 1 + u % 3, rng.integers(8, 16)
        lines += [f"u{u}\ti{(start + stride * t) % 60 + 1}" for t in range(n)]
    path = tmp_path / "walks.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_resume_from_last_checkpoint_equals_uninterrupted_run(tmp_path, synthetic_pairs):
    common = [
        f"data.path={synthetic_pairs}",
        "data.format=pairs",
        "data.batch_size=32",
        "model.hidden_size=16",
        "model.inner_size=32",
        "model.dropout=0.3",
        "seed=7",
        "callbacks.early_stopping.patience=100",
    ]
    run_cli(
        "generec.train",
        *common,
        "trainer.max_epochs=4",
        f"hydra.run.dir={tmp_path}/full",
        f"results_dir={tmp_path}/r_full",
    )
    run_cli(
        "generec.train",
        *common,
        "trainer.max_epochs=2",
        f"hydra.run.dir={tmp_path}/part",
        f"results_dir={tmp_path}/r_part",
    )
    run_cli(
        "generec.train",
        *common,
        "trainer.max_epochs=4",
        f"hydra.run.dir={tmp_path}/part",
        f"ckpt_path={tmp_path}/part/checkpoints/last.ckpt",
        f"results_dir={tmp_path}/r_resumed",
    )
    full, resumed = only_record(tmp_path / "r_full"), only_record(tmp_path / "r_resumed")
    assert resumed["epochs_run"] == full["epochs_run"] == 4
    assert resumed["best_epoch"] == full["best_epoch"]
    assert resumed["metrics"] == full["metrics"]
    a = torch.load(tmp_path / "full/checkpoints/last.ckpt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "part/checkpoints/last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_last_checkpoint_is_the_last_epoch_even_when_the_best_is_earlier(tmp_path, synthetic_pairs):
    """Resume needs the last epoch: with lr=0 the monitored metric never improves after epoch 0."""
    run_cli(
        "generec.train",
        f"data.path={synthetic_pairs}",
        "data.format=pairs",
        "model.hidden_size=16",
        "model.inner_size=32",
        "model.lr=0.0",
        "trainer.max_epochs=3",
        f"hydra.run.dir={tmp_path}/run",
        f"results_dir={tmp_path}/r",
    )
    record = only_record(tmp_path / "r")
    assert record["best_epoch"] == 0 and record["checkpoint"].endswith("best.ckpt")
    last = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=False)
    best = torch.load(tmp_path / "run/checkpoints/best.ckpt", weights_only=False)
    assert (last["epoch"], best["epoch"]) == (2, 0)


def popularity_ndcg10(datamodule: SeqDataModule) -> float:
    data, split = datamodule.data, datamodule.split
    rows = np.repeat(np.arange(data.num_users), data.lengths)
    position = np.arange(len(data.items)) - np.repeat(data.offsets[:-1], data.lengths)
    counts = np.bincount(data.items[position < split.train_end[rows]], minlength=data.num_items + 1)
    test = datamodule.eval_rows["test"].tensors
    scores = torch.tensor(counts, dtype=torch.float32).expand(len(test["targets"]), -1)
    acc = MetricAccumulator((10,))
    acc.update(target_ranks(prepare_scores(scores), test["targets"]))
    return acc.compute()["ndcg@10"]


def test_sasrec_on_real_ml100k_beats_popularity_and_predicts(tmp_path, shared_data_dir):
    env = {"GENEREC_DATA_DIR": str(shared_data_dir), "GENEREC_CACHE_DIR": str(tmp_path / "cache")}
    run_cli(
        "generec.train",
        "data=ml-100k",
        "trainer.max_epochs=10",
        "model.lr=5e-3",
        "model.dropout=0.2",
        f"hydra.run.dir={tmp_path}/run",
        f"results_dir={tmp_path}/results",
        env=env,
        console=True,
        cwd=tmp_path,
    )
    record = only_record(tmp_path / "results")
    assert record["dataset"]["name"] == "ml-100k"
    assert record["dataset"]["num_users"] == 943 and record["dataset"]["num_items"] == 1682
    assert record["dataset"]["fingerprint"]
    for key in ("hr@10", "ndcg@10", "mrr@10", "recall@20"):
        assert key in record["metrics"]["valid"] and key in record["metrics"]["test"]
    assert record["config"]["seed"] == 42 and record["versions"]["torch"]
    assert record["epochs_run"] == 10 and record["train_seconds_per_epoch"] > 0

    os.environ.update(env)
    dm = SeqDataModule(registry="ml-100k", cache_dir=str(tmp_path / "cache"))
    dm.setup()
    pop = popularity_ndcg10(dm)
    assert record["metrics"]["test"]["ndcg@10"] > 1.5 * pop, (record["metrics"]["test"]["ndcg@10"], pop)

    out = tmp_path / "top5.csv"
    run_cli(
        "generec.predict",
        f"checkpoint={record['checkpoint']}",
        "data=ml-100k",
        "topk=5",
        f"output={out}",
        f"hydra.run.dir={tmp_path}/pred",
        env=env,
        console=True,
        cwd=tmp_path,
    )
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 943 * 5
    assert {"user_id", "rank", "item_id", "score", "title"} <= set(rows[0])
    seen = {
        (str(u), str(i))
        for u, i in zip(
            dm.data.user_tokens[np.repeat(np.arange(943), dm.data.lengths)],
            dm.data.item_tokens[dm.data.items],
            strict=True,
        )
    }
    assert not any((r["user_id"], r["item_id"]) in seen for r in rows)  # seen items masked
    titles = dict(zip(dm.data.item_tokens[1:], dm.data.item_side["title"][1:], strict=True))
    assert all(titles[r["item_id"]] == r["title"] for r in rows[:50])

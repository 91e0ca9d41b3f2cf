"""Evaluation sharded over 2 DDP processes (CPU, gloo) equals one process, user by user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from generec.leaderboard import load_ranks
from generec.results import read_records

REPO = Path(__file__).resolve().parents[1]


def run_train(*overrides: str, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "generec.train", *overrides, "trainer.enable_progress_bar=false"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
    )
    assert proc.returncode == 0, f"train failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def test_two_process_ddp_evaluation_equals_single_process(tmp_path, shared_data_dir):
    """Same checkpoint, evaluated by 1 process and by 2 gloo ranks.

    Training differs under DDP (each rank sees other batches), so the DDP run resumes the
    single-process run's finished checkpoint: its fit does nothing and validate/test run on
    the same best.ckpt. eval_batch_size=100 gives each rank 5 uneven batches (472 / 471 users).
    Ranks are integers, so the per-user comparison is exact; the metric means are sums of the
    same per-user float64 terms added in another order, equal to float32 logging precision.
    """
    env = {"GENEREC_DATA_DIR": str(shared_data_dir)}
    common = [
        "data=ml-100k",
        "data.eval_batch_size=100",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
    ]
    run_train(*common, f"hydra.run.dir={tmp_path}/single", f"results_dir={tmp_path}/r1", env=env)
    ddp = run_train(
        *common,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"ckpt_path={tmp_path}/single/checkpoints/last.ckpt",
        f"hydra.run.dir={tmp_path}/ddp",
        f"results_dir={tmp_path}/r2",
        env=env,
    )
    assert "MEMBER: 2/2" in ddp.stdout + ddp.stderr  # two ranks really ran
    (one,) = read_records(tmp_path / "r1")
    (two,) = read_records(tmp_path / "r2")  # rank 0 alone wrote a record
    assert two["config"]["trainer"]["strategy"] == "ddp" and two["config"]["trainer"]["devices"] == 2
    a, b = load_ranks(one), load_ranks(two)
    assert len(a["users"]) == one["dataset"]["num_eval_users"] == 943
    for key in ("users", "ranks", "history_len", "target_pop"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for split in ("valid", "test"):
        assert one["metrics"][split].keys() == two["metrics"][split].keys()
        for k, v in one["metrics"][split].items():
            if k.startswith(("hr@", "recall@")):  # counts / N: exact
                assert two["metrics"][split][k] == v, (split, k)
            else:
                assert two["metrics"][split][k] == pytest.approx(v, rel=1e-6, abs=1e-9), (split, k)


def test_rank_recorder_restores_accumulator_and_pads_several_targets(tmp_path):
    """Batches of different target widths are padded (-1 = no target) and sorted by user."""
    from types import SimpleNamespace

    import torch

    from generec.eval.metrics import PADDED_RANK, MetricAccumulator
    from generec.ranks_dump import TestRankRecorder, write_ranks

    inner = MetricAccumulator((10,))
    module = SimpleNamespace(metrics={"test": inner})
    recorder = TestRankRecorder()
    recorder.on_test_epoch_start(None, module)
    batches = [
        (torch.tensor([5, 1]), torch.tensor([[3, PADDED_RANK], [0, 7]])),
        (torch.tensor([2]), torch.tensor([[12, 4, 1]])),
    ]
    for users, ranks in batches:
        module.metrics["test"].update(ranks)
        recorder.on_test_batch_end(None, module, None, {"users": users}, 0)
    recorder.on_test_end(None, module)
    assert module.metrics["test"] is inner and inner.compute()["hr@10"] == pytest.approx(1.0)
    np.testing.assert_array_equal(recorder.users, [1, 2, 5])
    np.testing.assert_array_equal(recorder.ranks, [[0, 7, -1], [12, 4, 1], [3, -1, -1]])
    assert recorder.ranks.dtype == np.int32
    path = write_ranks(tmp_path / "r.ranks.npz", recorder.users, recorder.ranks)
    with np.load(path) as z:
        np.testing.assert_array_equal(z["ranks"], recorder.ranks)
    assert [p.name for p in tmp_path.iterdir()] == ["r.ranks.npz"]  # no temp file left behind

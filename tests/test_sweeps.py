"""Hydra multirun paths: optuna sweeper, submitit launchers (local executor), requeue-and-resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from generec.leaderboard import build_rows
from generec.results import read_records

REPO = Path(__file__).resolve().parents[1]
TINY = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "trainer.enable_progress_bar=false"]


def run_train(*overrides: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "generec.train", *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, f"train failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def records_in(folder: Path) -> list[dict]:
    return read_records(folder) if folder.exists() else []


def test_presets_compose():
    """The Slurm preset takes GPUs and tasks per node from the trainer; ddp keeps the exact sampler."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "hydra.launcher.partition=gpu"],
            return_hydra_config=True,
        )
        launcher = cfg.hydra.launcher
        assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
        assert launcher.gpus_per_node == launcher.tasks_per_node == 4 and launcher.nodes == 1
        assert launcher.signal_delay_s > 0 and launcher.max_num_timeout > 0
        assert cfg.trainer.strategy == "ddp" and cfg.trainer.use_distributed_sampler is False
        local = compose("train", ["hydra/launcher=local"], return_hydra_config=True).hydra.launcher
        assert local._target_.endswith("LocalLauncher")
        search = compose("train", ["+hparams_search=sasrec"], return_hydra_config=True).hydra.sweeper
        assert search._target_.endswith("OptunaSweeper") and search.direction == "maximize"
        assert set(search.params) >= {"model.lr", "model.dropout", "model.hidden_size"}


def test_optuna_sweep_three_trials_writes_three_records(tmp_path, shared_data_dir):
    env = {"GENEREC_DATA_DIR": str(shared_data_dir)}
    run_train(
        "-m",
        "+hparams_search=sasrec",
        "hydra.sweeper.n_trials=3",
        "data=ml-100k",
        *TINY,
        f"hydra.sweep.dir={tmp_path}/sweep",
        f"results_dir={tmp_path}/results",
        env=env,
    )
    records = records_in(tmp_path / "results")
    assert len(records) == 3
    lrs = {r["config"]["model"]["lr"] for r in records}
    assert len(lrs) == 3 and all(1e-4 <= lr <= 1e-2 for lr in lrs)
    for r in records:  # every trial also dumped its per-user ranks
        assert (tmp_path / "results" / r["ranks_file"]).is_file()
    best = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert best.best_value == max(r["metrics"]["valid"]["ndcg@10"] for r in records)  # the objective
    assert len(build_rows(records, ["ndcg@10"])) == 3  # three configurations, never pooled as seeds


def test_submitit_local_launcher_runs_one_job_logged_to_wandb(tmp_path, shared_data_dir):
    """The Slurm code path on submitit's local executor, with an offline wandb run carrying the record."""
    env = {
        "GENEREC_DATA_DIR": str(shared_data_dir),
        "WANDB_MODE": "offline",  # never upload from a test, whatever credentials the machine has
        "WANDB_DATA_DIR": str(tmp_path / "wandb_data"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb_cache"),
    }
    run_train(
        "-m",
        "hydra/launcher=local",
        "logger=wandb",
        "data=ml-100k",
        "seed=5",
        *TINY,
        f"hydra.sweep.dir={tmp_path}/sweep",
        f"results_dir={tmp_path}/results",
        env=env,
    )
    (record,) = records_in(tmp_path / "results")
    assert record["seed"] == 5 and record["output_dir"] == str(tmp_path / "sweep" / "0")
    assert list((tmp_path / "sweep" / ".submitit").glob("*/*_result.pkl"))  # ran through submitit
    (log,) = (tmp_path / "sweep" / "0" / "wandb").glob("offline-run-*/run-*.wandb")
    content = log.read_bytes()
    assert b"sasrec-ml-100k-s5" in content  # run name from the config
    for needle in (f"record-{record['run_id']}", f"{record['run_id']}.json", record["ranks_file"]):
        assert needle.encode() in content, needle  # the artefact and its two files


def test_wandb_offline_without_credentials(tmp_path, monkeypatch):
    from generec.train import _loggers

    cfg = OmegaConf.create(
        {
            "logger": {
                "_target_": "lightning.pytorch.loggers.WandbLogger",
                "offline": None,
                "save_dir": str(tmp_path),
            }
        }
    )
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert _loggers(cfg)._offline is True
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert _loggers(cfg)._offline is False


CRASH = '''
import os
import signal
import lightning as L


class CrashAtEpoch(L.Callback):
    """At the start of epoch CRASH_AT_EPOCH: kill the process (no clean-up, like a node failure) or
    send it SIGTERM (what Slurm sends at preemption or time-out) when CRASH_MODE=sigterm."""

    def on_train_epoch_start(self, trainer, pl_module):
        if str(trainer.current_epoch) == os.environ.get("CRASH_AT_EPOCH"):
            if os.environ.get("CRASH_MODE") == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                os._exit(7)
'''


@pytest.mark.parametrize(("mode", "code"), [("exit", 7), ("sigterm", 143)])
def test_killed_run_leaves_no_record_and_requeue_finishes_same_run(tmp_path, mode, code):
    """A requeued job (same config, same folder) resumes from last.ckpt and writes one record.

    A SIGTERM'd run exits 143, not Lightning's default 0, so a launcher or driver does not take a run
    without a record for a finished one."""
    rng = np.random.default_rng(0)
    lines = [f"u{u}\ti{rng.integers(1, 40)}" for u in range(60) for _ in range(rng.integers(6, 12))]
    (tmp_path / "walks.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "crashcb.py").write_text(CRASH)
    args = [
        f"data.path={tmp_path}/walks.txt",
        "data.format=pairs",
        "model.hidden_size=16",
        "model.inner_size=32",
        "trainer.max_epochs=3",
        "trainer.enable_progress_bar=false",
        "+callbacks.crash._target_=crashcb.CrashAtEpoch",
        f"hydra.run.dir={tmp_path}/run",
        f"results_dir={tmp_path}/results",
    ]
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    crashed = run_train(*args, env={**env, "CRASH_AT_EPOCH": "2", "CRASH_MODE": mode}, check=False)
    assert crashed.returncode == code, crashed.stderr[-3000:]
    assert not records_in(tmp_path / "results")  # a crashed run leaves no record
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    first_id = json.loads((tmp_path / "run" / ".generec_run.json").read_text())["run_id"]
    resumed = run_train(*args, env=env)
    assert "resuming interrupted run" in resumed.stderr + resumed.stdout
    (record,) = records_in(tmp_path / "results")
    assert record["run_id"] == first_id and record["epochs_run"] == 3
    assert len(record["epoch_seconds"]) == 3  # the history of the killed attempt is kept


def test_every_experiment_preset_composes():
    """Each conf/experiment preset composes against the current config schema (struct mode)."""
    presets = sorted(
        str(p.relative_to(REPO / "conf" / "experiment").with_suffix(""))
        for p in (REPO / "conf" / "experiment").rglob("*.yaml")
    )
    assert "gru4rec_ml100k" in presets and "sasrec_beauty" in presets
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for name in presets:
            cfg = compose("train", [f"experiment={name}"])
            assert cfg.model._target_.startswith("generec."), name
    gru = None
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        gru = compose("train", ["experiment=gru4rec_ml100k"])
    assert gru.data.window_stride == 10 and gru.model._target_.endswith("GRU4Rec")

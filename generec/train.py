"""Hydra entry point: compose config -> datamodule, model, callbacks, loggers, trainer -> fit, test, record.

python -m generec.train data=beauty model=sasrec trainer.max_epochs=200 seed=3
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import resource
import time
from pathlib import Path

import hydra
import lightning as L
import torch
import torch._dynamo  # noqa: F401  (imported lazily by the first optimiser step: keep it out of epoch 1 timing)
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from generec.callbacks import EpochSeed, RunHistory
from generec.paths import CONF_DIR
from generec.ranks_dump import TestRankRecorder, user_facts, write_ranks
from generec.report import print_run_table
from generec.results import (
    atomic_write_text,
    environment,
    git_commit,
    new_run_id,
    package_versions,
    write_record,
)

log = logging.getLogger(__name__)

# The shell's code for a process ended by SIGTERM (128 + 15); Slurm and our drivers read it as a failure.
SIGTERM_EXIT_CODE = 143


def _model_name(cfg: DictConfig) -> str:
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("model")
        if choice:
            return str(choice)
    return cfg.model._target_.rsplit(".", 1)[-1].lower()


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _loggers(cfg: DictConfig):
    if not cfg.get("logger"):
        return False
    logger_cfg = OmegaConf.to_container(cfg.logger, resolve=True)
    if "wandb" in logger_cfg.get("_target_", "").lower() and logger_cfg.get("offline") is None:
        # No credentials on this machine -> offline run that can be synced later.
        has_key = bool(os.environ.get("WANDB_API_KEY")) or Path("~/.netrc").expanduser().exists()
        logger_cfg["offline"] = not has_key
    return instantiate(logger_cfg)


def _config_hash(cfg: DictConfig) -> str:
    """Identity of a run's configuration (without ``ckpt_path``): a requeued job has the same one."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("ckpt_path", None)
    return hashlib.sha1(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _resume_state(cfg: DictConfig, output_dir: Path, trainer) -> tuple[str | None, str | None]:
    """(run_id, checkpoint) of an interrupted attempt of this same run in ``output_dir``, else (None, None).

    A preempted Slurm job is requeued into the same output folder with the same config; it then
    resumes from the epoch-end ``last.ckpt`` and keeps its run id, so its record is written once.
    A different config in the same folder starts afresh.
    """
    marker = output_dir / ".generec_run.json"
    if not HydraConfig.initialized() or not cfg.get("auto_resume", True) or not marker.is_file():
        return None, None
    state = json.loads(marker.read_text())
    if state.get("config_hash") != _config_hash(cfg):
        return None, None
    ckpt_dir = getattr(trainer.checkpoint_callback, "dirpath", None)
    last = Path(ckpt_dir) / "last.ckpt" if ckpt_dir else None
    return state.get("run_id"), str(last) if last is not None and last.is_file() else None


def _log_record_artifact(trainer, paths: list[Path], run_id: str) -> None:
    """Attaches the results record (and ranks dump) to the wandb run as an artefact."""
    from lightning.pytorch.loggers import WandbLogger

    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger):
            import wandb

            artifact = wandb.Artifact(name=f"record-{run_id}", type="results")
            for p in paths:
                artifact.add_file(str(p))
            lg.experiment.log_artifact(artifact)


def run(cfg: DictConfig) -> dict:
    """Trains, tests the best checkpoint and writes the results record; returns the record."""
    commit = git_commit()  # at start: the code that trains, not whatever is checked out when it ends
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path.cwd()
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    model = instantiate(cfg.model, num_items=datamodule.num_items, _convert_="all")
    datamodule.set_trimming(model.accepts_trimmed_batches)
    if datamodule.sub_batches > 1 and not model.accepts_sub_batches:
        raise ValueError(
            f"data.sub_batches={datamodule.sub_batches} needs a model trained by the plain next-item loss on "
            f"trimmed inputs; {type(model).__name__} is not one: set data.sub_batches=1"
        )
    compile_cfg = cfg.get("compile") or {}
    if compile_cfg.get("enabled"):
        model.compile_hot_paths(
            backend=compile_cfg.get("backend", "inductor"),
            mode=compile_cfg.get("mode"),
            dynamic=compile_cfg.get("dynamic", True),
        )

    history = RunHistory(monitor=cfg.monitor)
    callbacks = [EpochSeed(cfg.seed), history]
    callbacks += [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    rank_recorder = TestRankRecorder() if cfg.get("save_ranks", True) else None
    callbacks += [rank_recorder] if rank_recorder else []
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=_loggers(cfg))
    model_name = _model_name(cfg)
    run_id, resume_ckpt = _resume_state(cfg, output_dir, trainer)
    run_id = run_id or new_run_id(model_name, datamodule.name, cfg.seed)
    if trainer.is_global_zero and HydraConfig.initialized():
        state = {"run_id": run_id, "config_hash": _config_hash(cfg)}
        atomic_write_text(output_dir / ".generec_run.json", json.dumps(state))
    if resume_ckpt and not cfg.get("ckpt_path"):
        log.info("resuming interrupted run %s from %s", run_id, resume_ckpt)

    t0 = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path") or resume_ckpt)
    fit_history = copy.deepcopy(history.state_dict())
    fit_seconds = time.perf_counter() - t0

    best_cb = next((c for c in trainer.checkpoint_callbacks if c.monitor == cfg.monitor), None)
    best_path = best_cb.best_model_path if best_cb is not None else ""
    ckpt = best_path or None
    valid = trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0]
    t1 = time.perf_counter()
    test = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0] if cfg.test else {}
    test_seconds = time.perf_counter() - t1

    strip = lambda d, p: {k.split("/", 1)[1]: float(v) for k, v in d.items() if k.startswith(p)}  # noqa: E731
    # validate/test with ckpt_path restore callback states from the best checkpoint: put back the
    # history of the whole fit, which the record reports.
    history.load_state_dict(fit_history)
    best = history.best()
    record = {
        "run_id": run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": model_name,
        "seed": int(cfg.seed),
        "dataset": datamodule.dataset_record(),
        "metrics": {"valid": strip(valid, "valid/"), "test": strip(test, "test/")},
        "best_epoch": int(best["epoch"]) if best else None,
        "epochs_run": len(history.epoch_seconds),
        "train_seconds_per_epoch": sum(history.epoch_seconds) / max(len(history.epoch_seconds), 1),
        "epoch_seconds": history.epoch_seconds,
        "eval_seconds_per_epoch": history.eval_seconds,
        "valid_history": history.valid,
        "eval_seconds": sum(history.eval_seconds) / max(len(history.eval_seconds), 1),
        "test_seconds": test_seconds,
        "fit_seconds": fit_seconds,
        "peak_memory_mib": _peak_memory_mib(model.device),
        "device": str(model.device)
        if model.device.type == "cpu"
        else torch.cuda.get_device_name(model.device),
        "checkpoint": best_path or None,
        "output_dir": str(output_dir),
        "versions": package_versions(),
        "environment": environment(),
        "git_commit": commit,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if trainer.is_global_zero:
        written = []
        if rank_recorder is not None and rank_recorder.users is not None and cfg.test:
            # Written before the record: a record never points at a missing dump.
            ranks_path = Path(cfg.results_dir) / f"{run_id}.ranks.npz"
            facts = user_facts(datamodule, rank_recorder.users)
            written.append(write_ranks(ranks_path, rank_recorder.users, rank_recorder.ranks, **facts))
            record["ranks_file"] = ranks_path.name
        path = write_record(record, cfg.results_dir)
        _log_record_artifact(trainer, [path, *written], run_id)
        log.info("results record: %s", path)
        print_run_table(record)
        print(f"results record: {path}")
    return record


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        record = run(cfg)
    except SIGTERMException:
        # Lightning turns SIGTERM into a SystemExit with code 0, so a preempted run would read as done.
        log.warning("stopped by SIGTERM: no record written; the same command resumes from last.ckpt")
        raise SystemExit(SIGTERM_EXIT_CODE) from None
    return record["metrics"]["valid"].get(cfg.monitor.split("/", 1)[1])  # for sweepers


if __name__ == "__main__":
    main()

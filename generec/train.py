"""Hydra entry point: compose config -> datamodule, model, callbacks, loggers, trainer -> fit, test, record.

python -m generec.train data=beauty model=sasrec trainer.max_epochs=200 seed=3
"""

from __future__ import annotations

import logging
import os
import resource
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from generec.callbacks import EpochSeed, RunHistory
from generec.report import print_run_table
from generec.results import environment, git_commit, new_run_id, package_versions, write_record

log = logging.getLogger(__name__)


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


def run(cfg: DictConfig) -> dict:
    """Trains, tests the best checkpoint and writes the results record; returns the record."""
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path.cwd()
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    model = instantiate(cfg.model, num_items=datamodule.num_items, _convert_="all")
    datamodule.set_trimming(model.accepts_trimmed_batches)

    history = RunHistory(monitor=cfg.monitor)
    callbacks = [EpochSeed(cfg.seed), history]
    callbacks += [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=_loggers(cfg))

    t0 = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    fit_seconds = time.perf_counter() - t0

    best_path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    ckpt = best_path or None
    valid = trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0]
    t1 = time.perf_counter()
    test = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0] if cfg.test else {}
    test_seconds = time.perf_counter() - t1

    strip = lambda d, p: {k.split("/", 1)[1]: float(v) for k, v in d.items() if k.startswith(p)}  # noqa: E731
    best = history.best()
    model_name = _model_name(cfg)
    record = {
        "run_id": new_run_id(model_name, datamodule.name, cfg.seed),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": model_name,
        "seed": int(cfg.seed),
        "dataset": datamodule.dataset_record(),
        "metrics": {"valid": strip(valid, "valid/"), "test": strip(test, "test/")},
        "best_epoch": int(best["epoch"]) if best else None,
        "epochs_run": len(history.epoch_seconds),
        "train_seconds_per_epoch": sum(history.epoch_seconds) / max(len(history.epoch_seconds), 1),
        "epoch_seconds": history.epoch_seconds,
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
        "git_commit": git_commit(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if trainer.is_global_zero:
        path = write_record(record, cfg.results_dir)
        log.info("results record: %s", path)
        print_run_table(record)
        print(f"results record: {path}")
    return record


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    record = run(cfg)
    return record["metrics"]["valid"].get(cfg.monitor.split("/", 1)[1])  # for sweepers


if __name__ == "__main__":
    main()

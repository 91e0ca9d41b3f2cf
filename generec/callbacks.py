"""Lightning callbacks the training entry point always installs."""

from __future__ import annotations

import time

import lightning as L
import torch


class EpochSeed(L.Callback):
    """Re-seeds torch at every epoch start from (seed, epoch).

    Dropout and negative sampling then depend only on the epoch, so resuming from an
    epoch-end checkpoint reproduces an uninterrupted run exactly.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        torch.manual_seed(self.seed * 100_003 + trainer.current_epoch)


class RunHistory(L.Callback):
    """Per-epoch wall times (training part, validation part) and validation metrics.

    Kept in the checkpoint so a resumed run reports the whole history.
    """

    def __init__(self, monitor: str = "valid/ndcg@10") -> None:
        self.monitor = monitor
        self.epoch_seconds: list[float] = []
        self.eval_seconds: list[float] = []
        self.valid: list[dict[str, float]] = []
        self._t_epoch = self._t_eval = 0.0
        self._eval_in_epoch = 0.0

    def _sync(self, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        self._t_epoch = time.perf_counter()
        self._eval_in_epoch = 0.0

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        self._t_eval = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        # Not on_validation_epoch_end: callbacks run before the module's hook there, so the
        # epoch's metrics are not yet in callback_metrics.
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._sync(pl_module)
        seconds = time.perf_counter() - self._t_eval
        self._eval_in_epoch += seconds
        self.eval_seconds.append(seconds)
        metrics = {
            k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("valid/", "trust/"))
        }
        metrics["epoch"] = trainer.current_epoch
        self.valid.append(metrics)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        self.epoch_seconds.append(time.perf_counter() - self._t_epoch - self._eval_in_epoch)

    def best(self) -> dict[str, float] | None:
        scored = [v for v in self.valid if self.monitor in v]
        return (
            max(scored, key=lambda v: v[self.monitor]) if scored else None
        )  # first max, like ModelCheckpoint

    def state_dict(self) -> dict:
        return {"epoch_seconds": self.epoch_seconds, "eval_seconds": self.eval_seconds, "valid": self.valid}

    def load_state_dict(self, state: dict) -> None:
        self.epoch_seconds = list(state["epoch_seconds"])
        self.eval_seconds = list(state["eval_seconds"])
        self.valid = list(state["valid"])

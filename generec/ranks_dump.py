"""Per-user test ranks: recorded during ``trainer.test``, gathered over ranks, dumped next to the record.

The results record holds means; significance tests over users (the leaderboard's per-user
bootstrap) and per-bucket analyses (notebooks/leaderboard.ipynb) need each user's rank. The dump
is ``<results_dir>/<run_id>.ranks.npz`` with int32 arrays sorted by user id:

* ``users`` [N]; ``ranks`` [N] (or [N, T] for several targets, -1 in padded slots), 0-based;
* ``history_len`` [N]: the user's full history length at test time (before ``max_len`` truncation);
* ``target_pop`` [N] (or [N, T]): training-interaction count of the target item.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor

from generec.data.preprocess import examples
from generec.eval.metrics import PADDED_RANK

log = logging.getLogger(__name__)


class _RecordingAccumulator:
    """Wraps a ``MetricAccumulator``: keeps every batch's ranks, delegates everything else."""

    def __init__(self, inner, sink: list[Tensor]) -> None:
        self.inner, self.sink = inner, sink

    def update(self, ranks: Tensor) -> None:
        self.sink.append(ranks.detach())
        self.inner.update(ranks)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


class TestRankRecorder(L.Callback):
    """Collects (user, rank) pairs of the test stage; after ``trainer.test`` every rank holds them all.

    It taps ``pl_module.metrics["test"].update`` (the ranks the metrics are computed from), so the
    dump costs no second scoring pass and always agrees with the record's metrics.
    """

    def __init__(self) -> None:
        self.users: np.ndarray | None = None
        self.ranks: np.ndarray | None = None
        self._ranks: list[Tensor] = []
        self._users: list[Tensor] = []
        self._inner = None

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._ranks, self._users = [], []
        self._inner = pl_module.metrics["test"]
        pl_module.metrics["test"] = _RecordingAccumulator(self._inner, self._ranks)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._users.append(batch["users"].detach())

    def on_test_end(self, trainer, pl_module) -> None:
        if self._inner is not None:
            pl_module.metrics["test"] = self._inner
            self._inner = None
        if len(self._users) != len(self._ranks):  # a model that bypasses metrics["test"].update
            log.warning(
                "no ranks dump: %d rank batches for %d test batches", len(self._ranks), len(self._users)
            )
            self.users = self.ranks = None
            self._ranks, self._users = [], []
            return
        width = max((r.shape[1] for r in self._ranks if r.dim() == 2), default=0)
        ranks = [r.cpu().long() for r in self._ranks]
        if width:  # several targets: pad every batch to the widest with PADDED_RANK
            ranks = [
                torch.nn.functional.pad(
                    r.view(len(r), -1), (0, width - r.view(len(r), -1).shape[1]), value=PADDED_RANK
                )
                for r in ranks
            ]
        users = torch.cat(self._users).cpu().numpy() if self._users else np.zeros(0, np.int64)
        local = torch.cat(ranks).numpy() if ranks else np.zeros((0, width) if width else 0, np.int64)
        parts = [(users, local)]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            parts = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(parts, (users, local))
        users = np.concatenate([u for u, _ in parts])
        ranks_all = _concat_ranks([r for _, r in parts])
        order = np.argsort(users, kind="stable")
        self.users = users[order].astype(np.int32)
        self.ranks = np.where(ranks_all[order] >= PADDED_RANK, -1, ranks_all[order]).astype(np.int32)
        self._ranks, self._users = [], []


def _concat_ranks(parts: list[np.ndarray]) -> np.ndarray:
    parts = [p for p in parts if len(p)] or parts[:1]
    if parts[0].ndim == 1:
        return np.concatenate(parts)
    width = max(p.shape[1] for p in parts)
    return np.concatenate(
        [np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=PADDED_RANK) for p in parts]
    )


def user_facts(datamodule, users: np.ndarray) -> dict[str, np.ndarray]:
    """History length and target popularity of each test user (int32, aligned with ``users``)."""
    data, split = datamodule.data, datamodule.split
    get_examples = getattr(split, "examples", None)
    ex_users, history_end, target = (
        get_examples("test") if callable(get_examples) else examples(split, "test")
    )
    position = np.arange(len(data.items)) - np.repeat(data.offsets[:-1], data.lengths)  # [n_inter]
    owner = np.repeat(np.arange(data.num_users), data.lengths)  # [n_inter]
    counts = np.bincount(data.items[position < split.train_end[owner]], minlength=data.num_items + 1)
    order = np.argsort(ex_users, kind="stable")
    idx = order[np.searchsorted(ex_users[order], users)]  # example row of each dumped user
    target = np.asarray(target)[idx]
    pop = np.where(target > 0, counts[target], -1)
    return {"history_len": history_end[idx].astype(np.int32), "target_pop": pop.astype(np.int32)}


def write_ranks(path: str | Path, users: np.ndarray, ranks: np.ndarray, **extra: np.ndarray) -> Path:
    """Atomic ``.npz`` write (temp file in the same folder + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, users=users.astype(np.int32), ranks=ranks.astype(np.int32), **extra)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

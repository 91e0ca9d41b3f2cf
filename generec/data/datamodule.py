"""SeqDataModule: preprocessed sequences -> padded tensors -> epoch-seeded batches.

Whole datasets are held as padded int tensors; a "batch" is a slice of them. Shuffling is
a function of (seed, epoch), so a run resumed from an epoch-end checkpoint sees exactly
the batches an uninterrupted run would.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from generec.data.augment import ROW_BUILDERS, OnlineAugment, offline_rows, ops_from_config, parse_augment
from generec.data.batching import left_padded_windows
from generec.data.preprocess import SPLITTERS, examples, load_dataset
from generec.data.registry import get_spec
from generec.data.types import SequenceData

log = logging.getLogger(__name__)

PROTOCOLS = ("all_positions", "prefixes", "last")  # last: one row per sequence (DA4Rec, no slide-window)


class TensorRows(Dataset):
    """Indexable by a tensor of row ids; returns a dict batch of the named tensors.

    With ``trim`` on, columns that are padding in every row of the batch are cut off the
    left of the left-padded tensors (``input_ids``/``targets`` together, ``history`` on its
    own). Short-sequence datasets then pay for their real lengths, not for ``max_len``;
    the widths are known on the host, so trimming costs no device sync.
    """

    TRAIN_GROUPS = (("input_ids", "targets"), ("history",))
    EVAL_GROUPS = (("input_ids",), ("history",))  # eval targets ([N] or [N, T]) are not positions

    def __init__(
        self, trim_groups: tuple[tuple[str, ...], ...] = TRAIN_GROUPS, **tensors: torch.Tensor
    ) -> None:
        self.tensors = tensors
        self.n = len(next(iter(tensors.values())))
        self.trim = False
        # Fast path: each batch also carries its number of supervised positions, counted on the
        # host, so the loss can gather them without a device->host sync (see SeqRecModule).
        self.count_supervised = False
        # Length bucketing: the mean supervised positions per batch over an epoch. Each batch then
        # carries ``loss_scale`` = its own count / this mean, so a per-batch mean loss times the scale
        # weighs every target equally across batches of very different lengths (see SeqRecModule).
        self.loss_norm: float | None = None
        # Sub-batches: rows of a (random) training batch sorted by width and cut into this many
        # parts, each trimmed to its own width. The model concatenates the parts' supervised states
        # before one loss, so a step sees exactly the unbucketed batch at close to bucketed cost.
        self.sub_batches = 1
        # Every row supervised at its last column only (prefixes / last protocols): batches then say
        # so (``last_only``) and the encoders compute the final block at that position alone.
        targets = tensors.get("targets")
        self.last_only = bool(
            ("input_ids", "targets") in trim_groups  # training rows (eval targets are not positions)
            and targets is not None
            and targets.dim() == 2
            and bool((targets[:, -1] > 0).all())
            and int((targets > 0).sum()) == len(targets)
        )
        self.widths: dict[tuple[str, ...], torch.Tensor] = {}
        for group in trim_groups:
            present = [tensors[k] for k in group if k in tensors]
            if present:
                nonzero = torch.stack([t != 0 for t in present]).any(0)  # [N, L]
                first = torch.where(nonzero.any(1), nonzero.int().argmax(1), nonzero.shape[1])
                self.widths[group] = (nonzero.shape[1] - first).clamp(min=1)  # [N] real width per row

    def __len__(self) -> int:
        return self.n

    @property
    def device(self) -> torch.device:
        return next(iter(self.tensors.values())).device

    def to(self, device: torch.device | str) -> TensorRows:
        """The same rows held on ``device`` (batches are then sliced there, no host->device copy
        per batch). Row widths stay on the host: trimming reads them without a device sync."""
        moved = TensorRows.__new__(TensorRows)
        moved.__dict__.update(self.__dict__)
        moved.tensors = {k: v.to(device) for k, v in self.tensors.items()}
        return moved

    def __getitem__(self, rows: torch.Tensor) -> dict:
        if self.trim and self.sub_batches > 1 and len(rows) > 1:
            return self._sub_batched(rows)
        return self._batch(rows)

    def _sub_batched(self, rows: torch.Tensor) -> dict:
        """``{"sub_batches": [batch, ...]}``: the rows sorted by input width, in near-equal parts."""
        widths = self.widths[("input_ids", "targets")]
        order = torch.sort(widths[rows.cpu()], stable=True).indices  # widths live on the host
        parts = [
            self._batch(rows[idx]) for idx in torch.tensor_split(order, min(self.sub_batches, len(rows)))
        ]
        batch: dict = {"sub_batches": parts}
        if "loss_scale" in parts[0]:
            batch["loss_scale"] = sum(p.pop("loss_scale") for p in parts)
        return batch

    def _batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        host_rows = rows
        if rows.device != self.device:
            rows = rows.to(self.device, non_blocking=True)
        batch = {k: v[rows] for k, v in self.tensors.items()}
        if self.trim:
            for group, widths in self.widths.items():
                width = int(widths[host_rows].max())
                for k in group:
                    if k in batch:
                        batch[k] = batch[k][:, -width:]
        if self.last_only:
            batch["last_only"] = True
        if self.count_supervised or self.loss_norm:
            n_supervised = int(self.supervised_per_row()[host_rows].sum())
            if self.count_supervised:
                batch["num_supervised"] = n_supervised
            if self.loss_norm:
                batch["loss_scale"] = n_supervised / self.loss_norm
        return batch

    def supervised_per_row(self) -> torch.Tensor:
        """Supervised (target > 0) positions of every row [N], counted once, on the host."""
        if "supervised" not in self.__dict__:
            self.supervised = (self.tensors["targets"] > 0).sum(1).cpu()
        return self.supervised


class EpochBatchSampler(Sampler):
    """Yields row-index tensors; the permutation depends only on (seed, epoch).

    Under torch.distributed each rank takes an exact, non-overlapping share of the rows
    (no padding by duplication, so evaluation sums stay exact). With ``widths`` (real row
    widths) and shuffling, rows of similar width share a batch: length bucketing; without
    shuffling (evaluation) the rows come in width order.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        widths: torch.Tensor | None = None,
    ) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.drop_last, self.widths = drop_last, widths
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning at each epoch start
        self.epoch = epoch

    def _rows(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            rows = torch.randperm(self.n, generator=g)
        else:
            rows = torch.arange(self.n)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
            if self.shuffle:  # training: equal batch counts per rank, or the gradient all-reduce hangs
                rows = rows[: len(rows) - len(rows) % world]
            rows = rows[rank::world]
        return rows

    def __iter__(self):
        rows = self._rows()
        stop = len(rows) - len(rows) % self.batch_size if self.drop_last else len(rows)
        if self.widths is not None and self.shuffle:
            # Stable sort: random order within equal widths; then shuffle the batch order.
            rows = rows[torch.sort(self.widths[rows], stable=True).indices]
            batches = [rows[i : i + self.batch_size] for i in range(0, stop, self.batch_size)]
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch + 1)
            yield from (batches[i] for i in torch.randperm(len(batches), generator=g).tolist())
            return
        if self.widths is not None:
            # Evaluation: rows in width order, so each trimmed batch pays for its own longest row
            # instead of nearly every batch padding to max_len (2.8x faster on Toys). Metrics are
            # sums over rows and the ranks dump sorts by user, so the order changes no result.
            rows = rows[torch.sort(self.widths[rows], stable=True).indices]
        for i in range(0, stop, self.batch_size):
            yield rows[i : i + self.batch_size]

    def __len__(self) -> int:
        n = self.n
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
            total = self.n - self.n % world if self.shuffle else self.n
            n = len(range(rank, total, world))
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class _AugmentedRows(Dataset):
    """Training rows with an online augmentation per batch, seeded by (epoch, batch index in the epoch).

    Batches are fetched in order in the main process (``batch_size=None``, no workers), so a
    per-epoch counter is a deterministic batch index.
    """

    def __init__(self, rows: TensorRows, transform) -> None:
        self.rows, self.transform = rows, transform
        self.sampler: EpochBatchSampler | None = None
        self._epoch, self._index = -1, 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        epoch = self.sampler.epoch if self.sampler is not None else 0
        if epoch != self._epoch:
            self._epoch, self._index = epoch, 0
        batch = self.rows[rows]
        batch.pop("num_supervised", None)  # the augmentation changes the targets: the count would be stale
        batch = self.transform(batch, epoch, self._index)
        self._index += 1
        return batch


def _plain(value):
    """Hydra DictConfig/ListConfig (or plain) -> plain dicts/lists, keeping key order."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or type(value).__name__ == "ListConfig":
        return [_plain(v) for v in value]
    return value


class SeqDataModule(L.LightningDataModule):
    """Loads a registry dataset (or ``path``), splits it and serves padded batches."""

    def __init__(
        self,
        registry: str | None = "ml-100k",
        name: str | None = None,
        path: str | None = None,
        format: str | None = None,
        min_user_inter: int | None = None,
        min_item_inter: int | None = None,
        dedup: str | None = None,
        max_len: int = 50,
        protocol: str = "all_positions",
        split: str = "loo",
        batch_size: int = 256,
        eval_batch_size: int = 1024,
        mask_history: bool = False,
        seed: int = 0,
        cache_dir: str | None = None,
        augment: dict | None = None,
        cold_start_ratio: float | None = None,
        cold_start_seed: int = 0,
        length_bucketing: bool = False,
        resident_device: str | None = None,
        window_stride: int | None = None,
        sub_batches: int = 1,
    ) -> None:
        super().__init__()
        if protocol not in PROTOCOLS:
            raise ValueError(f"data.protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if split not in SPLITTERS:
            raise ValueError(f"data.split must be one of {sorted(SPLITTERS)}, got {split!r}")
        self.registry, self.path, self.format = registry, path, format
        self.name = name or (Path(path).stem if path else registry)
        given = {"min_user_inter": min_user_inter, "min_item_inter": min_item_inter, "dedup": dedup}
        defaults = {"min_user_inter": 0, "min_item_inter": 0, "dedup": "all"}
        if path is None and registry is not None:
            defaults.update(get_spec(registry).defaults)
        # Effective values (recorded in the results); None means the registry's default.
        self.preprocessing = {k: defaults[k] if v is None else v for k, v in given.items()}
        self.max_len, self.protocol, self.split_name = max_len, protocol, split
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.mask_history, self.seed, self.cache_dir = mask_history, seed, cache_dir
        self.length_bucketing = length_bucketing
        # Fast path: hold the padded tensors on the training device ("auto": the trainer's own).
        self.resident_device = resident_device
        self.data: SequenceData | None = None
        # {mode: none|offline|online, ops: {name: params}, copies}: see generec.data.augment
        self.augment = parse_augment(_plain(augment))
        if cold_start_ratio is not None and not 0 < cold_start_ratio <= 1:
            raise ValueError(f"data.cold_start_ratio must be in (0, 1], got {cold_start_ratio}")
        self.cold_start_ratio, self.cold_start_seed = cold_start_ratio, cold_start_seed
        if window_stride is not None:
            if protocol != "all_positions":
                raise ValueError(
                    f"data.window_stride applies to protocol=all_positions only, not {protocol!r}"
                )
            if self.augment["mode"] == "online":  # the online rebuild supervises every column of a row
                raise ValueError("data.window_stride is not supported with augment.mode=online")
            if not 1 <= window_stride <= max_len:
                raise ValueError(
                    f"data.window_stride must be in [1, data.max_len={max_len}], got {window_stride}"
                )
        self.window_stride = window_stride
        if sub_batches < 1:
            raise ValueError(f"data.sub_batches must be >= 1, got {sub_batches}")
        if sub_batches > 1 and self.augment["mode"] == "online":
            raise ValueError("data.sub_batches > 1 is not supported with augment.mode=online")
        self.sub_batches = sub_batches

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        self.data = load_dataset(
            name=self.registry if self.path is None else self.name,
            path=self.path,
            format=self.format,
            cache_dir=self.cache_dir,
            **self.preprocessing,
        )
        self.data.name = self.name
        self.split = SPLITTERS[self.split_name](self.data)
        if self.cold_start_ratio is not None and self.cold_start_ratio < 1:
            self._keep_user_fraction()
        inputs, targets = self._train_arrays()
        self.train_rows = TensorRows(input_ids=torch.from_numpy(inputs), targets=torch.from_numpy(targets))
        self.eval_rows = {which: self._eval_rows(which) for which in ("valid", "test")}
        log.info(
            "%s: %d users, %d items, %d interactions; %d training rows (%s), %d eval users",
            self.name,
            self.data.num_users,
            self.data.num_items,
            len(self.data.items),
            len(self.train_rows),
            self.protocol,
            len(self.eval_rows["test"]),
        )

    def _keep_user_fraction(self) -> None:
        """Cold start (DA4Rec): a seeded fraction of users; the others neither train nor get evaluated."""
        rng = np.random.default_rng(self.cold_start_seed)
        n = self.data.num_users
        kept = np.zeros(n, dtype=bool)
        kept[rng.permutation(n)[: max(1, round(self.cold_start_ratio * n))]] = True
        self.split.train_end = np.where(kept, self.split.train_end, 0)
        for name in ("eval_users", "short_users"):
            users = getattr(self.split, name, None)
            if users is not None:
                setattr(self.split, name, users[kept[users]])
        self.kept_users = kept

    def _train_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Training (inputs, targets); offline augmentation grows the training parts first."""
        args = (self.data.items, self.data.offsets, self.split.train_end)
        stride = {"stride": self.window_stride} if self.window_stride is not None else {}
        if self.augment["mode"] != "offline":
            return ROW_BUILDERS[self.protocol](*args, self.max_len, **stride)
        ops = ops_from_config(self.augment["ops"], self.data.num_items)
        return offline_rows(
            *args, self.protocol, self.max_len, ops, self.augment["copies"], self.seed, **stride
        )

    def _eval_rows(self, which: str) -> TensorRows:
        # A splitter may bring its own ``examples`` (e.g. several targets per user: target [N, T]).
        get_examples = getattr(self.split, "examples", None)
        users, history_end, target = (
            get_examples(which) if callable(get_examples) else examples(self.split, which)
        )
        starts = self.data.offsets[users]
        ends = starts + history_end
        tensors = {
            "users": torch.from_numpy(users.astype(np.int64)),
            "input_ids": torch.from_numpy(left_padded_windows(self.data.items, starts, ends, self.max_len)),
            "targets": torch.from_numpy(target.astype(np.int64)),
        }
        if self.mask_history:
            width = int(history_end.max()) if len(history_end) else 1
            tensors["history"] = torch.from_numpy(left_padded_windows(self.data.items, starts, ends, width))
        return TensorRows(TensorRows.EVAL_GROUPS, **tensors)

    def user_rows(self, users: np.ndarray | None = None, with_history: bool = True) -> TensorRows:
        """Whole sequences of ``users`` (default all) as model input, for serving top-K."""
        users = np.arange(self.data.num_users) if users is None else np.asarray(users)
        starts, ends = self.data.offsets[users], self.data.offsets[users + 1]
        tensors = {
            "users": torch.from_numpy(users.astype(np.int64)),
            "input_ids": torch.from_numpy(left_padded_windows(self.data.items, starts, ends, self.max_len)),
        }
        if with_history:
            width = max(int((ends - starts).max()), 1)
            tensors["history"] = torch.from_numpy(left_padded_windows(self.data.items, starts, ends, width))
        return TensorRows(TensorRows.EVAL_GROUPS, **tensors)

    def set_trimming(self, enabled: bool) -> None:
        """Cut all-padding columns per batch (for models that accept inputs shorter than max_len)."""
        for rows in (self.train_rows, *self.eval_rows.values()):
            rows.trim = enabled

    # ------------------------------------------------------------------ loaders
    def _resident(self, rows: TensorRows) -> TensorRows:
        """``rows`` on the resident device when one is configured (else unchanged, on the host)."""
        if not self.resident_device:
            return rows
        device = self.resident_device
        if device == "auto":
            trainer = getattr(self, "trainer", None)
            device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        device = torch.device(device)
        key = str(device)
        cache = self.__dict__.setdefault("_resident_cache", {})
        if (id(rows), key) not in cache:  # moved once per run, not once per epoch
            cache[(id(rows), key)] = rows.to(device)
        moved = cache[(id(rows), key)]
        moved.trim = rows.trim  # set_trimming may come after the move
        return moved

    @staticmethod
    def loader(
        rows: TensorRows, batch_size: int, shuffle: bool, seed: int = 0, widths: torch.Tensor | None = None
    ) -> DataLoader:
        # A private generator: creating the iterator must not draw from torch's global RNG,
        # whose state at each epoch start is what makes resumed runs exact.
        return DataLoader(
            rows,
            batch_size=None,
            sampler=EpochBatchSampler(len(rows), batch_size, shuffle, seed, widths=widths),
            generator=torch.Generator().manual_seed(seed),
        )

    def train_dataloader(self) -> DataLoader:
        if self.augment["mode"] == "online":
            ops = ops_from_config(self.augment["ops"], self.data.num_items)
            transform = OnlineAugment(ops, self.protocol, self.seed, self.max_len)
            rows = _AugmentedRows(self._resident(self.train_rows), transform)
            loader = self.loader(rows, self.batch_size, shuffle=True, seed=self.seed)
            rows.sampler = loader.sampler
            return loader
        widths = self.train_rows.widths.get(("input_ids", "targets")) if self.length_bucketing else None
        rows = self._resident(self.train_rows)
        rows.count_supervised = rows is not self.train_rows  # resident fast path: sync-free loss gather
        rows.sub_batches = self.sub_batches
        rows.loss_norm = None
        if widths is not None:  # bucketed batches differ in size: restore equal weight per target
            batches = -(-len(rows) // self.batch_size)
            rows.loss_norm = float(self.train_rows.supervised_per_row().sum()) / max(batches, 1)
        return self.loader(rows, self.batch_size, shuffle=True, seed=self.seed, widths=widths)

    def _eval_loader(self, which: str) -> DataLoader:
        rows = self._resident(self.eval_rows[which])
        widths = rows.widths.get(("input_ids",)) if rows.trim else None  # width-sorted when trimmed
        return self.loader(rows, self.eval_batch_size, shuffle=False, widths=widths)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    # ------------------------------------------------------------------ facts
    @property
    def num_items(self) -> int:
        return self.data.num_items

    def dataset_record(self) -> dict:
        """What the results record says about the data."""
        return {
            "name": self.name,
            "registry": self.registry if self.path is None else None,
            "path": self.path,
            "fingerprint": self.data.fingerprint,
            "num_users": self.data.num_users,
            "num_items": self.data.num_items,
            "num_interactions": int(len(self.data.items)),
            "num_train_rows": len(self.train_rows),
            "num_eval_users": len(self.eval_rows["test"]),
            "protocol": self.protocol,
            "window_stride": self.window_stride,
            "split": self.split_name,
            "max_len": self.max_len,
            "mask_history": self.mask_history,
            "augment": self.augment,
            "cold_start_ratio": self.cold_start_ratio,
            **self.preprocessing,
        }

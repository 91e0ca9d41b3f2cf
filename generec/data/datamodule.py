"""SeqDataModule: preprocessed sequences -> padded tensors -> epoch-seeded batches.

Whole datasets are held as padded int tensors; a "batch" is a slice of them. Shuffling is
a function of (seed, epoch), so a run resumed from an epoch-end checkpoint sees exactly
the batches an uninterrupted run would.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from generec.data.batching import all_positions_rows, left_padded_windows, prefix_rows
from generec.data.preprocess import SPLITTERS, examples, load_dataset
from generec.data.registry import get_spec
from generec.data.types import SequenceData

log = logging.getLogger(__name__)

PROTOCOLS = ("all_positions", "prefixes")


class TensorRows(Dataset):
    """Indexable by a tensor of row ids; returns a dict batch of the named tensors."""

    def __init__(self, **tensors: torch.Tensor) -> None:
        self.tensors = tensors
        self.n = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v[rows] for k, v in self.tensors.items()}


class EpochBatchSampler(Sampler):
    """Yields row-index tensors; the permutation depends only on (seed, epoch).

    Under torch.distributed each rank takes an exact, non-overlapping share of the rows
    (no padding by duplication, so evaluation sums stay exact).
    """

    def __init__(
        self, n: int, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False
    ) -> None:
        self.n, self.batch_size, self.shuffle, self.seed, self.drop_last = (
            n,
            batch_size,
            shuffle,
            seed,
            drop_last,
        )
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
            rows = rows[rank::world]
        return rows

    def __iter__(self):
        rows = self._rows()
        stop = len(rows) - len(rows) % self.batch_size if self.drop_last else len(rows)
        for i in range(0, stop, self.batch_size):
            yield rows[i : i + self.batch_size]

    def __len__(self) -> int:
        n = self.n
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
            n = len(range(rank, self.n, world))
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


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
        self.data: SequenceData | None = None

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
        build_rows = all_positions_rows if self.protocol == "all_positions" else prefix_rows
        inputs, targets = build_rows(self.data.items, self.data.offsets, self.split.train_end, self.max_len)
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

    def _eval_rows(self, which: str) -> TensorRows:
        users, history_end, target = examples(self.split, which)
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
        return TensorRows(**tensors)

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
        return TensorRows(**tensors)

    # ------------------------------------------------------------------ loaders
    @staticmethod
    def loader(rows: TensorRows, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
        # A private generator: creating the iterator must not draw from torch's global RNG,
        # whose state at each epoch start is what makes resumed runs exact.
        return DataLoader(
            rows,
            batch_size=None,
            sampler=EpochBatchSampler(len(rows), batch_size, shuffle, seed),
            generator=torch.Generator().manual_seed(seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.train_rows, self.batch_size, shuffle=True, seed=self.seed)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.eval_rows["valid"], self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.eval_rows["test"], self.eval_batch_size, shuffle=False)

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
            "split": self.split_name,
            "max_len": self.max_len,
            "mask_history": self.mask_history,
            **self.preprocessing,
        }

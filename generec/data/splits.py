"""The ComiRec evaluation protocol as a splitter: users (not interactions) are split 80/10/10.

Training users contribute their whole sequence to training. A validation/test user never trains:
the first ``history_frac`` of the sequence is the history fed to the model and the rest are the
targets (several per user, padded with 0). A target item that already occurs in the user's history
is dropped, and repeated targets are kept once (ComiRec evaluates against the *set* of future items),
so no target can be read off the history.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from generec.data.types import SequenceData

logger = logging.getLogger(__name__)


@dataclass
class ComiRecSplit:
    """Result of :func:`comirec_user_split`; ``examples`` feeds ``SeqDataModule._eval_rows``."""

    data: SequenceData = field(repr=False)
    train_end: np.ndarray  # int64 [U]: len for training users, 0 for evaluated users
    train_users: np.ndarray  # int64 [U_train]
    eval_users: dict[str, np.ndarray]  # "valid"/"test" -> int64 [E]
    history_frac: float = 0.8
    seed: int = 0

    def history_end(self, users: np.ndarray) -> np.ndarray:
        """Exclusive end of the history: ``floor(history_frac * len)`` kept within [1, len - 1]."""
        lens = self.data.lengths[users]
        return np.clip(np.floor(self.history_frac * lens).astype(np.int64), 1, lens - 1)

    def examples(self, which: str = "valid") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(users [E], history_end [E], targets [E, T])``, targets padded with 0.

        Targets are the distinct items after the history that do not occur in the history, in
        order of first appearance; a user left without any such item is not evaluated.
        """
        if which not in self.eval_users:
            raise ValueError(f"which must be one of {sorted(self.eval_users)}, got {which!r}")
        data, users = self.data, self.eval_users[which]
        ends = self.history_end(users)
        starts = data.offsets[users]
        lens = data.lengths[users]
        n_future = lens - ends  # [E]
        # flat (example, item) pairs of every future item, then vectorised filtering
        ex = np.repeat(np.arange(len(users)), n_future)
        pos = np.arange(n_future.sum()) - np.repeat(np.cumsum(n_future) - n_future, n_future)
        item = data.items[np.repeat(starts + ends, n_future) + pos]
        n_hist = ends
        hist_ex = np.repeat(np.arange(len(users)), n_hist)
        hist_pos = np.arange(n_hist.sum()) - np.repeat(np.cumsum(n_hist) - n_hist, n_hist)
        hist_item = data.items[np.repeat(starts, n_hist) + hist_pos]
        width = np.int64(data.num_items + 1)
        in_history = np.isin(ex * width + item, hist_ex * width + hist_item)
        key = ex * width + item
        _, first = np.unique(key, return_index=True)
        keep = np.zeros(len(key), dtype=bool)
        keep[first] = True
        keep &= ~in_history
        ex, pos, item = ex[keep], pos[keep], item[keep]  # still sorted by (ex, pos)
        counts = np.bincount(ex, minlength=len(users))
        ok = counts > 0
        if not ok.all():
            logger.info(
                "comirec split: %d %s users have no new target item; not evaluated", (~ok).sum(), which
            )
        T = max(int(counts.max()) if len(counts) else 1, 1)
        slot = np.arange(len(ex)) - np.repeat(np.cumsum(counts) - counts, counts)
        targets = np.zeros((len(users), T), dtype=np.int64)
        targets[ex, slot] = item
        return users[ok], ends[ok], targets[ok]


def comirec_user_split(
    data: SequenceData,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    history_frac: float = 0.8,
    seed: int = 0,
) -> ComiRecSplit:
    """Seeded user permutation cut into train/valid/test by ``ratios``; users shorter than 2 train only."""
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1.0) > 1e-6:
        raise ValueError(f"ratios must be three non-negative numbers summing to 1, got {ratios}")
    if not 0.0 < history_frac < 1.0:
        raise ValueError(f"history_frac must be in (0, 1), got {history_frac}")
    lens = data.lengths
    perm = np.random.default_rng(seed).permutation(data.num_users)
    n_train = int(round(ratios[0] * len(perm)))
    n_valid = int(round(ratios[1] * len(perm)))
    parts = {"valid": perm[n_train : n_train + n_valid], "test": perm[n_train + n_valid :]}
    too_short = {k: np.sort(v[lens[v] < 2]) for k, v in parts.items()}
    eval_users = {k: np.sort(v[lens[v] >= 2]).astype(np.int64) for k, v in parts.items()}
    train_users = np.sort(np.concatenate([perm[:n_train], *too_short.values()])).astype(np.int64)
    train_end = np.zeros(data.num_users, dtype=np.int64)
    train_end[train_users] = lens[train_users]
    return ComiRecSplit(data, train_end, train_users, eval_users, history_frac, seed)

"""Plain containers passed between the data stages (formats -> preprocess -> datamodule).

Kept free of torch so the readers can be used on their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RawInteractions:
    """Interactions exactly as read from disk, before any filtering.

    ``users``/``items`` hold the original id tokens as strings (``dtype=object``),
    one entry per interaction row. ``timestamps`` is float64 or None when the file
    carries no time (then file order is the time order). ``rows`` is the 1-based
    line number each interaction came from, used for the deterministic tie-break
    and for error messages.
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray | None
    rows: np.ndarray
    source: str
    ratings: np.ndarray | None = None


@dataclass
class SideTable:
    """Side information keyed by original id token: ``columns[name][token] -> value``."""

    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    source: str = ""


@dataclass
class SequenceData:
    """Chronological per-user sequences after preprocessing, in CSR form.

    Users are numbered 0..U-1 (row index); items are remapped to 1..I with 0 reserved
    for padding. ``item_tokens[i]`` is the original id of remapped item ``i``
    (``item_tokens[0] == "[PAD]"``), ``user_tokens[u]`` the original id of user ``u``.
    ``item_side[col][i]`` is aligned with the remapped ids (``""`` when unknown).
    """

    name: str
    items: np.ndarray  # int64 [N], remapped item ids of all users, concatenated
    offsets: np.ndarray  # int64 [U + 1], user u owns items[offsets[u]:offsets[u+1]]
    user_tokens: np.ndarray  # object [U]
    item_tokens: np.ndarray  # object [I + 1]
    item_side: dict[str, list[str]] = field(default_factory=dict)
    user_side: dict[str, list[str]] = field(default_factory=dict)
    fingerprint: str = ""
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_items(self) -> int:
        """Number of real items (ids 1..num_items)."""
        return len(self.item_tokens) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user] : self.offsets[user + 1]]

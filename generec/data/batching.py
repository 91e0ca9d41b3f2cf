"""Padded int tensors from CSR sequences, built with array arithmetic (no per-user loops)."""

from __future__ import annotations

import numpy as np


def left_padded_windows(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """Rows ``items[max(start, end - width):end]`` left-padded with 0 to ``width``: [R, width]."""
    cols = np.arange(width)[None, :]  # [1, W]
    src = ends[:, None] - width + cols  # [R, W] absolute index into items
    valid = src >= starts[:, None]
    out = np.zeros((len(ends), width), dtype=np.int64)
    out[valid] = items[src[valid]]
    return out


def all_positions_rows(items: np.ndarray, offsets: np.ndarray, train_end: np.ndarray, max_len: int):
    """One row per ``max_len`` supervised positions of each user's training part.

    Every training item after the first is a target exactly once; a long sequence is cut
    into consecutive windows from its end (input = previous item at each position).
    Returns (inputs [R, L], targets [R, L]) with 0 where nothing is supervised.
    """
    n_targets = np.maximum(train_end - 1, 0)  # targets are positions 1..n-1
    windows = -(-n_targets // max_len)  # ceil
    users = np.repeat(np.arange(len(train_end)), windows)
    # window index within each user, counted from the sequence end
    w = np.arange(windows.sum()) - np.repeat(np.cumsum(windows) - windows, windows)
    base = offsets[users]
    last_target = base + train_end[users] - 1 - w * max_len  # absolute index, inclusive
    first_target = base + 1  # position 0 is never a target
    targets = left_padded_windows(items, first_target, last_target + 1, max_len)
    inputs = left_padded_windows(items, first_target - 1, last_target, max_len)
    inputs[targets == 0] = 0
    return inputs, targets


def prefix_targets(offsets: np.ndarray, train_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(user, absolute index into ``items``) of every training target: positions 1..n-1, users in order."""
    n_targets = np.maximum(train_end - 1, 0)
    users = np.repeat(np.arange(len(train_end)), n_targets)
    t = np.arange(n_targets.sum()) - np.repeat(np.cumsum(n_targets) - n_targets, n_targets) + 1  # 1..n-1
    return users, offsets[users] + t


def prefix_rows(items: np.ndarray, offsets: np.ndarray, train_end: np.ndarray, max_len: int):
    """One row per training prefix (RecBole's default): loss only at the last column."""
    users, pos = prefix_targets(offsets, train_end)
    inputs = left_padded_windows(items, offsets[users], pos, max_len)
    targets = np.zeros_like(inputs)
    targets[:, -1] = items[pos]
    return inputs, targets

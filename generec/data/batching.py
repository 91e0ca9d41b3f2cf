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


def all_positions_rows(
    items: np.ndarray, offsets: np.ndarray, train_end: np.ndarray, max_len: int, stride: int | None = None
):
    """Rows of ``max_len`` columns in which every training item after the first is a target exactly once.

    A long sequence is cut into windows from its end (input = previous item at each position).
    ``stride=None`` (or ``max_len``): consecutive windows, so the first targets of each window
    see little history. ``stride < max_len``: windows overlap; each one supervises only its last
    ``stride`` positions and keeps the ``max_len - stride`` items before them as unsupervised
    context (the earliest window supervises everything it holds that no later window does).
    Every target then sees at least ``max_len - stride`` items of history, as under the prefix
    protocol (``stride=1``: the same history per target), for about ``max_len / stride`` times the rows
    on long sequences. Returns (inputs [R, L], targets [R, L]) with 0 where nothing is supervised.
    """
    stride = max_len if stride is None else int(stride)
    if not 1 <= stride <= max_len:
        raise ValueError(f"data.window_stride must be in [1, max_len={max_len}], got {stride}")
    n_targets = np.maximum(train_end - 1, 0)  # targets are positions 1..n-1
    # windows: the last covers n_targets, each earlier one `stride` more, until <= max_len remain
    windows = np.where(n_targets > 0, 1 + -(-np.maximum(n_targets - max_len, 0) // stride), 0)
    users = np.repeat(np.arange(len(train_end)), windows)
    # window index within each user, counted from the sequence end
    w = np.arange(windows.sum()) - np.repeat(np.cumsum(windows) - windows, windows)
    base = offsets[users]
    last_target = base + train_end[users] - 1 - w * stride  # absolute index, inclusive
    first_target = base + 1  # position 0 is never a target
    targets = left_padded_windows(items, first_target, last_target + 1, max_len)
    inputs = left_padded_windows(items, first_target - 1, last_target, max_len)
    inputs[targets == 0] = 0
    if stride < max_len:  # all but the earliest window: only the last `stride` columns are targets
        earliest = w == windows[users] - 1
        context = ~earliest[:, None] & (np.arange(max_len)[None, :] < max_len - stride)
        targets[context] = 0
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

"""Bias and fairness of recommendation lists: popularity, exposure concentration, group disparities."""

from __future__ import annotations

import numpy as np


def item_counts(items: np.ndarray, offsets: np.ndarray, train_end: np.ndarray, num_items: int) -> np.ndarray:
    """Interactions per item in the training parts only: [I + 1] (index 0 = padding, count 0)."""
    lengths = np.diff(offsets)
    pos = np.arange(len(items)) - np.repeat(offsets[:-1], lengths)
    keep = pos < np.repeat(train_end, lengths)
    return np.bincount(items[keep], minlength=num_items + 1).astype(np.int64)


def popularity_percentile(counts: np.ndarray) -> np.ndarray:
    """[I + 1]: share of real items at most as popular as each item (most popular -> 1.0; row 0 = 0)."""
    real = counts[1:]
    sorted_counts = np.sort(real)
    pct = np.searchsorted(sorted_counts, real, side="right") / len(real)
    return np.concatenate([[0.0], pct])


def _row_mean(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Mean of ``values[ids]`` over the non-padding ids of each row: [U] (NaN for an empty row)."""
    real = ids > 0
    total = np.where(real, values[ids], 0.0).sum(1)
    return total / np.where(real.sum(1) > 0, real.sum(1), np.nan)


def popularity_lift(lists: np.ndarray, histories: np.ndarray, pct: np.ndarray) -> dict[str, float]:
    """Mean popularity percentile of the lists [U, K] minus that of each user's history [U, H].

    Positive: the recommender pushes users toward more popular items than they consume.
    """
    rec, hist = _row_mean(pct, lists), _row_mean(pct, histories)
    ok = ~np.isnan(hist)
    return {
        "bias/popularity_lift": float(np.mean(rec[ok] - hist[ok])),
        "rec_popularity_pct": float(np.mean(rec)),
        "history_popularity_pct": float(np.nanmean(hist)),
    }


def gini(x: np.ndarray) -> float:
    """Gini coefficient of non-negative values: 0 = equal, (n - 1)/n = all mass on one entry."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def exposure(lists: np.ndarray, num_items: int) -> np.ndarray:
    """Times each real item appears in the lists: [I]."""
    return np.bincount(lists[lists > 0].ravel(), minlength=num_items + 1)[1:]


def exposure_metrics(lists: np.ndarray, num_items: int) -> dict[str, float]:
    """``bias/exposure_gini`` over the whole catalogue and ``bias/coverage`` (share of items ever listed)."""
    e = exposure(lists, num_items)
    return {"bias/exposure_gini": gini(e), "bias/coverage": float((e > 0).mean())}


def activity_deciles(train_lengths: np.ndarray) -> np.ndarray:
    """Decile 0..9 of each user's training length (rank-based, ties broken by order): [U]."""
    order = np.argsort(train_lengths, kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks * 10 // max(len(order), 1)


AGE_BINS = (0, 25, 35, 45, 55, 200)


def age_groups(ages: list[str]) -> np.ndarray:
    """ml-100k ages -> labels '<25', '25-34', '35-44', '45-54', '55+' (unparseable -> '?')."""
    labels = ["<25", "25-34", "35-44", "45-54", "55+"]
    out = []
    for a in ages:
        try:
            out.append(labels[int(np.searchsorted(AGE_BINS, int(a), side="right")) - 1])
        except ValueError:
            out.append("?")
    return np.array(out, dtype=object)


def group_disparity(per_user: np.ndarray, groups: np.ndarray, min_size: int = 10) -> tuple[float, dict]:
    """(max - min of the group means, {group: (mean, size)}); groups smaller than ``min_size`` are ignored."""
    stats = {}
    for g in sorted({str(x) for x in groups}):
        sel = groups.astype(str) == g
        if sel.sum() >= min_size:
            stats[g] = (float(per_user[sel].mean()), int(sel.sum()))
    means = [m for m, _ in stats.values()]
    return (max(means) - min(means) if len(means) >= 2 else float("nan")), stats

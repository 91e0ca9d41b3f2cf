"""Metrics per bucket (DA4Rec's analysis): by the target item's popularity and by history length.

Goes through the seam only (``model.score``) and ``target_ranks``, so every model gets the same
breakdown. Popularity = the item's number of interactions in the training parts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from generec.eval.metrics import MetricAccumulator, target_ranks
from generec.eval.ranking import prepare_scores

POPULARITY_EDGES = (0, 50, 100, 150)  # buckets 0-50, 50-100, 100-150, 150+
LENGTH_EDGES = (0, 10, 20, 30, 40, 50)  # buckets 0-10, ..., 40-50, 50+


def bucket_names(edges: Sequence[int]) -> list[str]:
    return [f"{a}-{b}" for a, b in zip(edges[:-1], edges[1:], strict=True)] + [f"{edges[-1]}+"]


def bucket_of(values: np.ndarray, edges: Sequence[int]) -> np.ndarray:
    """Bucket index of each value: [a, b) intervals, the last one open-ended."""
    return np.searchsorted(np.asarray(edges[1:]), values, side="right")


def train_item_counts(datamodule) -> np.ndarray:
    """Interactions per item [I + 1] over the training parts only (no valid/test leakage)."""
    data, split = datamodule.data, datamodule.split
    users = np.repeat(np.arange(data.num_users), data.lengths)
    position = np.arange(len(data.items)) - np.repeat(data.offsets[:-1], data.lengths)
    return np.bincount(data.items[position < split.train_end[users]], minlength=data.num_items + 1)


@torch.no_grad()
def ranks_and_rows(model, datamodule, which: str = "test", batch_size: int = 1024):
    """Rank of every evaluation target plus its (target item, history length)."""
    rows = datamodule.eval_rows[which]
    was_training = model.training
    model.eval()
    ranks = []
    n = len(rows)
    for i in range(0, n, batch_size):
        batch = {k: v.to(model.device) for k, v in rows[torch.arange(i, min(i + batch_size, n))].items()}
        scores = prepare_scores(model.score(batch), batch.get("history"))
        ranks.append(target_ranks(scores, batch["targets"]).cpu())
    model.train(was_training)
    t = rows.tensors
    history_len = (t["input_ids"] > 0).sum(1).numpy()  # within max_len
    return torch.cat(ranks), t["targets"].numpy(), history_len


def breakdown(
    model,
    datamodule,
    which: str = "test",
    by: str = "popularity",
    edges: Sequence[int] | None = None,
    ks: Sequence[int] = (10, 20),
) -> dict[str, dict[str, float]]:
    """``{bucket: {"users": n, "hr@10": ..., ...}}`` for ``by`` = popularity | length."""
    ranks, targets, history_len = ranks_and_rows(model, datamodule, which)
    if by == "popularity":
        edges = edges or POPULARITY_EDGES
        key = train_item_counts(datamodule)[targets]
    elif by == "length":
        edges = edges or LENGTH_EDGES
        key = history_len
    else:
        raise ValueError(f"by must be 'popularity' or 'length', got {by!r}")
    return bucket_metrics(ranks, key, edges, ks)


def bucket_metrics(
    ranks: torch.Tensor | np.ndarray,
    key: np.ndarray,
    edges: Sequence[int],
    ks: Sequence[int] = (10, 20),
) -> dict[str, dict[str, float]]:
    """``{bucket: {"users": n, metrics...}}`` of 0-based ranks grouped by ``key`` (e.g. from a ranks dump).

    Shared by ``breakdown`` (fresh scoring) and the drivers, which read ``<run>.ranks.npz``
    (``target_pop`` / ``history_len``) instead of scoring again.
    """
    ranks = torch.as_tensor(ranks)
    buckets = bucket_of(np.asarray(key), edges)
    out = {}
    for b, name in enumerate(bucket_names(edges)):
        sel = torch.from_numpy(buckets == b)
        if sel.any():
            acc = MetricAccumulator(tuple(ks))
            acc.update(ranks[sel])
            out[name] = {"users": int(sel.sum()), **acc.compute()}
        else:
            out[name] = {"users": 0}
    return out

"""Privacy: does a generator copy its training records, does a recommender reveal its training data?

* Distance to closest record (DCR): generated records vs training records, compared with the same
  distance for real held-out records. A generator that memorises sits much closer to the training
  set than unseen real data does (ratio << 1) and has a high copy rate.
* Loss-based membership inference on a recommender: the attacker calls a (user prefix, item) pair a
  training member when the model's loss on it is low; the AUC of that rule over true training
  targets vs held-out targets measures how much the model leaks (0.5 = nothing).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from generec.trust.generation_fidelity import _as_tensor, _pairwise


def closest_record_distance(queries: np.ndarray | Tensor, records: np.ndarray | Tensor) -> np.ndarray:
    """Euclidean distance of every query [M, d] to its nearest record [N, d]: [M]."""
    q, r = _as_tensor(queries), _as_tensor(records)
    return torch.cat([_pairwise(q[i : i + 2048], r).min(1).values for i in range(0, len(q), 2048)]).numpy()


def _multi_hot(seqs: Tensor, width: int) -> Tensor:
    """Padded item sequences [N, W] (0 = padding) -> sparse binary item sets [N, width]."""
    rows, cols = torch.nonzero(seqs > 0, as_tuple=True)
    idx = torch.stack([rows, seqs[rows, cols]])
    m = torch.sparse_coo_tensor(
        idx, torch.ones(idx.shape[1], dtype=torch.float64), (len(seqs), width), check_invariants=False
    )
    m = m.coalesce()
    return torch.sparse_coo_tensor(
        m.indices(), m.values().clamp(max=1), m.shape, check_invariants=False
    ).coalesce()


def closest_sequence_distance(queries: Tensor, records: Tensor, chunk: int = 1024) -> np.ndarray:
    """Jaccard distance of each query item set to its nearest record item set: [M].

    ``queries`` [M, W] and ``records`` [N, W'] are 0-padded item-id sequences; order is ignored.
    """
    width = int(max(queries.max().item(), records.max().item())) + 1
    rec = _multi_hot(records.long(), width)  # [N, I] sparse
    rec_size = torch.sparse.sum(rec, 1).to_dense()  # [N]
    out = []
    for i in range(0, len(queries), chunk):
        q = _multi_hot(queries[i : i + chunk].long(), width).to_dense()  # [c, I]
        inter = torch.sparse.mm(rec, q.T).T  # [c, N]
        union = q.sum(1, keepdim=True) + rec_size[None, :] - inter
        out.append((1 - inter / union.clamp(min=1)).min(1).values)
    return torch.cat(out).numpy()


def dcr_metrics(gen_dcr: np.ndarray, holdout_dcr: np.ndarray, eps: float = 1e-9) -> dict[str, float]:
    """``privacy/dcr_ratio`` (median generated DCR over median held-out DCR) and ``privacy/copy_rate``."""
    ref = float(np.median(holdout_dcr))
    return {
        "privacy/dcr_ratio": float(np.median(gen_dcr)) / ref if ref > 0 else float("nan"),
        "privacy/copy_rate": float(np.mean(gen_dcr <= eps)),
    }


def generator_privacy(
    generated: np.ndarray | Tensor,
    train: np.ndarray | Tensor,
    holdout: np.ndarray | Tensor,
    kind: str = "vectors",
) -> dict[str, float]:
    """DCR metrics of generated records against the training set, referenced to real held-out records.

    kind="vectors": rows are item (or sequence) embeddings, Euclidean distance;
    kind="sequences": rows are 0-padded item-id sequences, Jaccard distance of their item sets.
    """
    if kind == "vectors":
        dist = closest_record_distance
    elif kind == "sequences":
        dist = closest_sequence_distance
        generated, train, holdout = (torch.as_tensor(np.asarray(x)) for x in (generated, train, holdout))
    else:
        raise ValueError(f"kind must be 'vectors' or 'sequences', got {kind!r}")
    return dcr_metrics(dist(generated, train), dist(holdout, train))


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted 1/2 (Mann-Whitney U / (n_p n_n))."""
    positive, negative = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    scores = np.concatenate([positive, negative])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # mid-ranks for ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    mid = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(mid, counts)
    n_p, n_n = len(positive), len(negative)
    return float((ranks[:n_p].sum() - n_p * (n_p + 1) / 2) / (n_p * n_n))


def membership_inference(member_loss: np.ndarray, nonmember_loss: np.ndarray) -> dict[str, float]:
    """Loss-threshold attack: members should have lower loss. Returns AUC and advantage 2|AUC - 0.5|."""
    value = auc(-np.asarray(member_loss), -np.asarray(nonmember_loss))
    return {"privacy/mia_auc": value, "privacy/mia_advantage": 2 * abs(value - 0.5)}

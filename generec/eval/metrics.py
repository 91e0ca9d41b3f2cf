"""Ranking metrics from the rank of each held-out target among the whole catalogue.

Everything is vectorised over a batch of users and stays on the scores' device: a batch
contributes metric *sums*, so a whole evaluation needs one host sync at the end.
"""

from __future__ import annotations

import torch
from torch import Tensor

METRIC_NAMES = ("hr", "ndcg", "mrr", "recall")
DEFAULT_KS = (1, 5, 10, 20, 50)


def target_ranks(scores: Tensor, targets: Tensor) -> Tensor:
    """0-based rank of each target, ties counted against the target.

    scores: [B, I+1] (padding column already -inf); targets: [B] item ids.
    An item scoring exactly like the target is placed ahead of it, so a model that
    scores everything equally gets rank I-1 (near-zero metrics), not rank 0.
    """
    target_scores = scores.gather(1, targets.unsqueeze(1))  # [B, 1]
    # Column 0 (padding) is never counted; a -inf target (masked history) ties with every
    # other -inf item and so ranks last among real items. "- 1" removes the target itself.
    return (scores[:, 1:] >= target_scores).sum(dim=1) - 1


def rank_metric_sums(ranks: Tensor, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, Tensor]:
    """Per-metric sums over a batch of single-target ranks (leave-one-out).

    HR@K equals Recall@K with one target per user; both names are reported so records
    from multi-target protocols share keys.
    """
    ranks = ranks.to(torch.float64)
    out: dict[str, Tensor] = {}
    for k in ks:
        hit = ranks < k
        out[f"hr@{k}"] = hit.sum(dtype=torch.float64)
        out[f"recall@{k}"] = out[f"hr@{k}"]
        out[f"ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(ranks + 2.0), 0.0).sum()
        out[f"mrr@{k}"] = torch.where(hit, 1.0 / (ranks + 1.0), 0.0).sum()
    return out


class MetricAccumulator:
    """Sums metrics over batches on the device; ``compute`` reduces once.

    ``reduce_fn`` lets a distributed caller sum the [M + 1] vector across ranks.
    """

    def __init__(self, ks: tuple[int, ...] = DEFAULT_KS) -> None:
        self.ks = tuple(ks)
        self.names = [f"{m}@{k}" for k in self.ks for m in METRIC_NAMES]
        self.reset()

    def reset(self) -> None:
        self._sums: Tensor | None = None  # [M + 1], last slot = count

    def update(self, ranks: Tensor) -> None:
        sums = rank_metric_sums(ranks, self.ks)
        vec = torch.stack(
            [sums[n] for n in self.names] + [ranks.new_tensor(ranks.numel(), dtype=torch.float64)]
        )
        self._sums = vec if self._sums is None else self._sums + vec

    def compute(self, reduce_fn=None) -> dict[str, float]:
        if self._sums is None:
            return {}
        sums = self._sums if reduce_fn is None else reduce_fn(self._sums)
        values = (sums[:-1] / sums[-1].clamp(min=1)).tolist()  # the one host sync
        return dict(zip(self.names, values, strict=True))

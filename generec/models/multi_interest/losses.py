"""Training objectives for candidate matching: sampled softmax, REMI's IHN and routing regularisation.

Sampled softmax draws one set of negatives per batch (shared by every row), as ComiRec/REMI do: the
[B, n] logits are one matmul. IHN (interest-aware hard negatives, REMI) re-weights those negatives by
``w_j = exp(beta s_j) / mean_k exp(beta s_k)`` so that negatives close to the selected interest dominate
the partition sum; ``beta = 0`` gives every negative weight 1, i.e. plain sampled softmax.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

SAMPLERS = ("uniform", "log_uniform")


class SampledSoftmax(nn.Module):
    """Sampled softmax over ``num_negatives`` shared negatives drawn from items 1..num_items.

    ``sampler="log_uniform"`` draws item i with probability ``log((i+1)/i) / log(I+1)`` (Zipf over ids,
    as in REMI's code; meaningful when low ids are popular items). ``logq_correction`` subtracts
    ``log Q(item)`` from every logit (positive and negatives) so the sampled loss estimates the full
    softmax; under the uniform sampler it is a constant and changes nothing. Negatives equal to the
    row's positive ("accidental hits") are dropped from that row when ``remove_accidental_hits``.
    """

    def __init__(
        self,
        num_items: int,
        num_negatives: int = 1280,
        sampler: str = "uniform",
        logq_correction: bool = True,
        remove_accidental_hits: bool = True,
    ) -> None:
        super().__init__()
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        self.num_items, self.num_negatives, self.sampler = num_items, num_negatives, sampler
        self.logq_correction, self.remove_accidental_hits = logq_correction, remove_accidental_hits
        ids = torch.arange(num_items + 1, dtype=torch.float64)  # [I + 1]
        if sampler == "uniform":
            q = torch.full_like(ids, 1.0 / num_items)
        else:
            q = (torch.log1p(1.0 / ids.clamp(min=1))) / math.log(num_items + 1)
        q[0] = 0.0  # padding is never drawn
        self.register_buffer("sample_prob", q.float(), persistent=False)  # [I + 1]

    def sample(self, device: torch.device | None = None) -> Tensor:
        """``num_negatives`` item ids (with replacement) from the sampler: [n]."""
        if self.sampler == "uniform":
            return torch.randint(1, self.num_items + 1, (self.num_negatives,), device=device)
        # inverse CDF of the log-uniform law over 1..I: floor((I+1)^u) is i with prob log((i+1)/i)/log(I+1)
        u = torch.rand(self.num_negatives, device=device, dtype=torch.float64)
        ids = torch.floor(torch.exp(u * math.log(self.num_items + 1))).long()
        return ids.clamp(1, self.num_items)

    def logits(
        self, user: Tensor, positives: Tensor, item_table: Tensor, negatives: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Raw scores and corrected logits.

        user [B, d], positives [B], item_table [I + 1, d], negatives [n] -> (pos_score [B],
        neg_score [B, n], pos_logit [B], neg_logit [B, n]); neg_logit is -inf at accidental hits.
        """
        pos_score = (user * item_table[positives]).sum(-1)  # [B]
        neg_score = user @ item_table[negatives].T  # [B, n]
        pos_logit, neg_logit = pos_score, neg_score
        if self.logq_correction:
            log_q = self.sample_prob.clamp(min=1e-30).log()
            pos_logit = pos_logit - log_q[positives]
            neg_logit = neg_logit - log_q[negatives]
        if self.remove_accidental_hits:
            hit = positives[:, None] == negatives[None, :]  # [B, n]
            neg_logit = neg_logit.masked_fill(hit, float("-inf"))
        return pos_score, neg_score, pos_logit, neg_logit

    def negative_log_weights(self, neg_score: Tensor, neg_logit: Tensor) -> Tensor | None:
        """log w_j added to each negative logit; None = all weights 1 (plain sampled softmax)."""
        return None

    def forward(
        self, user: Tensor, positives: Tensor, item_table: Tensor, negatives: Tensor | None = None
    ) -> Tensor:
        """Mean over rows of ``-pos + log(exp(pos) + sum_j w_j exp(neg_j))``."""
        if negatives is None:
            negatives = self.sample(user.device)
        pos_score, neg_score, pos_logit, neg_logit = self.logits(user, positives, item_table, negatives)
        log_w = self.negative_log_weights(neg_score, neg_logit)
        if log_w is not None:
            neg_logit = neg_logit + log_w
        all_logits = torch.cat([pos_logit[:, None], neg_logit], dim=1)  # [B, 1 + n]
        return (torch.logsumexp(all_logits, dim=1) - pos_logit).mean()


class InterestAwareHardNegatives(SampledSoftmax):
    """REMI's IHN: importance weights ``w_j = exp(beta s_j) / mean_k exp(beta s_k)`` on the negatives.

    ``s_j`` is the raw score of negative j under the selected interest (before log-Q correction);
    the mean runs over that row's kept negatives (accidental hits excluded). The weights carry
    gradient, as in the REMI reference. ``beta = 0`` is exactly :class:`SampledSoftmax`.
    """

    def __init__(self, num_items: int, beta: float = 1.0, **kwargs) -> None:
        super().__init__(num_items, **kwargs)
        self.beta = float(beta)

    def negative_log_weights(self, neg_score: Tensor, neg_logit: Tensor) -> Tensor | None:
        if self.beta == 0.0:
            return None
        kept = torch.isfinite(neg_logit)  # [B, n]
        scaled = (self.beta * neg_score).masked_fill(~kept, float("-inf"))  # [B, n]
        n_kept = kept.sum(1, keepdim=True).clamp(min=1).to(scaled.dtype)  # [B, 1]
        # log w_j = beta s_j - log(mean_k exp(beta s_k)) = beta s_j - logsumexp_k(beta s_k) + log n
        return scaled - torch.logsumexp(scaled, dim=1, keepdim=True) + n_kept.log()


def build_sampled_loss(num_items: int, beta: float = 0.0, **kwargs) -> SampledSoftmax:
    """Plain sampled softmax for ``beta == 0``, IHN otherwise (same negatives, same logits)."""
    if beta == 0.0:
        return SampledSoftmax(num_items, **kwargs)
    return InterestAwareHardNegatives(num_items, beta=beta, **kwargs)


def routing_regularization(routing: Tensor, mask: Tensor, scale: float) -> Tensor:
    """REMI's RR: penalises peaked item-to-interest routing rows.

    routing [B, K, L] (each row a distribution over positions), mask [B, L] (True = real item).
    For each user and interest, ``v = sum_l (a_l - mean(a))^2 / scale`` over the real positions
    only (REMI's reference averages over padding too); the penalty is ``sum_{b,k} v^2``, summed over
    the batch as in the reference so that its lambda (100) keeps its meaning. A uniform row gives 0;
    a row collapsed onto one item gives the largest value.
    """
    m = mask[:, None, :].to(routing.dtype)  # [B, 1, L]
    n = m.sum(-1, keepdim=True).clamp(min=1)  # [B, 1, 1]
    mean = (routing * m).sum(-1, keepdim=True) / n  # [B, K, 1]
    v = (((routing - mean) * m) ** 2).sum(-1) / scale  # [B, K]
    return (v**2).sum()


def routing_max_weight(routing: Tensor, mask: Tensor) -> Tensor:
    """Routing-collapse statistic per user: mean over interests of the largest routing weight: [B].

    1.0 means every interest routes all its mass to a single item; 1/len means uniform routing.
    """
    return routing.masked_fill(~mask[:, None, :], 0.0).amax(-1).mean(-1)

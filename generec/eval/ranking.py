"""Turning a model's catalogue scores into ranks: padding and (optional) history masking."""

from __future__ import annotations

import torch
from torch import Tensor


def prepare_scores(scores: Tensor, history: Tensor | None = None) -> Tensor:
    """Excludes padding id 0 and, when ``history`` is given, the user's seen items.

    scores: [B, I+1]; history: [B, H] padded with 0. Works in place on a float copy.
    A target that is itself in the history gets -inf and therefore ranks last: masking
    never reveals which seen item is the answer.
    """
    scores = scores.float().clone()
    if history is not None:
        scores.scatter_(1, history, float("-inf"))
    scores[:, 0] = float("-inf")
    return scores


def topk_items(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k item ids and scores per row; ties broken toward the lower item id (deterministic)."""
    values, idx = torch.topk(scores, k=min(k, scores.shape[1] - 1), dim=1, sorted=True)
    return idx, values

"""Full-softmax cross-entropy over the catalogue without materialising [N, I] logits.

Plain ``F.cross_entropy(h @ E.T, y)`` keeps the whole logit matrix (and its gradient) alive:
N supervised positions x I items. ``chunked_softmax_cross_entropy`` streams over item chunks
twice (an online log-sum-exp forward, and a backward that recomputes each chunk's softmax), so
peak memory is N x chunk. Same value and gradients as the plain loss, up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _acc(t: Tensor) -> torch.dtype:
    """Accumulation dtype: at least float32 (bf16/fp16 inputs under autocast), else the input's."""
    return torch.promote_types(t.dtype, torch.float32)


class _ChunkedSoftmaxCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, items: Tensor, y: Tensor, chunk: int) -> Tensor:
        # h: [N, d]; items: [I, d]; y: [N] in 0..I-1
        n = h.shape[0]
        acc = _acc(h)
        lse = torch.full((n,), float("-inf"), device=h.device, dtype=acc)
        for start in range(0, items.shape[0], chunk):
            logits = (h @ items[start : start + chunk].T).to(acc)  # [N, c]
            lse = torch.logaddexp(lse, torch.logsumexp(logits, dim=1))
        target_logit = (h * items[y]).sum(1).to(acc)  # [N]
        ctx.save_for_backward(h, items, y, lse)
        ctx.chunk = chunk
        return (lse - target_logit).mean()

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        h, items, y, lse = ctx.saved_tensors
        acc = _acc(h)
        scale = grad_out.to(acc) / h.shape[0]
        hf = h.to(acc)
        grad_h = torch.zeros_like(h, dtype=acc)
        grad_items = torch.zeros_like(items, dtype=acc)
        for start in range(0, items.shape[0], ctx.chunk):
            block = items[start : start + ctx.chunk]
            probs = torch.exp((h @ block.T).to(acc) - lse[:, None]) * scale  # [N, c] softmax * dL
            grad_h += probs @ block.to(acc)
            grad_items[start : start + ctx.chunk] += probs.T @ hf
        # minus the one-hot target term
        grad_h -= items[y].to(acc) * scale
        grad_items.index_add_(0, y, -hf * scale)
        return grad_h.to(h.dtype), grad_items.to(items.dtype), None, None


def chunked_softmax_cross_entropy(h: Tensor, items: Tensor, y: Tensor, chunk: int = 8192) -> Tensor:
    """Mean CE of ``softmax(h @ items.T)`` against ``y``; memory O(N x chunk) instead of O(N x I)."""
    if chunk <= 0 or chunk >= items.shape[0]:
        return F.cross_entropy(h @ items.T, y)
    return _ChunkedSoftmaxCE.apply(h, items, y, chunk)

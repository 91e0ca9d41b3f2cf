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


def sampled_softmax_cross_entropy(
    h: Tensor, items: Tensor, y: Tensor, num_negatives: int, generator: torch.Generator | None = None
) -> Tensor:
    """CE of the target against ``num_negatives`` uniformly drawn items shared by the whole batch.

    For catalogues where even a chunked full softmax is too slow: cost O(N x S) instead of
    O(N x I). Sharing the negatives turns the scoring into one [N, d] x [d, S] matmul. A negative
    that happens to be the row's own target is masked out (an "accidental hit"); with uniform
    sampling the log-Q correction is the same constant for every class and cancels.
    ``items``: [I, d] (padding excluded), ``y``: [N] in 0..I-1.
    """
    neg = torch.randint(0, items.shape[0], (num_negatives,), device=items.device, generator=generator)  # [S]
    pos_logit = (h * items[y]).sum(1, keepdim=True)  # [N, 1]
    neg_logit = h @ items[neg].T  # [N, S]
    neg_logit = neg_logit.masked_fill(neg[None, :] == y[:, None], float("-inf"))
    logits = torch.cat([pos_logit, neg_logit], 1).to(_acc(h))
    return F.cross_entropy(logits, torch.zeros_like(y))


def batch_loss_scale(batch: dict) -> float:
    """The datamodule's per-batch weight (length bucketing), 1.0 when batches are not bucketed.

    A per-batch *mean* loss weighs a target in a batch of short sequences far more than one in a batch
    of long sequences once batches are grouped by length; scaling by (batch's targets / mean targets per
    batch) makes an epoch's gradient the same per-target average as with unbucketed batches.
    """
    return float(batch.get("loss_scale", 1.0))


def next_item_loss(
    h: Tensor, y: Tensor, items: Tensor, loss: str, num_negatives: int = 1, ce_chunk_size: int = 0
) -> Tensor:
    """The next-item loss every sequential model shares, at already selected positions.

    ``h``: [N, d] hidden states at supervised positions, ``y``: [N] target ids (1..I),
    ``items``: the full output table [I + 1, d] with padding at row 0.
    """
    if loss == "ce":  # padding is never a class
        return chunked_softmax_cross_entropy(h, items[1:], y - 1, ce_chunk_size)
    if loss == "ce_with_padding":  # RecBole's CE: row 0 stays in the softmax as a never-correct class
        return chunked_softmax_cross_entropy(h, items, y, ce_chunk_size)
    if loss == "sampled_ce":
        return sampled_softmax_cross_entropy(h, items[1:], y - 1, num_negatives)
    if loss != "bce":
        raise ValueError(f"unknown loss {loss!r}: expected ce, ce_with_padding, bce or sampled_ce")
    neg = torch.randint(1, items.shape[0], (y.shape[0], num_negatives), device=y.device)  # [N, k]
    pos_logit = (h * items[y]).sum(-1, keepdim=True)  # [N, 1]
    neg_logit = torch.einsum("nd,nkd->nk", h, items[neg])  # [N, k]
    logits = torch.cat([pos_logit, neg_logit], 1)
    labels = torch.zeros_like(logits)
    labels[:, 0] = 1.0
    return F.binary_cross_entropy_with_logits(logits, labels)

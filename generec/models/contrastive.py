"""Shared pieces of the contrastive SASRec variants (CL4SRec, CoSeRec, ICLRec, DuoRec).

``info_nce`` is the NT-Xent loss all four papers use: for N pairs ``(z1[i], z2[i])`` each of the 2N
vectors must pick its partner among the other 2N - 1 (in-batch negatives). The views are built
inside the model from ``batch["input_ids"]`` with ``generec.data.augment`` operators, so the
datamodule stays unaware of contrastive learning.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from generec.data.augment import Augmentation, fit_width, lengths_of
from generec.models.losses import next_item_loss as _next_item_loss


def similarity(a: Tensor, b: Tensor, kind: str = "dot") -> Tensor:
    """Pairwise similarity [N, d] x [M, d] -> [N, M]: ``dot`` (CL4SRec/DuoRec) or ``cos``."""
    if kind == "cos":
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    elif kind != "dot":
        raise ValueError(f"similarity must be 'dot' or 'cos', got {kind!r}")
    return a @ b.T


def info_nce(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 1.0,
    kind: str = "dot",
    same: Tensor | None = None,
) -> Tensor:
    """NT-Xent over 2N views: z1, z2 [N, d]; ``same`` [N, N] True where i, j must not be negatives.

    ``same`` (e.g. "same target item" for DuoRec) removes false negatives; the positive pair and
    each vector's own similarity are handled here regardless of ``same``.
    """
    N = z1.shape[0]
    z = torch.cat([z1, z2])  # [2N, d]
    logits = similarity(z, z, kind) / temperature  # [2N, 2N]
    partner = torch.cat([torch.arange(N, 2 * N), torch.arange(N)]).to(z.device)  # [2N]
    blocked = torch.eye(2 * N, dtype=torch.bool, device=z.device)
    if same is not None:
        blocked = blocked | same.repeat(2, 2)
        blocked[torch.arange(2 * N, device=z.device), partner] = False
    logits = logits.masked_fill(blocked, float("-inf"))
    return F.cross_entropy(logits, partner)


def next_item_loss(
    model,
    hidden: Tensor | Sequence[Tensor],
    targets: Tensor | Sequence[Tensor],
    scale: float | Tensor = 1.0,
) -> Tensor:
    """``model``'s recommendation loss (CE, chunked CE or BCE) from already computed hidden states [B, L, d].

    Same as ``SeqRecModule.compute_loss`` but reuses the forward pass the contrastive terms also need;
    ``hidden`` / ``targets`` may be lists, one per part of a sub-batched batch (one loss over all their
    targets). ``scale`` is the batch's ``loss_scale`` (length bucketing). The contrastive terms average
    over sequences, which bucketing does not reweight, so they are not scaled.
    """
    if isinstance(hidden, Tensor):
        hidden, targets = [hidden], [targets]
    h = torch.cat([states[t > 0] for states, t in zip(hidden, targets, strict=True)])  # [N, d]
    y = torch.cat([t[t > 0] for t in targets])  # [N]
    return (
        _next_item_loss(
            h,
            y,
            model.item_embeddings(),
            model.loss_type,
            model.num_negatives,
            getattr(model, "ce_chunk_size", 0),
        )
        * scale
    )


def make_view(op: Augmentation, input_ids: Tensor, max_len: int) -> Tensor:
    """An augmented copy of left-padded ``input_ids`` [B, L] -> [B, L'] with L' <= max_len."""
    seqs, lengths = op(input_ids, lengths_of(input_ids), None)
    width = min(max(int(lengths.max()) if len(lengths) else 1, 1), max_len)
    return fit_width(seqs, lengths, width)[0]


def same_width(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Left-pad two id batches to a common width (needed before concatenating them)."""
    width = max(a.shape[1], b.shape[1])
    return F.pad(a, (width - a.shape[1], 0)), F.pad(b, (width - b.shape[1], 0))


def mean_state(hidden: Tensor, input_ids: Tensor) -> Tensor:
    """Mean hidden state over the real positions: [B, L, d] -> [B, d] (independent of padding width)."""
    real = (
        torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
        >= (input_ids.shape[1] - lengths_of(input_ids))[:, None]
    )  # [B, L]
    w = real.float().unsqueeze(-1)  # [B, L, 1]
    return (hidden * w).sum(1) / w.sum(1).clamp(min=1.0)

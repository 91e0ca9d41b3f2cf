"""BERT4Rec (Sun et al., CIKM 2019): bidirectional transformer trained by masked-item prediction.

Training masks a fraction of the items of each window with a [MASK] token (id ``num_items + 1``)
and predicts them with full-softmax cross-entropy over the real items. At inference a [MASK]
is appended after the history: with left padding the window shifts left by one and [MASK]
takes the last column, whose hidden state scores the catalogue.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generec.eval.metrics import DEFAULT_KS
from generec.models.layers import causal_padding_mask
from generec.models.losses import batch_loss_scale
from generec.models.sasrec import SASRec


def masked_item_ce(hidden: Tensor, labels: Tensor, items: Tensor, bias: Tensor | None = None) -> Tensor:
    """CE over real items at positions with ``labels > 0``; hidden [B, L, d], items [I+1, d], bias [I+1]."""
    supervised = labels > 0
    logits = hidden[supervised] @ items[1:].T  # [N, I]
    if bias is not None:
        logits = logits + bias[1:]
    return F.cross_entropy(logits, labels[supervised] - 1)


class BERT4Rec(SASRec):
    """SASRec's embeddings and blocks with a bidirectional mask, a [MASK] token and an output head."""

    causal = False

    def __init__(
        self,
        num_items: int,
        max_len: int = 50,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        inner_size: int = 256,
        dropout: float = 0.2,
        activation: str = "gelu",
        init_std: float = 0.02,
        mask_ratio: float = 0.2,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        eval_ks: Sequence[int] = DEFAULT_KS,
        output_bias: bool = True,
        ft_ratio: float = 0.0,
    ) -> None:
        super().__init__(
            num_items, max_len, hidden_size, num_layers, num_heads, inner_size, dropout, activation,
            init_std, "ce", 1, lr, weight_decay, eval_ks,
        )  # fmt: skip
        self.save_hyperparameters()
        if not 0.0 < mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1], got {mask_ratio}")
        self.mask_ratio = mask_ratio
        if not 0.0 <= ft_ratio <= 1.0:
            raise ValueError(f"ft_ratio must be in [0, 1], got {ft_ratio}")
        # RecBole's "fine-tuning samples": this fraction of batches masks only each row's last item,
        # the inference task ([MASK] after the history), instead of random items.
        self.ft_ratio = ft_ratio
        self.mask_id = num_items + 1
        self.item_emb = nn.Embedding(num_items + 2, hidden_size, padding_idx=0)  # + [MASK]
        # Output transform before the tied item table (as in BERT's MLM head).
        self.head = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.LayerNorm(hidden_size, eps=1e-12)
        )
        # A learned per-item bias on the output logits, as in BERT's masked-LM head, BERT4Rec's own code and
        # RecBole's: a popularity prior the tied item table would otherwise have to encode in its vectors.
        self.output_bias = nn.Parameter(torch.zeros(num_items + 1)) if output_bias else None
        self.apply(self._init_weights)

    # ---------------------------------------------------------------- inputs
    @staticmethod
    def training_window(batch: dict[str, Tensor]) -> Tensor:
        """The whole training window [B, L]: the inputs shifted left plus the last target.

        Works for both protocols: ``targets[:, -1]`` is the item after ``input_ids[:, -1]``.
        """
        return torch.cat([batch["input_ids"][:, 1:], batch["targets"][:, -1:]], dim=1)

    def mask_items(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Masks each real item with probability ``mask_ratio`` (at least the last one per row), or, in a
        ``ft_ratio`` fraction of batches, only the last item of every row.

        Returns (masked inputs [B, L], labels [B, L] with 0 where nothing is predicted).
        """
        real = ids > 0
        if self.ft_ratio > 0 and float(torch.rand(())) < self.ft_ratio:  # CPU draw: no device sync
            masked = torch.zeros_like(real)
            masked[:, -1] = real[:, -1]
            return ids.masked_fill(masked, self.mask_id), ids * masked
        masked = real & (torch.rand(ids.shape, device=ids.device) < self.mask_ratio)
        none = ~masked.any(dim=1) & real[:, -1]
        masked[:, -1] |= none  # rows with nothing masked predict their last item
        return ids.masked_fill(masked, self.mask_id), ids * masked

    def with_mask_last(self, input_ids: Tensor) -> Tensor:
        """History window -> the same window shifted left by one with [MASK] in the last column."""
        mask_col = torch.full_like(input_ids[:, :1], self.mask_id)
        return torch.cat([input_ids[:, 1:], mask_col], dim=1)

    # ---------------------------------------------------------------- the seam
    def sequence_hidden(self, input_ids: Tensor) -> Tensor:
        L = input_ids.shape[1]
        if L > self.max_len:
            raise ValueError(f"input length {L} exceeds model.max_len={self.max_len}")
        positions = torch.arange(self.max_len - L, self.max_len, device=input_ids.device)
        x = self.emb_dropout(self.emb_norm(self.item_emb(input_ids) + self.pos_emb(positions)))  # [B, L, d]
        mask = causal_padding_mask(input_ids, causal=False)  # [B, 1, L, L]
        for block in self.blocks:
            x = block(x, mask)
        return self.head(x)

    def item_embeddings(self) -> Tensor:
        return self.item_emb.weight[: self.num_items + 1]  # [MASK] is never a candidate

    def encode(self, batch: dict[str, Tensor]) -> Tensor:
        return self.sequence_hidden(self.with_mask_last(batch["input_ids"]))[:, -1]

    def score(self, batch: dict[str, Tensor]) -> Tensor:
        """The seam's dot-product scores plus the per-item output bias (float32, like the scores)."""
        scores = super().score(batch)
        return scores if self.output_bias is None else scores + self.output_bias.float()

    # ---------------------------------------------------------------- training
    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        inputs, labels = self.mask_items(self.training_window(batch))
        loss = masked_item_ce(self.sequence_hidden(inputs), labels, self.item_embeddings(), self.output_bias)
        return loss * batch_loss_scale(batch)  # masks per batch scale with its real items, as targets do

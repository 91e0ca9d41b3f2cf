"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item sequence."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from generec.eval.metrics import DEFAULT_KS
from generec.models.base import SeqRecModule
from generec.models.layers import Dropout, TransformerBlock, causal_padding_mask

POSITION_MODES = ("right", "left")


def sequence_positions(input_ids: Tensor, max_len: int, mode: str) -> Tensor:
    """Position ids for left-padded rows; both modes ignore how much padding a row carries.

    ``right`` (the original SASRec code): counted back from the most recent item, which always sits
    at ``max_len - 1``. Under the all-positions protocol the position of an early item then depends
    on how many items follow it in the training row, which the causal model never sees.
    ``left`` (RecBole): counted from the row's first real item, so position t means "t items
    before", the same in training and at inference. Returns [L] (right) or [B, L] (left).
    """
    L = input_ids.shape[1]
    if mode == "right":
        return torch.arange(max_len - L, max_len, device=input_ids.device)
    return ((input_ids > 0).long().cumsum(1) - 1).clamp(min=0)  # padding in front gets 0 (masked)


class SASRec(SeqRecModule):
    """Item + learned position embeddings -> causal transformer; input and output tables are shared."""

    accepts_trimmed_batches = True

    def __init__(
        self,
        num_items: int,
        max_len: int = 50,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        inner_size: int = 256,
        dropout: float = 0.5,
        activation: str = "gelu",
        init_std: float = 0.02,
        loss: str = "ce",
        num_negatives: int = 1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        eval_ks: Sequence[int] = DEFAULT_KS,
        ce_chunk_size: int = 0,
        position_mode: str = "left",
    ) -> None:
        super().__init__(
            num_items, max_len, loss, num_negatives, lr, weight_decay, eval_ks, ce_chunk_size=ce_chunk_size
        )
        if position_mode not in POSITION_MODES:
            raise ValueError(f"model.position_mode must be one of {POSITION_MODES}, got {position_mode!r}")
        self.save_hyperparameters()
        self.position_mode = position_mode
        self.item_emb = nn.Embedding(num_items + 1, hidden_size, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, hidden_size)
        self.emb_norm = nn.LayerNorm(hidden_size, eps=1e-12)
        self.emb_dropout = Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden_size, num_heads, inner_size, dropout, activation)
            for _ in range(num_layers)
        )
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.hparams.init_std
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def sequence_hidden(self, input_ids: Tensor) -> Tensor:
        return self._encode(input_ids, last_only=False)

    def last_hidden(self, input_ids: Tensor) -> Tensor:
        """State after the newest item [B, d]; the last block computes that one position only."""
        if type(self).sequence_hidden is not SASRec.sequence_hidden:  # a subclass changed the encoder
            return super().last_hidden(input_ids)
        return self._encode(input_ids, last_only=True)[:, -1]

    def _encode(self, input_ids: Tensor, last_only: bool) -> Tensor:
        L = input_ids.shape[1]
        if L > self.max_len:
            raise ValueError(f"input length {L} exceeds model.max_len={self.max_len}")
        positions = sequence_positions(input_ids, self.max_len, self.position_mode)
        x = self.emb_dropout(self.emb_norm(self.item_emb(input_ids) + self.pos_emb(positions)))  # [B, L, d]
        mask = causal_padding_mask(input_ids)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, last_only=last_only and i == len(self.blocks) - 1)
        return x

    def item_embeddings(self) -> Tensor:
        return self.item_emb.weight

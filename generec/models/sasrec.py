"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item sequence."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from generec.eval.metrics import DEFAULT_KS
from generec.models.base import SeqRecModule
from generec.models.layers import Dropout, TransformerBlock, causal_padding_mask


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
    ) -> None:
        super().__init__(
            num_items, max_len, loss, num_negatives, lr, weight_decay, eval_ks, ce_chunk_size=ce_chunk_size
        )
        self.save_hyperparameters()
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
        L = input_ids.shape[1]
        if L > self.max_len:
            raise ValueError(f"input length {L} exceeds model.max_len={self.max_len}")
        # Left padding: the most recent item always sits at position max_len - 1.
        positions = torch.arange(self.max_len - L, self.max_len, device=input_ids.device)
        x = self.emb_dropout(self.emb_norm(self.item_emb(input_ids) + self.pos_emb(positions)))  # [B, L, d]
        mask = causal_padding_mask(input_ids)
        for block in self.blocks:
            x = block(x, mask)
        return x

    def item_embeddings(self) -> Tensor:
        return self.item_emb.weight

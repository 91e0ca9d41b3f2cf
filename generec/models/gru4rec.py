"""GRU4Rec (Hidasi et al., ICLR 2016; the full-softmax variant of RecBole): a GRU over the item sequence."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from generec.eval.metrics import DEFAULT_KS
from generec.models.base import SeqRecModule


def left_to_right_padding(ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Moves each row's real items to the front: returns (right-padded [B, L], lengths [B], gather index).

    ``index`` maps right-padded column c to the left-padded column it came from, so outputs can be
    moved back with the same index.
    """
    B, L = ids.shape
    lengths = (ids > 0).sum(dim=1)  # [B]
    index = (torch.arange(L, device=ids.device)[None, :] + (L - lengths)[:, None]) % L  # [B, L]
    return ids.gather(1, index), lengths, index


class GRU4Rec(SeqRecModule):
    """Embedding -> dropout -> GRU -> linear to the item space; padding only ever follows real items."""

    def __init__(
        self,
        num_items: int,
        max_len: int = 50,
        embedding_size: int = 64,
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.3,
        init_std: float = 0.02,
        loss: str = "ce",
        num_negatives: int = 1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        eval_ks: Sequence[int] = DEFAULT_KS,
    ) -> None:
        super().__init__(num_items, max_len, loss, num_negatives, lr, weight_decay, eval_ks)
        self.save_hyperparameters()
        self.item_emb = nn.Embedding(num_items + 1, embedding_size, padding_idx=0)
        self.emb_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(embedding_size, hidden_size, num_layers=num_layers, batch_first=True, bias=False)
        self.proj = nn.Linear(hidden_size, embedding_size)
        nn.init.normal_(self.item_emb.weight, std=init_std)
        for name, p in self.gru.named_parameters():
            (nn.init.xavier_uniform_ if "weight_ih" in name else nn.init.orthogonal_)(p)

    def sequence_hidden(self, input_ids: Tensor) -> Tensor:
        B, L = input_ids.shape
        right, _, index = left_to_right_padding(input_ids)
        x = self.emb_dropout(self.item_emb(right))  # [B, L, e]
        # A plain GRU over the right-padded batch: padding only *follows* the real items, so the outputs
        # at real positions are exactly those of a packed run, without packing's sort and per-step
        # batches (2.6x slower than RecBole's plain GRU on the CPU, docs/benchmarks.md). Outputs at
        # padding positions are zeroed below.
        out, _ = self.gru(x)  # [B, L, h], right-padded
        h = self.proj(out)  # [B, L, e]
        # Back to left padding: left-padded column index[b, c] holds right-padded column c.
        back = torch.empty_like(h)
        back.scatter_(1, index[..., None].expand_as(h), h)
        return back.masked_fill((input_ids == 0)[..., None], 0.0)

    def item_embeddings(self) -> Tensor:
        return self.item_emb.weight

"""Transformer blocks shared by the attention-based recommenders."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Dropout(nn.Dropout):
    """nn.Dropout with a faster CPU path.

    PyTorch's CPU dropout draws a Bernoulli per element through a slow generic kernel;
    comparing ``rand_like`` with p is about 5x faster and samples the same distribution.
    CUDA keeps the fused kernel.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0 or x.is_cuda:
            return super().forward(x)
        keep = torch.rand_like(x) >= self.p
        return x * keep / (1.0 - self.p)


def causal_padding_mask(input_ids: Tensor, causal: bool = True) -> Tensor:
    """Boolean attention mask [B, 1, L, L]: True where query i may attend key j.

    Keys that are padding are hidden; the diagonal is always open so a padding query
    never has an all-masked row (which would give NaN in softmax). Outputs at padding
    positions are ignored by the losses and readouts.
    """
    B, L = input_ids.shape
    real = input_ids > 0  # [B, L]
    eye = torch.eye(L, dtype=torch.bool, device=input_ids.device)
    allowed = real[:, None, :].expand(B, L, L)
    if causal:
        allowed = allowed & torch.ones(L, L, dtype=torch.bool, device=input_ids.device).tril()
    return (allowed | eye).unsqueeze(1)


class MultiHeadSelfAttention(nn.Module):
    """Self-attention through ``scaled_dot_product_attention`` (fused kernels when available)."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.attn_dropout = dropout
        self.out_dropout = Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor, last_only: bool = False) -> Tensor:
        """[B, L, d] -> [B, L, d]; with ``last_only`` only the last position queries: [B, 1, d]."""
        B, L, D = x.shape
        if last_only:  # keys/values from every position, one query row: the readout needs no more
            heads = (self.heads, D // self.heads)
            if type(self.qkv) is nn.Linear:  # project the query of the last position only
                w, b = self.qkv.weight, self.qkv.bias
                q = F.linear(x[:, -1:], w[:D], b[:D]).view(B, 1, *heads).transpose(1, 2)
                k, v = F.linear(x, w[D:], b[D:]).view(B, L, 2, *heads).permute(2, 0, 3, 1, 4)
            else:  # a replaced projection (e.g. a quantized copy for the robustness audit): use it whole
                qkv = self.qkv(x).view(B, L, 3, *heads).permute(2, 0, 3, 1, 4)  # [3, B, h, L, d_h]
                q, k, v = qkv[0][:, :, -1:], qkv[1], qkv[2]
            mask = mask[:, :, -1:]
        else:
            q, k, v = (
                self.qkv(x).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
            )  # [B, h, L, d_h]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(B, q.shape[2], D)
        return self.out_dropout(self.out(y))


class FeedForward(nn.Module):
    """Position-wise FFN with one dropout, on its output (RecBole's and BERT's layout).

    The original SASRec code also drops the inner activations; RecBole, whose defaults the quality
    targets use, does not. ``inner_dropout=True`` restores the second dropout.
    """

    def __init__(
        self, hidden: int, inner: int, dropout: float, activation: str = "gelu", inner_dropout: bool = False
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, inner)
        self.fc2 = nn.Linear(inner, hidden)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.dropout = Dropout(dropout)
        self.inner_dropout = Dropout(dropout) if inner_dropout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(self.inner_dropout(self.act(self.fc1(x)))))


class TransformerBlock(nn.Module):
    """Post-norm block (residual, then LayerNorm), as in SASRec/RecBole's Transformer layer."""

    def __init__(
        self,
        hidden: int,
        heads: int,
        inner: int,
        dropout: float,
        activation: str = "gelu",
        layer_norm_eps: float = 1e-12,
    ) -> None:
        super().__init__()
        self.attn = MultiHeadSelfAttention(hidden, heads, dropout)
        self.norm1 = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.ffn = FeedForward(hidden, inner, dropout, activation)
        self.norm2 = nn.LayerNorm(hidden, eps=layer_norm_eps)

    def forward(self, x: Tensor, mask: Tensor, last_only: bool = False) -> Tensor:
        """[B, L, d] -> [B, L, d], or [B, 1, d] for the last position alone (``last_only``)."""
        y = self.attn(x, mask, last_only)
        x = self.norm1((x[:, -1:] if last_only else x) + y)
        return self.norm2(x + self.ffn(x))

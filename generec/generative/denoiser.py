"""A conditional noise predictor over item vectors (the AI creator's network).

Vectors are small (a recommender's item embedding, d ~ 64, or a 384-d text embedding), so a
residual MLP with FiLM conditioning is enough: the condition (timestep + user state + instruction)
scales and shifts every block. Each condition has a learned "null" embedding that replaces it when
it is dropped, which is what classifier-free guidance needs at sampling time.
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import get_timestep_embedding
from torch import Tensor, nn


class FiLMBlock(nn.Module):
    """h + MLP(LN(h) * (1 + scale(c)) + shift(c))."""

    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.film = nn.Linear(hidden, 2 * hidden)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Dropout(dropout), nn.Linear(2 * hidden, hidden)
        )
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        scale, shift = self.film(c).chunk(2, dim=-1)  # [B, H] each
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


class EmbeddingDenoiser(nn.Module):
    """eps(x_t, t | user state, instruction): [B, d] -> [B, d]."""

    def __init__(
        self,
        dim: int,
        state_dim: int,
        text_dim: int,
        hidden: int = 256,
        layers: int = 3,
        time_dim: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim, self.state_dim, self.text_dim, self.time_dim = dim, state_dim, text_dim, time_dim
        self.in_proj = nn.Linear(dim, hidden)
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.state_proj = nn.Sequential(nn.LayerNorm(state_dim), nn.Linear(state_dim, hidden))
        self.text_proj = nn.Linear(text_dim, hidden)
        self.null_state = nn.Parameter(torch.zeros(hidden))
        self.null_text = nn.Parameter(torch.zeros(hidden))
        self.blocks = nn.ModuleList(FiLMBlock(hidden, dropout) for _ in range(layers))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, dim))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        state: Tensor,
        text: Tensor,
        keep_state: Tensor,
        keep_text: Tensor,
    ) -> Tensor:
        """x [B, d], t [B] int, state [B, ds], text [B, e], keep_* [B] bool (False = condition dropped)."""
        temb = self.time_mlp(get_timestep_embedding(t, self.time_dim))  # [B, H]
        s = torch.where(keep_state[:, None], self.state_proj(state), self.null_state)  # [B, H]
        e = torch.where(keep_text[:, None], self.text_proj(text), self.null_text)  # [B, H]
        c = temb + s + e
        h = self.in_proj(x)  # [B, H]
        for block in self.blocks:
            h = block(h, c)
        return self.out(h)

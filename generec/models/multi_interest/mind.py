"""MIND (Li et al., CIKM 2019) as used by ComiRec/REMI: behaviour-to-interest (B2I) dynamic routing.

One bilinear map shared by all interests; the routing logits start from Gaussian noise (the only
thing that tells the K capsules apart), and a ReLU layer follows the capsules. MIND's dynamic number
of interests and its label-aware attention are not used (REMI's hard readout replaces the latter).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from generec.eval.metrics import DEFAULT_KS
from generec.models.multi_interest.base import MultiInterestModule
from generec.models.multi_interest.comirec import (
    check_routing_softmax,
    dynamic_routing,
    routing_is_live,
)


class MIND(MultiInterestModule):
    """Shared-map B2I routing; see the module docstring."""

    def __init__(
        self,
        num_items: int,
        max_len: int = 50,
        hidden_size: int = 64,
        num_interests: int = 4,
        routing_iterations: int = 3,
        num_negatives: int = 1280,
        sampler: str = "uniform",
        logq_correction: bool = True,
        remove_accidental_hits: bool = True,
        ihn_beta: float = 0.0,
        rr_lambda: float = 0.0,
        training_cut: str = "random",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        eval_ks: Sequence[int] = DEFAULT_KS,
        routing_gradient: str = "auto",
        routing_softmax: str = "positions",
    ) -> None:
        super().__init__(
            num_items, max_len, hidden_size, num_interests, num_negatives, sampler, logq_correction,
            remove_accidental_hits, ihn_beta, rr_lambda, training_cut, lr, weight_decay, eval_ks,
        )  # fmt: skip
        self.save_hyperparameters()
        self.routing_iterations = routing_iterations
        self.live_routing = routing_is_live(routing_gradient, rr_lambda)
        self.routing_softmax = check_routing_softmax(routing_softmax)
        self.bilinear = nn.Linear(hidden_size, hidden_size, bias=False)
        self.out = nn.Sequential(nn.Linear(hidden_size, hidden_size, bias=False), nn.ReLU())
        # The shared map makes the K interests identical unless the routing logits start apart, so MIND
        # starts them from Gaussian noise. Training redraws it every step; evaluation uses this fixed
        # draw (saved with the weights), so scores, rankings and metrics are reproducible.
        self.register_buffer("eval_routing_init", torch.randn(num_interests, max_len))

    def interests(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        self.check_length(input_ids)
        B, L = input_ids.shape
        mask = input_ids > 0  # [B, L]
        u = self.bilinear(self.item_emb(input_ids))  # [B, L, d]
        u_hat = u[:, None].expand(B, self.num_interests, L, self.hidden_size)  # [B, K, L, d]
        if self.training:
            init = torch.randn(B, self.num_interests, L, device=u.device, dtype=u.dtype)
        else:  # the last L columns: left padding, so the newest item always meets the same logit
            init = self.eval_routing_init[:, -L:].to(u.dtype).expand(B, -1, -1)
        v, routing = dynamic_routing(
            u_hat, mask, init, self.routing_iterations, self.live_routing, self.routing_softmax
        )
        return self.out(v), routing

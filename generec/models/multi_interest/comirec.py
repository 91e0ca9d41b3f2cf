"""ComiRec (Cen et al., KDD 2020): self-attentive (SA) and dynamic-routing (DR) multi-interest encoders.

Both map a user's item history to K interest vectors; the routing matrix (how much each history item
feeds each interest) is returned too, for REMI's routing regularisation and the collapse statistic.
Routing weights never reach padding. SA's rows are softmaxes over the real positions; DR and MIND
take theirs over positions by default (the PyTorch ports, REMI's included) or, with
``routing_softmax="interests"``, over the K interests for each item, as ComiRec's TensorFlow code does
(``tf.nn.softmax(capsule_weight, axis=1)`` on a [B, K, L] tensor): the capsule-network coupling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from generec.eval.metrics import DEFAULT_KS
from generec.models.multi_interest.base import MultiInterestModule

_MASKED = -1e9  # finite, so rows without any real item give zeros (after the mask), never NaN


def masked_softmax(logits: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last axis restricted to ``mask``: logits [B, K, L], mask [B, L] -> [B, K, L]."""
    m = mask[:, None, :]
    return torch.softmax(logits.masked_fill(~m, _MASKED), dim=-1) * m


def squash(s: Tensor) -> Tensor:
    """Capsule non-linearity ``|s|^2 / (1 + |s|^2) * s / |s|`` over the last axis."""
    norm2 = (s * s).sum(-1, keepdim=True)
    return norm2 / (1.0 + norm2) * s / torch.sqrt(norm2 + 1e-9)


ROUTING_GRADIENTS = ("auto", "detached", "live")
ROUTING_SOFTMAXES = ("positions", "interests")


def check_routing_softmax(routing_softmax: str) -> str:
    if routing_softmax not in ROUTING_SOFTMAXES:
        raise ValueError(f"model.routing_softmax must be one of {ROUTING_SOFTMAXES}, got {routing_softmax!r}")
    return routing_softmax


def coupling(logits: Tensor, mask: Tensor, over: str = "positions") -> Tensor:
    """Coupling coefficients [B, K, L] from routing logits, zero on padding.

    ``positions``: each interest's row is a distribution over the real items. ``interests``: each real
    item's column is a distribution over the K interests (dynamic routing as in capsule networks).
    """
    if over == "positions":
        return masked_softmax(logits, mask)
    return torch.softmax(logits, dim=1) * mask[:, None, :]


def routing_is_live(routing_gradient: str, rr_lambda: float) -> bool:
    """Whether the routing refinement keeps its graph; RR needs it (see ``dynamic_routing``).

    ``detached`` (ComiRec's code): the routing weights carry no gradient, so the RR penalty on them
    is a constant and would silently do nothing; that combination is refused. ``auto``: live exactly
    when RR is on.
    """
    if routing_gradient not in ROUTING_GRADIENTS:
        raise ValueError(
            f"model.routing_gradient must be one of {ROUTING_GRADIENTS}, got {routing_gradient!r}"
        )
    if routing_gradient == "detached" and rr_lambda > 0:
        raise ValueError(
            f"model.rr_lambda={rr_lambda} has no effect with model.routing_gradient=detached: the routing "
            "weights are computed from a detached copy and carry no gradient; use routing_gradient=live or auto"
        )
    return routing_gradient == "live" or (routing_gradient == "auto" and rr_lambda > 0)


def dynamic_routing(
    u_hat: Tensor,
    mask: Tensor,
    init_logits: Tensor,
    iterations: int = 3,
    live: bool = False,
    over: str = "positions",
) -> tuple[Tensor, Tensor]:
    """Behaviour-to-interest dynamic routing (ComiRec-DR / MIND).

    u_hat [B, K, L, d] (item vectors mapped into each interest space), mask [B, L], init_logits
    [B, K, L]. By default the routing logits are refined on a detached copy of ``u_hat`` (as in
    ComiRec); the last iteration uses the live ``u_hat`` so gradients reach the bilinear map, but
    the returned routing weights are then constants. ``live=True`` refines on ``u_hat`` itself, so
    a loss on the routing (REMI's RR) reaches the parameters. ``over`` is the softmax axis
    (see ``coupling``).
    Returns (interests [B, K, d], routing [B, K, L]).
    """
    logits = init_logits
    u_iter = u_hat if live else u_hat.detach()
    for i in range(iterations):
        c = coupling(logits, mask, over)  # [B, K, L]
        if i < iterations - 1:
            v = squash(torch.einsum("bkl,bkld->bkd", c, u_iter))  # [B, K, d]
            logits = logits + torch.einsum("bkld,bkd->bkl", u_iter, v)
        else:
            v = squash(torch.einsum("bkl,bkld->bkd", c, u_hat))
    return v, c


class ComiRecSA(MultiInterestModule):
    """Self-attentive routing ``A = softmax(W2 tanh(W1 (H + P)))`` over positions, interests ``V = A H``."""

    def __init__(
        self,
        num_items: int,
        max_len: int = 50,
        hidden_size: int = 64,
        num_interests: int = 4,
        attention_factor: int = 4,
        add_positions: bool = True,
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
    ) -> None:
        super().__init__(
            num_items, max_len, hidden_size, num_interests, num_negatives, sampler, logq_correction,
            remove_accidental_hits, ihn_beta, rr_lambda, training_cut, lr, weight_decay, eval_ks,
        )  # fmt: skip
        self.save_hyperparameters()
        self.add_positions = add_positions
        self.pos_emb = nn.Parameter(torch.empty(max_len, hidden_size))
        nn.init.normal_(self.pos_emb, std=hidden_size**-0.5)
        self.w1 = nn.Linear(hidden_size, hidden_size * attention_factor, bias=False)
        self.w2 = nn.Linear(hidden_size * attention_factor, num_interests, bias=False)

    def interests(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        self.check_length(input_ids)
        L = input_ids.shape[1]
        mask = input_ids > 0  # [B, L]
        h = self.item_emb(input_ids)  # [B, L, d]
        x = h + self.pos_emb[self.max_len - L :] if self.add_positions else h  # left padding: last = newest
        logits = self.w2(torch.tanh(self.w1(x))).transpose(1, 2)  # [B, K, L]
        routing = masked_softmax(logits, mask)  # [B, K, L]
        return routing @ h, routing  # [B, K, d], [B, K, L]


class ComiRecDR(MultiInterestModule):
    """Dynamic routing with a position- and interest-specific bilinear map (ComiRec-DR, 3 iterations).

    Routing logits start at zero; coupling coefficients are a softmax over the real positions, or
    over the interests with ``routing_softmax="interests"`` (ComiRec's TensorFlow code).
    """

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
        # [L, K, d_out, d_in]: one map per (position, interest), as ComiRec's bilinear_type=2
        self.bilinear = nn.Parameter(torch.randn(max_len, num_interests, hidden_size, hidden_size))

    def interests(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        self.check_length(input_ids)
        L = input_ids.shape[1]
        mask = input_ids > 0  # [B, L]
        h = self.item_emb(input_ids)  # [B, L, d]
        u_hat = torch.einsum("lkoi,bli->bklo", self.bilinear[self.max_len - L :], h)  # [B, K, L, d]
        init = h.new_zeros(h.shape[0], self.num_interests, L)
        return dynamic_routing(
            u_hat, mask, init, self.routing_iterations, self.live_routing, self.routing_softmax
        )

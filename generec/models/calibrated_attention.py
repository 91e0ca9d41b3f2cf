"""Calibrated self-attention (AC-TSR, Zhou et al., CIKM 2023) as a drop-in attention layer.

Two calibrators act on the attention weights of a transformer block:

* **spatial**: for every query/key pair a linear read-out of ``[q_i; k_j]`` predicts (a) the
  probability that key j comes after query i and (b) the log distance ``log(|i - j| + 1)``.
  Their agreement with the true order (log-likelihood) and distance (scaled negative squared
  error) is added to the attention logits, so the layer carries position information without
  absolute position embeddings.
* **adversarial**: two extra projections of Q and K give a perturbation mask ``M`` (a softmax
  over keys). An *attacked* attention keeps ``A * M`` and replaces the rest with noise; a
  *calibrated* attention up-weights exactly what the attacker targets, ``A * exp(1 - M)``;
  a learned gate (one weight per key position, width = ``max_len``) mixes ``A`` and the
  calibrated attention. The attack projections are trained on their own loss (see
  :class:`AdversarialCalibrationMixin`).

Probability-valued tensors are turned back into distributions with a masked softmax, as
the authors' code does; this flattens them (values lie in [0, e]) and is kept for fidelity.
A linear map of a concatenation ``[q; k]`` is split into ``a(q) + b(k)``, which equals the
reference's read-out without materialising the [B, h, L, L, 2 d_h] tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generec.models.base import batch_rows
from generec.models.layers import FeedForward, causal_padding_mask

ATTACK_PREFIX = "attack_"  # parameter-name marker of the adversary's projections


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over keys where ``mask`` is False gets exactly zero weight: [B, h, L, L]."""
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


class AttentionOutput(NamedTuple):
    out: Tensor  # [B, L, d] calibrated (or plain) attention output
    attacked: Tensor | None  # [B, L, d] output under the attacked attention (training only)
    perturbation: Tensor | None  # [B, h, L, L] the attacker's mask M
    attention: Tensor  # [B, h, L, L] the attention weights actually used for ``out``


class CalibratedSelfAttention(nn.Module):
    """Multi-head self-attention with optional spatial and adversarial calibrators."""

    def __init__(
        self,
        hidden: int,
        heads: int,
        dropout: float,
        max_len: int,
        spatial: bool = True,
        adversarial: bool = True,
        use_order: bool = True,
        use_distance: bool = True,
    ) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.heads, self.head_dim, self.max_len = heads, hidden // heads, max_len
        self.use_order = spatial and use_order
        self.use_distance = spatial and use_distance
        self.adversarial = adversarial
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        if self.use_order:  # Linear([q; k] -> 1) written as q-part + k-part
            self.order_q = nn.Linear(self.head_dim, 1)
            self.order_k = nn.Linear(self.head_dim, 1, bias=False)
        if self.use_distance:
            self.distance_q = nn.Linear(self.head_dim, 1)
            self.distance_k = nn.Linear(self.head_dim, 1, bias=False)
            self.distance_scale = nn.Parameter(torch.ones(1))
        if adversarial:
            self.attack_query = nn.Linear(hidden, hidden)
            self.attack_key = nn.Linear(hidden, hidden)
            self.gate = nn.Linear(hidden, max_len)  # one gate per key position
        self.attn_dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, hidden)
        self.out_dropout = nn.Dropout(dropout)

    def _heads(self, x: Tensor) -> Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.heads, self.head_dim).transpose(1, 2)  # [B, h, L, d_h]

    def _merge(self, probs: Tensor, v: Tensor) -> Tensor:
        y = probs @ v  # [B, h, L, d_h]
        B, h, L, dh = y.shape
        return self.out_dropout(self.out(y.transpose(1, 2).reshape(B, L, h * dh)))  # [B, L, d]

    def spatial_terms(self, q: Tensor, k: Tensor) -> Tensor:
        """Order log-likelihood + distance bonus for every (query, key) pair: [B, h, Lq, L].

        The Lq queries are the *last* Lq of the L key positions (Lq = 1: the newest position alone)."""
        Lq, L = q.shape[2], k.shape[2]
        kdx = torch.arange(L, device=q.device)
        qdx = kdx[L - Lq :]
        bonus = q.new_zeros(())
        if self.use_order:
            z = self.order_q(q) + self.order_k(k).transpose(-1, -2)  # [B, h, Lq, L] logit of "j after i"
            after = (kdx[None, :] > qdx[:, None]).to(q.dtype)  # [Lq, L] true order
            bonus = bonus + after * F.logsigmoid(z) + (1 - after) * F.logsigmoid(-z)
        if self.use_distance:
            pred = self.distance_q(q) + self.distance_k(k).transpose(-1, -2)  # [B, h, Lq, L]
            true = torch.log((kdx[None, :] - qdx[:, None]).abs().to(q.dtype) + 1)  # [Lq, L]
            bonus = bonus - (true - pred).square() * self.distance_scale.square() / 2
        return bonus

    def forward(
        self, x: Tensor, mask: Tensor, return_attacked: bool = False, last_only: bool = False
    ) -> AttentionOutput:
        """x [B, L, d]; mask [B, 1, L, L] (True = may attend).

        ``last_only``: only the newest position queries (outputs [B, 1, d], attention [B, h, 1, L]); keys
        and values still come from every position. The attacker's mask stays [B, h, L, L] when the
        attacked branch is asked for, because its size penalty covers every (query, key) pair."""
        B, L, _ = x.shape
        mq, mk = self.query(x), self.key(x)  # [B, L, d]
        rq = mq[:, -1:] if last_only else mq  # the rows that query
        rmask = mask[:, :, -1:] if last_only else mask  # [B, 1, Lq, L]
        q, k, v = self._heads(rq), self._heads(mk), self._heads(self.value(x))  # [B, h, Lq|L, d_h]
        scores = q @ k.transpose(-1, -2)  # [B, h, Lq, L]
        if self.use_order or self.use_distance:
            scores = scores + self.spatial_terms(q, k)
        attn = self.attn_dropout(masked_softmax(scores / math.sqrt(self.head_dim), rmask))  # A
        if not self.adversarial:
            return AttentionOutput(self._merge(attn, v), None, None, attn)

        if L > self.max_len:
            raise ValueError(f"sequence length {L} exceeds the gate width max_len={self.max_len}")
        full_perturb = return_attacked or not last_only  # the penalty needs every row
        aq = self._heads(self.attack_query(mq if full_perturb else rq))
        ak = self._heads(self.attack_key(mk))  # [B, h, L, d_h]
        perturb = masked_softmax(
            aq @ ak.transpose(-1, -2) / math.sqrt(self.head_dim), mask if full_perturb else rmask
        )
        perturb = self.attn_dropout(perturb)  # M [B, h, L|1, L]
        rperturb = perturb[:, :, -1:] if last_only else perturb  # M at the querying rows
        calibrated = masked_softmax(attn * torch.exp(1 - rperturb), rmask)
        # Left padding: the L keys are the last L of the max_len gate columns.
        gate = torch.sigmoid(self.gate(rq)[..., self.max_len - L :]).unsqueeze(1)  # [B, 1, Lq, L]
        combined = masked_softmax(gate * attn + (1 - gate) * calibrated, rmask)
        attacked = None
        if return_attacked:
            noisy = attn * rperturb + torch.randn_like(rperturb) * (1 - rperturb)
            attacked = self._merge(masked_softmax(noisy, rmask), v)
        return AttentionOutput(self._merge(combined, v), attacked, perturb, combined)


class CalibratedTransformerBlock(nn.Module):
    """Post-norm block like ``layers.TransformerBlock``; both branches share the norms and FFN."""

    def __init__(
        self,
        hidden: int,
        heads: int,
        inner: int,
        dropout: float,
        max_len: int,
        activation: str = "gelu",
        spatial: bool = True,
        adversarial: bool = True,
        layer_norm_eps: float = 1e-12,
    ) -> None:
        super().__init__()
        self.attn = CalibratedSelfAttention(hidden, heads, dropout, max_len, spatial, adversarial)
        self.norm1 = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.ffn = FeedForward(hidden, inner, dropout, activation)
        self.norm2 = nn.LayerNorm(hidden, eps=layer_norm_eps)

    def _finish(self, x: Tensor, a: Tensor) -> Tensor:
        h = self.norm1(x + a)
        return self.norm2(h + self.ffn(h))

    def forward(
        self, x: Tensor, mask: Tensor, return_attacked: bool = False, last_only: bool = False
    ) -> AttentionOutput:
        o = self.attn(x, mask, return_attacked, last_only)
        x = x[:, -1:] if last_only else x  # the residual of the querying rows
        attacked = self._finish(x, o.attacked) if o.attacked is not None else None
        return AttentionOutput(self._finish(x, o.out), attacked, o.perturbation, o.attention)


class EncoderOutput(NamedTuple):
    hidden: Tensor  # [B, L, d] calibrated branch, last layer
    attacked: Tensor | None  # [B, L, d] attacked branch of the last layer (training only)
    perturbations: list[Tensor]  # per layer [B, h, L, L]
    attentions: list[Tensor]  # per layer [B, h, L, L]


class CalibratedEncoder(nn.Module):
    """A stack of calibrated blocks. As in the reference, the calibrated output feeds the next
    layer and the attacked branch is read out at the last layer only."""

    def __init__(self, num_layers: int, **block_kw) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(CalibratedTransformerBlock(**block_kw) for _ in range(num_layers))

    def forward(
        self, x: Tensor, mask: Tensor, return_attacked: bool = False, last_only: bool = False
    ) -> EncoderOutput:
        """``last_only``: the final block computes the newest position alone (outputs [B, 1, d])."""
        perturbations, attentions, attacked = [], [], None
        for i, block in enumerate(self.blocks):
            final = i == len(self.blocks) - 1
            o = block(x, mask, return_attacked and final, last_only and final)
            x, attacked = o.out, o.attacked if o.attacked is not None else attacked
            if o.perturbation is not None:
                perturbations.append(o.perturbation)
            attentions.append(o.attention)
        return EncoderOutput(x, attacked, perturbations, attentions)


def is_attack_parameter(name: str) -> bool:
    return any(part.startswith(ATTACK_PREFIX) for part in name.split("."))


def perturbation_penalty(perturbations: list[Tensor], mask: Tensor) -> Tensor:
    """Mean over layers of ||1 - M||_2 on the allowed (query, key) pairs: how much the attacker hides."""
    return parts_perturbation_penalty([(perturbations, mask)])


def parts_perturbation_penalty(parts: Sequence[tuple[list[Tensor], Tensor]]) -> Tensor:
    """``perturbation_penalty`` of one batch given as parts (``data.sub_batches``): per layer the norm
    runs over the allowed pairs of every part together, so the split batch gets the unsplit batch's value."""
    squares = torch.stack(
        [torch.stack([((1 - m)[mask.expand_as(m)] ** 2).sum() for m in perts]) for perts, mask in parts]
    )  # [parts, layers]
    return squares.sum(0).sqrt().mean()


class AdversarialCalibrationMixin:
    """Manual optimisation for models with an adversarial calibrator (mix in before the backbone).

    Each step computes two losses on one forward pass:

    * recommendation loss on the calibrated branch -> gradients for every parameter
      except the attack projections;
    * adversarial loss = -(recommendation loss on the attacked branch) + lambda * perturbation
      size -> gradients for the attack projections only;

    then takes one optimiser step. A subclass provides ``calibrated_losses(batch)`` returning
    ``(rec_loss, adv_loss or None)``.
    """

    adversarial: bool
    adv_lambda: float

    def _setup_adversarial(self, adversarial: bool, adv_lambda: float) -> None:
        self.adversarial, self.adv_lambda = adversarial, float(adv_lambda)
        self.automatic_optimization = not adversarial

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(recommendation parameters, attack parameters): disjoint and together all parameters."""
        rec, attack = [], []
        for name, p in self.named_parameters():
            (attack if is_attack_parameter(name) else rec).append(p)
        return rec, attack

    def calibrated_losses(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def build_calibrated_encoder(
        self, num_layers: int, spatial: bool, adversarial: bool, use_position_embedding: bool | None, **kw
    ) -> None:
        """Replaces the backbone's blocks by calibrated ones; drops absolute positions when spatial is on."""
        self.use_position_embedding = (
            (not spatial) if use_position_embedding is None else use_position_embedding
        )
        del self.blocks
        if not self.use_position_embedding:
            del self.pos_emb
        self.encoder = CalibratedEncoder(num_layers, spatial=spatial, adversarial=adversarial, **kw)

    def calibrated_forward(
        self, input_ids: Tensor, return_attacked: bool = False, last_only: bool = False
    ) -> tuple[EncoderOutput, Tensor]:
        """Embeddings (+ absolute positions if kept) -> calibrated encoder; causal unless ``causal = False``.

        ``last_only``: outputs at the newest position only ([B, 1, d]), the final block's work cut by L."""
        L = input_ids.shape[1]
        if L > self.max_len:
            raise ValueError(f"input length {L} exceeds model.max_len={self.max_len}")
        x = self.item_emb(input_ids)  # [B, L, d]
        if self.use_position_embedding:
            x = x + self.pos_emb(torch.arange(self.max_len - L, self.max_len, device=input_ids.device))
        x = self.emb_dropout(self.emb_norm(x))
        mask = causal_padding_mask(input_ids, causal=getattr(self, "causal", True))  # [B, 1, L, L]
        return self.encoder(x, mask, return_attacked, last_only), mask

    def adversarial_loss(
        self, attacked_rec_loss: Tensor, parts: Sequence[tuple[EncoderOutput, Tensor]]
    ) -> Tensor:
        """-(recommendation loss under attack) + lambda * perturbation size; ``parts``: (output, mask) of
        the batch, or of each of its sub-batches."""
        penalty = parts_perturbation_penalty([(out.perturbations, mask) for out, mask in parts])
        return -attacked_rec_loss + self.adv_lambda * penalty

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        return self.calibrated_losses(batch)[0]

    def backward_both(self, rec_loss: Tensor, adv_loss: Tensor | None) -> None:
        """Accumulates each loss's gradient into its own parameter group only."""
        rec, attack = self.parameter_groups()
        backward = (
            self.manual_backward if self._trainer is not None else lambda loss, **kw: loss.backward(**kw)
        )
        backward(rec_loss, inputs=rec, retain_graph=adv_loss is not None)
        if adv_loss is not None:
            backward(adv_loss, inputs=attack)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if self.automatic_optimization:
            return super().training_step(batch, batch_idx)
        opt = self.optimizers()
        opt.zero_grad()
        rec_loss, adv_loss = self.calibrated_losses(batch)
        self.backward_both(rec_loss, adv_loss)
        opt.step()
        n = batch_rows(batch)
        self.log("train/loss", rec_loss.detach(), on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        if adv_loss is not None:
            self.log("train/adv_loss", adv_loss.detach(), on_step=False, on_epoch=True, batch_size=n)
        return rec_loss.detach()

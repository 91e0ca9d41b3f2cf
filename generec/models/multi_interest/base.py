"""Common machinery of multi-interest candidate-matching models (ComiRec-SA/DR, MIND, ...).

A subclass only implements ``interests(input_ids) -> (V [B, K, d], routing [B, K, L])``; this class
turns it into the seam (``encode`` -> [B, K, d], scored by the max over interests) and trains it
the ComiRec/REMI way: one (history, next item) example per training row, hard readout of the
interest that best matches the target, sampled softmax (IHN when ``ihn_beta != 0``), plus routing
regularisation (RR) weighted by ``rr_lambda``. IHN and RR therefore work for every subclass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from generec.eval.metrics import DEFAULT_KS, target_ranks
from generec.eval.ranking import prepare_scores
from generec.models.base import SeqRecModule
from generec.models.multi_interest.losses import (
    build_sampled_loss,
    routing_max_weight,
    routing_regularization,
)

TRAINING_CUTS = ("random", "last")


def shift_to_end(input_ids: Tensor, cut: Tensor) -> Tensor:
    """Keeps positions ``<= cut`` of each row and re-left-pads so position ``cut`` lands last.

    input_ids [B, L], cut [B] -> [B, L]; the most recent kept item is always at column L - 1.
    """
    L = input_ids.shape[1]
    shift = (L - 1 - cut)[:, None]  # [B, 1]
    src = torch.arange(L, device=input_ids.device)[None, :] - shift  # [B, L]
    out = input_ids.gather(1, src.clamp(min=0))
    return out.masked_fill(src < 0, 0)


class MultiInterestModule(SeqRecModule):
    """Base of all multi-interest models; see the module docstring."""

    def __init__(
        self,
        num_items: int,
        max_len: int = 50,
        hidden_size: int = 64,
        num_interests: int = 4,
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
        super().__init__(num_items, max_len, "ce", 1, lr, weight_decay, eval_ks)
        if training_cut not in TRAINING_CUTS:
            raise ValueError(f"training_cut must be one of {TRAINING_CUTS}, got {training_cut!r}")
        if rr_lambda < 0:
            raise ValueError(f"rr_lambda must be >= 0, got {rr_lambda}")
        self.hidden_size, self.num_interests = hidden_size, num_interests
        self.ihn_beta, self.rr_lambda, self.training_cut = float(ihn_beta), float(rr_lambda), training_cut
        self.item_emb = nn.Embedding(num_items + 1, hidden_size, padding_idx=0)
        nn.init.xavier_normal_(self.item_emb.weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.sampled_loss = build_sampled_loss(
            num_items,
            beta=self.ihn_beta,
            num_negatives=num_negatives,
            sampler=sampler,
            logq_correction=logq_correction,
            remove_accidental_hits=remove_accidental_hits,
        )
        # (sum, count) of the routing statistic, kept as device tensors: no host sync per batch
        self._routing_sums: dict[str, tuple[Tensor, int]] = {}

    # ----------------------------------------------------------------- the seam
    def interests(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        """[B, L] -> (interest vectors [B, K, d], routing [B, K, L]: each row sums to 1 over real items)."""
        raise NotImplementedError

    def item_embeddings(self) -> Tensor:
        return self.item_emb.weight

    def encode(self, batch: dict[str, Tensor]) -> Tensor:
        return self.interests(batch["input_ids"])[0]  # [B, K, d]

    @staticmethod
    def max_over_interests(interests: Tensor, items: Tensor) -> Tensor:
        """[B, K, d], [N, d] -> [B, N]: one [B, N] matmul per interest (no [B, K, N] tensor)."""
        scores = interests[:, 0] @ items.T
        for k in range(1, interests.shape[1]):
            scores = torch.maximum(scores, interests[:, k] @ items.T)
        return scores

    def score(self, batch: dict[str, Tensor]) -> Tensor:
        return self.max_over_interests(self.encode(batch), self.item_embeddings())

    def check_length(self, input_ids: Tensor) -> None:
        if input_ids.shape[1] > self.max_len:
            raise ValueError(f"input length {input_ids.shape[1]} exceeds model.max_len={self.max_len}")

    # ----------------------------------------------------------------- training
    def training_examples(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """One (history [R, L], target [R]) per row that has a supervised position.

        ``training_cut="random"`` picks one supervised position per row uniformly (ComiRec samples a
        random cut point per user); ``"last"`` takes the last one. With ``data.protocol=prefixes``
        only the last column is supervised, so both give every prefix.
        """
        input_ids, targets = batch["input_ids"], batch["targets"]
        supervised = targets > 0  # [B, L]
        rows = supervised.any(1)
        input_ids, targets, supervised = input_ids[rows], targets[rows], supervised[rows]
        L = targets.shape[1]
        if self.training_cut == "last":
            cut = L - 1 - supervised.flip(1).int().argmax(1)  # [R]
        else:
            noise = torch.rand(supervised.shape, device=targets.device).masked_fill(~supervised, -1.0)
            cut = noise.argmax(1)  # [R]
        target = targets.gather(1, cut[:, None]).squeeze(1)  # [R]
        return shift_to_end(input_ids, cut), target

    @staticmethod
    def hard_readout(interests: Tensor, target_emb: Tensor) -> Tensor:
        """The interest with the largest inner product with the target: [B, K, d], [B, d] -> [B, d]."""
        best = torch.einsum("bkd,bd->bk", interests, target_emb).argmax(1)  # [B]
        return interests[torch.arange(len(best), device=best.device), best]

    def loss_terms(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Sampled-softmax (or IHN) loss, the RR penalty and the routing statistic of one batch."""
        history, target = self.training_examples(batch)
        interests, routing = self.interests(history)  # [R, K, d], [R, K, L]
        items = self.item_embeddings()
        selected = self.hard_readout(interests, items[target])  # [R, d]
        rec = self.sampled_loss(selected, target, items)
        mask = history > 0
        out = {"rec": rec, "routing_max": routing_max_weight(routing.detach(), mask).mean()}
        out["rr"] = (
            routing_regularization(routing, mask, scale=self.hidden_size)
            if self.rr_lambda > 0
            else rec.new_zeros(())
        )
        out["loss"] = rec + self.rr_lambda * out["rr"]
        return out

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        return self.loss_terms(batch)["loss"]

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        terms = self.loss_terms(batch)
        n = batch["input_ids"].shape[0]
        for name in ("loss", "rec", "rr", "routing_max"):
            self.log(
                f"train/{name}",
                terms[name],
                on_step=False,
                on_epoch=True,
                prog_bar=name == "loss",
                batch_size=n,
            )
        return terms["loss"]

    # --------------------------------------------------------------- evaluation
    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        interests, routing = self.interests(batch["input_ids"])  # one pass for scores and routing
        scores = prepare_scores(
            self.max_over_interests(interests, self.item_embeddings()), batch.get("history")
        )
        self.metrics[stage].update(target_ranks(scores, batch["targets"]))
        stat = routing_max_weight(routing, batch["input_ids"] > 0).to(torch.float64)  # [B]
        total, count = self._routing_sums.get(stage, (stat.new_zeros(()), 0))
        self._routing_sums[stage] = (total + stat.sum(), count + stat.numel())

    def _eval_epoch_end(self, stage: str) -> None:
        super()._eval_epoch_end(stage)
        total, count = self._routing_sums.pop(stage, (None, 0))
        if count:
            # mean (over users and interests) of the largest routing weight: 1.0 = fully collapsed routing
            self.log(f"{stage}/routing_max", float(total) / count, sync_dist=True)

"""AC-SASRec: SASRec whose attention layers carry AC-TSR's spatial and adversarial calibrators."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from generec.eval.metrics import DEFAULT_KS
from generec.models.base import batch_parts
from generec.models.calibrated_attention import AdversarialCalibrationMixin
from generec.models.contrastive import next_item_loss
from generec.models.losses import batch_loss_scale
from generec.models.sasrec import SASRec


class ACSASRec(AdversarialCalibrationMixin, SASRec):
    """Causal calibrated transformer; trained with two disjoint-parameter losses when adversarial."""

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
        spatial: bool = True,
        adversarial: bool = True,
        adv_lambda: float = 0.3,
        use_position_embedding: bool | None = None,
    ) -> None:
        super().__init__(
            num_items, max_len, hidden_size, num_layers, num_heads, inner_size, dropout, activation,
            init_std, loss, num_negatives, lr, weight_decay, eval_ks,
        )  # fmt: skip
        self.save_hyperparameters()
        self._setup_adversarial(adversarial, adv_lambda)
        self.build_calibrated_encoder(
            num_layers, spatial, adversarial, use_position_embedding,
            hidden=hidden_size, heads=num_heads, inner=inner_size, dropout=dropout, max_len=max_len,
            activation=activation,
        )  # fmt: skip
        self.apply(self._init_weights)

    def sequence_hidden(self, input_ids: Tensor) -> Tensor:
        return self.calibrated_forward(input_ids)[0].hidden

    def last_hidden(self, input_ids: Tensor) -> Tensor:
        """Scoring reads the newest position: the final calibrated block computes it alone."""
        return self.calibrated_forward(input_ids, last_only=True)[0].hidden[:, -1]

    @property
    def accepts_sub_batches(self) -> bool:
        """Parts are encoded one by one; both losses (and the perturbation norm) cover the whole batch."""
        return True

    def calibrated_losses(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        parts = batch_parts(batch)  # the batch, or its length-sorted trimmed parts (data.sub_batches)
        last = bool(batch.get("last_only") or parts[0].get("last_only"))  # prefixes / last rows
        forwards = [
            self.calibrated_forward(p["input_ids"], return_attacked=self.adversarial, last_only=last)
            for p in parts
        ]
        targets = [p["targets"][:, -1:] if last else p["targets"] for p in parts]
        scale = batch_loss_scale(batch)
        rec = next_item_loss(self, [out.hidden for out, _ in forwards], targets, scale)
        if not self.adversarial:
            return rec, None
        attacked = next_item_loss(self, [out.attacked for out, _ in forwards], targets, scale)
        return rec, self.adversarial_loss(attacked, forwards)

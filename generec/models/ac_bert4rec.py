"""AC-BERT4Rec: BERT4Rec (bidirectional, masked items) with AC-TSR's calibrated attention."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from generec.eval.metrics import DEFAULT_KS
from generec.models.bert4rec import BERT4Rec, masked_item_ce
from generec.models.calibrated_attention import AdversarialCalibrationMixin
from generec.models.losses import batch_loss_scale


class ACBERT4Rec(AdversarialCalibrationMixin, BERT4Rec):
    """Bidirectional calibrated transformer; the adversary attacks the masked-item loss."""

    def __init__(
        self,
        num_items: int,
        max_len: int = 50,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        inner_size: int = 256,
        dropout: float = 0.2,
        activation: str = "gelu",
        init_std: float = 0.02,
        mask_ratio: float = 0.2,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        eval_ks: Sequence[int] = DEFAULT_KS,
        spatial: bool = True,
        adversarial: bool = True,
        adv_lambda: float = 0.3,
        use_position_embedding: bool | None = None,
        output_bias: bool = True,
        ft_ratio: float = 0.0,
    ) -> None:
        super().__init__(
            num_items, max_len, hidden_size, num_layers, num_heads, inner_size, dropout, activation,
            init_std, mask_ratio, lr, weight_decay, eval_ks, output_bias, ft_ratio,
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
        return self.head(self.calibrated_forward(input_ids)[0].hidden)

    def encode(self, batch: dict[str, Tensor]) -> Tensor:
        """The [MASK] in the last column scores the catalogue: the final block computes that column alone."""
        out = self.calibrated_forward(self.with_mask_last(batch["input_ids"]), last_only=True)[0]
        return self.head(out.hidden)[:, -1]

    def calibrated_losses(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        inputs, labels = self.mask_items(self.training_window(batch))
        out, mask = self.calibrated_forward(inputs, return_attacked=self.adversarial)
        items = self.item_embeddings()
        scale = batch_loss_scale(batch)
        rec = masked_item_ce(self.head(out.hidden), labels, items, self.output_bias) * scale
        if out.attacked is None:
            return rec, None
        attacked = masked_item_ce(self.head(out.attacked), labels, items, self.output_bias) * scale
        return rec, self.adversarial_loss(attacked, [(out, mask)])

"""CL4SRec (Xie et al., ICDE 2022): SASRec + InfoNCE between two crop/mask/reorder views of each sequence."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from generec.data.augment import Augmentation, Crop, Mask, RandomChoice, Reorder
from generec.models.base import batch_parts, batch_rows
from generec.models.contrastive import info_nce, make_view, next_item_loss, same_width
from generec.models.losses import batch_loss_scale
from generec.models.sasrec import SASRec


class CL4SRec(SASRec):
    """Loss = next-item CE + ``cl_weight`` * InfoNCE(last state of view 1, last state of view 2).

    Each view applies one operator drawn per sequence from {crop, mask, reorder}; masked items
    become 0 (padding), as in the DA4Rec configuration.
    """

    def __init__(
        self,
        num_items: int,
        cl_weight: float = 0.1,
        temperature: float = 1.0,
        similarity: str = "dot",
        crop_ratio: float = 0.6,
        mask_ratio: float = 0.3,
        reorder_ratio: float = 0.6,
        **backbone,
    ) -> None:
        """``backbone``: the SASRec arguments (hidden_size, num_layers, dropout, lr, ...)."""
        super().__init__(num_items, **backbone)
        self.save_hyperparameters()
        self.cl_weight, self.temperature, self.similarity = cl_weight, temperature, similarity
        self.view_op = self.build_view_op()

    def build_view_op(self) -> Augmentation:
        """The per-view augmentation (subclasses widen the operator set)."""
        hp = self.hparams
        return RandomChoice(
            [
                Crop(n=1, ratio=hp.crop_ratio),
                Mask(n=0, ratio=hp.mask_ratio),
                Reorder(n=0, ratio=hp.reorder_ratio),
            ]
        )

    def views(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        """Two independent augmentations of each row, padded to one width: [B, L'] each."""
        v1 = make_view(self.view_op, input_ids, self.max_len)
        v2 = make_view(self.view_op, input_ids, self.max_len)
        return same_width(v1, v2)

    @property
    def accepts_sub_batches(self) -> bool:
        """Sub-batched parts are encoded one by one; both losses then cover the whole batch."""
        return self.accepts_trimmed_batches

    def contrastive_loss(self, input_ids: Tensor | Sequence[Tensor]) -> Tensor:
        """InfoNCE over the batch; ``input_ids`` may be the batch's trimmed parts (views built per part)."""
        z1, z2 = [], []
        for ids in [input_ids] if isinstance(input_ids, Tensor) else input_ids:
            v1, v2 = self.views(ids)
            z = self.last_hidden(torch.cat([v1, v2]))  # [2B, d]: both views in one pass
            z1.append(z[: len(ids)])
            z2.append(z[len(ids) :])
        return info_nce(torch.cat(z1), torch.cat(z2), self.temperature, self.similarity)

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        parts = batch_parts(batch)
        hidden, targets = zip(*(self.loss_hidden(part) for part in parts), strict=True)  # [B_p, L_p, d]
        rec = next_item_loss(self, list(hidden), list(targets), batch_loss_scale(batch))
        cl = self.contrastive_loss([part["input_ids"] for part in parts])
        self.log("train/cl_loss", cl, on_step=False, on_epoch=True, batch_size=batch_rows(batch))
        return rec + self.cl_weight * cl

"""DuoRec (Qiu et al., WSDM 2022): dropout as the augmentation plus supervised positives.

The positive of a training row is another training row with the same next (last) target item,
drawn uniformly from the whole training set (itself when it is the only one: then the pair differs
only by dropout). Rows of the batch sharing a target are not used as negatives of each other.
"""

from __future__ import annotations

import torch
from torch import Tensor

from generec.data.augment import fit_width, lengths_of
from generec.models.base import batch_parts
from generec.models.contrastive import info_nce, next_item_loss
from generec.models.losses import batch_loss_scale
from generec.models.sasrec import SASRec


class DuoRec(SASRec):
    """Loss = next-item CE + ``cl_weight`` * InfoNCE(row state, same-target positive state)."""

    def __init__(
        self,
        num_items: int,
        cl_weight: float = 0.1,
        temperature: float = 1.0,
        similarity: str = "dot",
        **backbone,
    ) -> None:
        """``backbone``: the SASRec arguments (hidden_size, num_layers, dropout, lr, ...)."""
        super().__init__(num_items, **backbone)
        self.save_hyperparameters()
        self.cl_weight, self.temperature, self.similarity = cl_weight, temperature, similarity
        self._pool: dict[str, Tensor] | None = None

    def on_fit_start(self) -> None:
        """Index training rows by their last target (CSR over items) for positive sampling."""
        datamodule = getattr(self.trainer, "datamodule", None)
        rows = getattr(datamodule, "train_rows", None)
        if rows is not None:
            self.set_positive_pool(rows.tensors["input_ids"], rows.tensors["targets"][:, -1])

    def set_positive_pool(self, input_ids: Tensor, last_targets: Tensor) -> None:
        order = torch.argsort(last_targets, stable=True)  # rows grouped by target
        counts = torch.bincount(last_targets, minlength=self.num_items + 1)  # [I + 1]
        starts = torch.cumsum(counts, 0) - counts
        self._pool = {"inputs": input_ids, "order": order, "counts": counts, "starts": starts}

    def positives(self, input_ids: Tensor, last_targets: Tensor) -> Tensor:
        """A same-target row for every batch row ([B, L']); the row itself without a pool."""
        pool = self._pool
        if pool is None:
            return input_ids
        t = last_targets.cpu()
        counts = pool["counts"][t]
        pick = (torch.rand(len(t)) * counts.clamp(min=1)).long().clamp(max=(counts - 1).clamp(min=0))
        rows = pool["order"][(pool["starts"][t] + pick).clamp(max=len(pool["order"]) - 1)]
        pos = pool["inputs"][rows].to(input_ids.device)  # [B, max_len]
        own = fit_width(input_ids, lengths_of(input_ids), pos.shape[1])[0]  # a target unseen in the pool
        pos = torch.where((counts > 0).to(input_ids.device)[:, None], pos, own)
        width = max(int(lengths_of(pos).max()), 1)
        return pos[:, pos.shape[1] - width :]

    @property
    def accepts_sub_batches(self) -> bool:
        """Sub-batched parts are encoded one by one; both losses then cover the whole batch."""
        return self.accepts_trimmed_batches

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        parts = batch_parts(batch)
        hidden, targets, anchors, positives, lasts = [], [], [], [], []
        for part in parts:  # one part unless data.sub_batches > 1 (then length-sorted, trimmed parts)
            h, t = self.loss_hidden(part)  # [B_p, L_p, d] (L_p = 1: last position only)
            last = part["targets"][:, -1]  # [B_p]
            pos = self.positives(part["input_ids"], last)
            hidden.append(h)
            targets.append(t)
            anchors.append(h[:, -1])
            positives.append(self.last_hidden(pos))  # [B_p, d], its own dropout mask
            lasts.append(last)
        rec = next_item_loss(self, hidden, targets, batch_loss_scale(batch))
        last = torch.cat(lasts)  # [B]
        same = last[:, None] == last[None, :]  # [B, B] same target -> not a negative
        cl = info_nce(torch.cat(anchors), torch.cat(positives), self.temperature, self.similarity, same=same)
        self.log("train/cl_loss", cl, on_step=False, on_epoch=True, batch_size=len(last))
        return rec + self.cl_weight * cl

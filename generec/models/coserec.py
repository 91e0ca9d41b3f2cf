"""CoSeRec (Liu et al., 2021): CL4SRec's views plus informative "substitute" and "insert" operators."""

from __future__ import annotations

import torch
from torch import Tensor

from generec.data.augment import (
    Augmentation,
    Crop,
    Insert,
    Mask,
    RandomChoice,
    Reorder,
    Replace,
    uniform_items,
)
from generec.models.cl4srec import CL4SRec


class CoSeRec(CL4SRec):
    """Views draw from {crop, mask, reorder, substitute, insert}.

    Substitute/insert pick the item most similar to the anchor item under the model's own current
    item embeddings (CoSeRec's "online" similarity model; random items during the warm-up epochs,
    or always with ``item_sampling=random``).
    """

    def __init__(
        self,
        num_items: int,
        cl_weight: float = 0.1,
        temperature: float = 1.0,
        similarity: str = "dot",
        crop_ratio: float = 0.2,
        mask_ratio: float = 0.7,
        reorder_ratio: float = 0.2,
        substitute_ratio: float = 0.1,
        insert_ratio: float = 0.4,
        item_sampling: str = "similar",
        warm_up_epochs: int = 1,
        **backbone,
    ) -> None:
        if item_sampling not in ("similar", "random"):
            raise ValueError(f"item_sampling must be 'similar' or 'random', got {item_sampling!r}")
        self._item_sampling = item_sampling
        self._warm_up_epochs = warm_up_epochs
        backbone.setdefault("hidden_size", 256)
        super().__init__(
            num_items, cl_weight, temperature, similarity, crop_ratio, mask_ratio, reorder_ratio, **backbone
        )
        self.save_hyperparameters()

    def _sample_items(self, anchor: Tensor, generator: torch.Generator | None) -> Tensor:
        """Most similar other item to each anchor (random before the warm-up ends): [K] -> [K]."""
        warm = self._trainer is not None and self.current_epoch >= self._warm_up_epochs
        if self._item_sampling == "random" or not warm or anchor.numel() == 0:
            return uniform_items(self.num_items)(anchor, generator)
        with torch.no_grad():
            table = self.item_embeddings().detach()  # [I + 1, d]
            sims = table[anchor.clamp(min=0)] @ table[1:].T  # [K, I]
            sims[torch.arange(len(anchor)), (anchor - 1).clamp(min=0)] = float("-inf")  # never itself
            return sims.argmax(1) + 1

    def build_view_op(self) -> Augmentation:
        hp = self.hparams
        return RandomChoice(
            [
                Crop(n=1, ratio=hp.crop_ratio),
                Mask(n=0, ratio=hp.mask_ratio),
                Reorder(n=0, ratio=hp.reorder_ratio),
                Replace(self.num_items, n=1, ratio=hp.substitute_ratio, sampler=self._sample_items),
                Insert(self.num_items, n=1, ratio=hp.insert_ratio, sampler=self._sample_items),
            ]
        )

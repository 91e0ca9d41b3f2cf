"""ICLRec (Chen et al., WWW 2022): intent contrastive learning with k-means over sequence representations.

Every epoch starts with k-means (faiss) over the mean hidden state of all training rows; during
the epoch each row's intent is the nearest centroid to its current (detached) representation.
Loss = CE + ``cl_weight`` * InfoNCE(view 1, view 2) (flattened hidden states, ICLRec's
"concatenate") + ``intent_weight`` * mean over views of InfoNCE(view, its intent centroid).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from generec.models.cl4srec import CL4SRec
from generec.models.contrastive import info_nce, mean_state, next_item_loss
from generec.models.losses import batch_loss_scale

log = logging.getLogger(__name__)


def kmeans(x: np.ndarray, k: int, seed: int, niter: int = 20) -> np.ndarray:
    """Centroids [k, d] of float32 rows ``x`` [N, d] (faiss; k capped at N)."""
    import faiss

    k = max(1, min(k, len(x)))
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False)
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    return km.centroids


class ICLRec(CL4SRec):
    """CL4SRec-style views (crop 0.2 / mask 0.7 / reorder 0.2) plus intent prototypes."""

    def __init__(
        self,
        num_items: int,
        cl_weight: float = 0.1,
        temperature: float = 1.0,
        similarity: str = "dot",
        crop_ratio: float = 0.2,
        mask_ratio: float = 0.7,
        reorder_ratio: float = 0.2,
        num_intents: int = 256,
        intent_weight: float = 0.1,
        kmeans_max_rows: int = 200_000,
        kmeans_batch_size: int = 2048,
        **backbone,
    ) -> None:
        backbone.setdefault("hidden_size", 256)
        super().__init__(
            num_items, cl_weight, temperature, similarity, crop_ratio, mask_ratio, reorder_ratio, **backbone
        )
        self.save_hyperparameters()
        self.num_intents, self.intent_weight = num_intents, intent_weight
        self.register_buffer("centroids", torch.zeros(0, self.hparams.hidden_size), persistent=False)

    @torch.no_grad()
    def representations(self, input_ids: Tensor, batch_size: int) -> Tensor:
        """Mean hidden state of each row in eval mode: [N, L] -> [N, d] (on CPU)."""
        was_training = self.training
        self.eval()
        out = []
        for i in range(0, len(input_ids), batch_size):
            ids = input_ids[i : i + batch_size].to(self.device)
            out.append(mean_state(self.sequence_hidden(ids), ids).cpu())
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.hparams.hidden_size)

    def fit_intents(self, input_ids: Tensor, seed: int = 0) -> None:
        """k-means over (a seeded sample of at most ``kmeans_max_rows``) training rows."""
        if len(input_ids) > self.hparams.kmeans_max_rows:
            g = torch.Generator().manual_seed(seed)
            input_ids = input_ids[torch.randperm(len(input_ids), generator=g)[: self.hparams.kmeans_max_rows]]
        reps = self.representations(input_ids, self.hparams.kmeans_batch_size)
        centroids = kmeans(reps.numpy(), self.num_intents, seed)
        self.centroids = torch.from_numpy(centroids).to(self.device)

    def on_train_epoch_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        rows = getattr(datamodule, "train_rows", None)
        if rows is not None:
            self.fit_intents(rows.tensors["input_ids"], seed=int(self.current_epoch))

    def intent_loss(self, views: Sequence[Tensor], hidden_views: Sequence[Tensor], anchor: Tensor) -> Tensor:
        """InfoNCE between each view's mean state and the intent of the original row (in-batch negatives)."""
        if self.centroids.numel() == 0:
            return anchor.new_zeros(())
        with torch.no_grad():
            intent = torch.cdist(anchor.detach(), self.centroids).argmin(1)  # [B] nearest centroid
        protos = self.centroids[intent]  # [B, d]
        same = intent[:, None] == intent[None, :]  # rows sharing an intent are not negatives
        losses = [
            info_nce(mean_state(h, v), protos, self.temperature, self.similarity, same=same)
            for v, h in zip(views, hidden_views, strict=True)
        ]
        return torch.stack(losses).mean()

    @property
    def accepts_sub_batches(self) -> bool:
        """No: the view InfoNCE compares flattened [L', d] states, so every row needs one common width."""
        return False

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        input_ids = batch["input_ids"]
        hidden = self.sequence_hidden(input_ids)  # [B, L, d]
        rec = next_item_loss(self, hidden, batch["targets"], batch_loss_scale(batch))
        v1, v2 = self.views(input_ids)
        h = self.sequence_hidden(torch.cat([v1, v2]))  # [2B, L', d]
        h1, h2 = h.chunk(2)
        cl = info_nce(h1.flatten(1), h2.flatten(1), self.temperature, self.similarity)
        intent = self.intent_loss([v1, v2], [h1, h2], mean_state(hidden, input_ids))
        B = input_ids.shape[0]
        self.log("train/cl_loss", cl, on_step=False, on_epoch=True, batch_size=B)
        self.log("train/intent_loss", intent, on_step=False, on_epoch=True, batch_size=B)
        return rec + self.cl_weight * cl + self.intent_weight * intent

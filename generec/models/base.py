"""The one seam every recommender exposes: ``encode``, ``item_embeddings``, ``score``.

Evaluation, generation and audits talk to models only through these three methods.
Batches are dicts of tensors:

* training: ``input_ids`` [B, L] (left-padded with 0), ``targets`` [B, L] (0 = no loss here)
* evaluation: ``input_ids`` [B, L], ``targets`` [B], optional ``history`` [B, H] to mask
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from torch import Tensor

from generec.eval.metrics import DEFAULT_KS, MetricAccumulator, target_ranks
from generec.eval.ranking import prepare_scores
from generec.models.losses import batch_loss_scale, next_item_loss

LOSSES = ("ce", "ce_with_padding", "bce", "sampled_ce")


def batch_parts(batch: dict) -> list[dict[str, Tensor]]:
    """The length-sorted, separately trimmed parts of a ``data.sub_batches`` batch, or the batch itself.

    Models with their own losses (contrastive, adversarial) encode the parts one by one and then compute
    each loss over the whole batch, so batch-level terms (in-batch negatives, norms) are the unsplit batch's.
    """
    return batch["sub_batches"] if "sub_batches" in batch else [batch]


def batch_rows(batch: dict) -> int:
    """Rows in a training batch, whole or cut into ``sub_batches``."""
    return sum(part["input_ids"].shape[0] for part in batch_parts(batch))


class SeqRecModule(L.LightningModule):
    """Base class: subclasses implement ``sequence_hidden`` and ``item_embeddings``.

    Default training is full-softmax cross-entropy over all real items at every
    supervised position (``loss="ce"``; ``"ce_with_padding"`` also keeps the padding row as a class,
    as RecBole's CE does), BCE against uniformly sampled negatives
    (``loss="bce"``), or a sampled softmax against ``num_negatives`` uniform negatives
    shared by the batch (``loss="sampled_ce"``, for very large catalogues).
    """

    # True when the model accepts left-padded inputs shorter than max_len (the datamodule then
    # trims all-padding columns per batch). Models with max_len-wide parameters keep it False.
    accepts_trimmed_batches: bool = False

    def __init__(
        self,
        num_items: int,
        max_len: int = 50,
        loss: str = "ce",
        num_negatives: int = 1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        eval_ks: Sequence[int] = DEFAULT_KS,
        ce_chunk_size: int = 0,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"model.loss must be one of {LOSSES}, got {loss!r}")
        self.num_items = num_items
        self.max_len = max_len
        self.loss_type = loss
        self.num_negatives = num_negatives
        self.lr = lr
        self.weight_decay = weight_decay
        self.eval_ks = tuple(int(k) for k in eval_ks)
        self.ce_chunk_size = ce_chunk_size  # > 0: stream the softmax over item chunks (large catalogues)
        self.metrics = {"valid": MetricAccumulator(self.eval_ks), "test": MetricAccumulator(self.eval_ks)}

    # ----------------------------------------------------------------- the seam
    def sequence_hidden(self, input_ids: Tensor) -> Tensor:
        """Hidden state at every position: [B, L] -> [B, L, d]."""
        raise NotImplementedError

    def item_embeddings(self) -> Tensor:
        """Output item table [num_items + 1, d]; row 0 is padding."""
        raise NotImplementedError

    def last_hidden(self, input_ids: Tensor) -> Tensor:
        """State after the newest (last) item: [B, d]. Encoders may skip the other positions' work."""
        return self.sequence_hidden(input_ids)[:, -1]

    def encode(self, batch: dict[str, Tensor]) -> Tensor:
        """User state after the whole input sequence: [B, d] (or [B, K, d] for multi-interest)."""
        return self.last_hidden(batch["input_ids"])

    def loss_hidden(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(hidden [B, L', d], targets [B, L']) for the loss: L' = 1 when only the last position is
        supervised (``batch["last_only"]``, set on the host by the rows: prefixes / last protocols)."""
        if batch.get("last_only"):
            return self.last_hidden(batch["input_ids"])[:, None], batch["targets"][:, -1:]
        return self.sequence_hidden(batch["input_ids"]), batch["targets"]

    def score(self, batch: dict[str, Tensor]) -> Tensor:
        """Logits over the whole catalogue [B, num_items + 1]; multi-interest takes the max over K."""
        user = self.encode(batch)
        items = self.item_embeddings()
        # In float32 even under bf16 autocast: rounding scores to 8 mantissa bits makes ties, and
        # ties count against the target, so low-precision scores would change the metrics.
        with torch.autocast(user.device.type, enabled=False):
            user, items = user.float(), items.float()
            if user.dim() == 3:
                return torch.einsum("bkd,nd->bkn", user, items).amax(dim=1)
            return user @ items.T

    # ----------------------------------------------------------------- training
    @property
    def accepts_sub_batches(self) -> bool:
        """Whether ``data.sub_batches`` > 1 works: trimmed inputs and this class's plain next-item loss."""
        return self.accepts_trimmed_batches and type(self).compute_loss is SeqRecModule.compute_loss

    def supervised_states(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Hidden states and targets at the supervised positions of one batch: [N, d], [N]."""
        hidden, targets = self.loss_hidden(batch)  # [B, L, d] (L = 1: last position only)
        supervised = targets > 0
        count = batch.get("num_supervised")
        if count is None:
            return hidden[supervised], targets[supervised]
        # N known on the host (fast path): a static-size gather needs no device->host sync
        flat = torch.nonzero_static(supervised.flatten(), size=count).squeeze(1)
        return hidden.flatten(0, 1)[flat], targets.flatten()[flat]

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        if "sub_batches" in batch:  # length-sorted parts of one batch: one loss over all their targets
            states = [self.supervised_states(part) for part in batch["sub_batches"]]
            h, y = torch.cat([s[0] for s in states]), torch.cat([s[1] for s in states])
        else:
            h, y = self.supervised_states(batch)
        loss = next_item_loss(
            h, y, self.item_embeddings(), self.loss_type, self.num_negatives, self.ce_chunk_size
        )
        return loss * batch_loss_scale(batch)

    def compile_hot_paths(
        self, backend: str = "inductor", mode: str | None = None, dynamic: bool | None = True
    ) -> None:
        """``torch.compile`` the two per-step hot paths: the training loss and catalogue scoring.

        The eager methods stay the reference (the tests compare both). ``dynamic`` avoids one
        recompilation per trimmed batch width; ``mode="reduce-overhead"`` adds CUDA-graph capture.
        """
        options = {"backend": backend, "dynamic": dynamic}
        if backend == "inductor" and mode:
            options["mode"] = mode
        self.compute_loss = torch.compile(self.compute_loss, **options)
        self.score = torch.compile(self.score, **options)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.compute_loss(batch)
        self.log(
            "train/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch_rows(batch),
        )
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    # --------------------------------------------------------------- evaluation
    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        scores = prepare_scores(self.score(batch), batch.get("history"))
        self.metrics[stage].update(target_ranks(scores, batch["targets"]))

    def _eval_epoch_end(self, stage: str) -> None:
        acc = self.metrics[stage]
        acc.device = self.device
        values = acc.compute(reduce_fn=lambda t: self.trainer.strategy.reduce(t, reduce_op="sum"))
        acc.reset()
        shown = ("ndcg@10", "hr@10")  # on the progress bar; the rest go to the loggers only
        for k, v in values.items():
            self.log(f"{stage}/{k}", v, prog_bar=stage == "valid" and k in shown, sync_dist=False)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "valid")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("valid")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int):
        return self.score(batch)

    # --------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Stores what ``generec predict`` needs to rebuild the model and check the data (plain values)."""
        cls = type(self)
        checkpoint["generec_model_class"] = f"{cls.__module__}.{cls.__qualname__}"
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "dataset_record"):
            checkpoint["generec_dataset"] = datamodule.dataset_record()

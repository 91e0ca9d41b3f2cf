"""``TrustAuditCallback``: a trust audit at every validation, logged as ``trust/*``.

Reference set for the logged ``trust/index`` (``reference=``):

* ``"absolute"`` (default): each metric mapped to [0, 1] by its fixed rule
  (``generec.trust.metrics``). An epoch's value never changes later, so
  ``ModelCheckpoint(monitor="trust/index", mode="max")`` keeps the true arg-max.
* ``"history"``: ECDF against the epochs audited so far (this one included). It answers "how does
  this checkpoint rank among those seen so far", but the value of an old epoch is never revised,
  so a running max over it is not the arg-max of the final ECDF. Use it for monitoring.

Either way the callback keeps every audited epoch's raw metrics (also in the checkpoint), and
``ecdf_scores()`` gives the post-hoc ECDF index across all of them: the candidate-relative
selection the trust index defines, available once training is over.
"""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

from generec.trust.audit import AuditConfig, AuditData, audit_model
from generec.trust.index import TrustScore, absolute_index, trust_index

CALLBACK_DEFAULTS = {
    "split": "valid",  # never audit on test while selecting checkpoints
    "max_users": 1000,
    "perturbations": ("replace", "delete"),
    "rates": (0.2,),
    "compression": (),  # compression is re-audited by `generec audit`, not every epoch
}


class TrustAuditCallback(L.Callback):
    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        reference: str = "absolute",
        audit: Mapping | None = None,
        log_metrics: bool = True,
    ) -> None:
        if reference not in ("absolute", "history"):
            raise ValueError(f"reference must be 'absolute' or 'history', got {reference!r}")
        self.weights = dict(weights) if weights is not None else None
        self.reference = reference
        self.cfg = AuditConfig.from_mapping({**CALLBACK_DEFAULTS, **dict(audit or {})})
        self.log_metrics = log_metrics
        self.history: list[dict] = []  # [{"epoch", "step", "metrics", "index"}]
        self._data: AuditData | None = None

    def _audit_data(self, trainer) -> AuditData:
        if self._data is None:
            datamodule = trainer.datamodule
            if datamodule is None:
                raise RuntimeError("TrustAuditCallback needs trainer.fit(model, datamodule=...)")
            self._data = AuditData.from_datamodule(datamodule, self.cfg)
        return self._data

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        result = audit_model(pl_module, self._audit_data(trainer), self.cfg)
        entry = {"epoch": trainer.current_epoch, "step": trainer.global_step, "metrics": result.metrics}
        # Only epochs audited while fitting are candidates; a later trainer.validate() is logged, not kept.
        pool = [*self.history, entry]
        if trainer.state.fn == TrainerFn.FITTING:
            self.history.append(entry)
        if self.reference == "absolute":
            score = absolute_index(result.metrics, self.weights)
        else:
            score = trust_index({i: h["metrics"] for i, h in enumerate(pool)}, self.weights)[len(pool) - 1]
        entry["index"] = score.index
        pl_module.log("trust/index", score.index, prog_bar=True, sync_dist=False)
        for dim, value in score.dimensions.items():
            pl_module.log(f"trust/{dim}", value, sync_dist=False)
        if self.log_metrics:
            for key, value in result.metrics.items():
                pl_module.log(f"trust/{key}", value, sync_dist=False)

    def ecdf_scores(self) -> dict[int, TrustScore]:
        """Post-hoc ECDF trust index of every audited epoch against all the others: {epoch: score}."""
        scores = trust_index({i: h["metrics"] for i, h in enumerate(self.history)}, self.weights)
        return {self.history[i]["epoch"]: s for i, s in scores.items()}

    def best_epoch(self, by: str = "ecdf") -> int | None:
        """Epoch with the highest index (first max): by the post-hoc ECDF or by the logged value."""
        if not self.history:
            return None
        if by == "ecdf":
            scores = self.ecdf_scores()
            return max(scores, key=lambda e: scores[e].index)
        return max(self.history, key=lambda h: h["index"])["epoch"]

    def state_dict(self) -> dict:
        return {"history": self.history, "reference": self.reference}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state["history"])

"""Named trust metrics with a direction, a dimension and an absolute [0, 1] mapping.

Every audited number is one of these, so the trust index can orient it (higher or lower is
better) without knowing where it came from. ``absolute`` maps a raw value onto [0, 1] with 1 =
best by a fixed rule (no reference set): used where values audited at different times must stay
comparable, e.g. checkpoint selection during training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

DIMENSIONS = ("utility", "fidelity", "privacy", "bias", "robustness")


def _unit(v: float) -> float:
    return min(max(v, 0.0), 1.0)


@dataclass(frozen=True)
class TrustMetric:
    """One audited quantity: ``key`` is ``<dimension>/<name>`` (the logged name is ``trust/<key>``)."""

    dimension: str
    name: str
    higher_is_better: bool
    absolute: Callable[[float], float]
    doc: str = ""

    @property
    def key(self) -> str:
        return f"{self.dimension}/{self.name}"


def _higher_unit(v: float) -> float:
    return _unit(v)


def _lower_unit(v: float) -> float:
    return _unit(1.0 - v)


def _lower_unbounded(v: float) -> float:
    return 1.0 / (1.0 + max(v, 0.0))


def _lift(v: float) -> float:  # popularity lift lies in [-1, 1]; 0 = lists as popular as the history
    return _unit(1.0 - abs(v))


METRICS: dict[str, TrustMetric] = {
    m.key: m
    for m in (
        TrustMetric("utility", "ndcg@10", True, _higher_unit, "full-ranking NDCG@10 on the audited users"),
        TrustMetric("utility", "hr@10", True, _higher_unit, "full-ranking HR@10 on the audited users"),
        TrustMetric(
            "utility",
            "tstr_ratio",
            True,
            _higher_unit,
            "test NDCG@10 trained on synthetic / trained on real sequences (TSTR), capped at 1",
        ),
        TrustMetric("fidelity", "precision", True, _higher_unit, "k-NN precision of generated vs real"),
        TrustMetric("fidelity", "recall", True, _higher_unit, "k-NN recall of generated vs real"),
        TrustMetric("fidelity", "density", True, lambda v: _unit(v), "k-NN density (1 = as dense as real)"),
        TrustMetric("fidelity", "coverage", True, _higher_unit, "k-NN coverage of the real set"),
        TrustMetric("fidelity", "frechet", False, _lower_unbounded, "Frechet distance of Gaussian fits"),
        TrustMetric("privacy", "mia_advantage", False, _lower_unit, "2|AUC-0.5| of a loss-based MIA"),
        TrustMetric("privacy", "dcr_ratio", True, _higher_unit, "DCR(generated)/DCR(held-out), capped at 1"),
        TrustMetric("privacy", "copy_rate", False, _lower_unit, "share of generated records copied"),
        TrustMetric("bias", "popularity_lift", False, _lift, "rec. minus history popularity percentile"),
        TrustMetric("bias", "exposure_gini", False, _lower_unit, "Gini of item exposure in top-K lists"),
        TrustMetric("bias", "coverage", True, _higher_unit, "share of the catalogue in any top-K list"),
        TrustMetric(
            "bias", "activity_disparity", False, _lower_unit, "NDCG@10 max-min over activity deciles"
        ),
        TrustMetric("bias", "gender_disparity", False, _lower_unit, "NDCG@10 max-min over genders"),
        TrustMetric("bias", "age_disparity", False, _lower_unit, "NDCG@10 max-min over age groups"),
        TrustMetric("robustness", "perturb_drop", False, _lower_unit, "mean relative NDCG@10 drop"),
        TrustMetric("robustness", "worst_drop", False, _lower_unit, "largest relative NDCG@10 drop"),
        TrustMetric(
            "robustness",
            "injection_asr",
            False,
            _lower_unit,
            "prompt-injection attack success rate through the instructor (fidelity issue's suite)",
        ),
    )
}


def metric(key: str) -> TrustMetric:
    """The registered metric ``<dimension>/<name>``; unknown keys are an error (no silent direction)."""
    try:
        return METRICS[key]
    except KeyError:
        raise KeyError(f"unknown trust metric {key!r}; known: {sorted(METRICS)}") from None


def finite(values: dict[str, float]) -> dict[str, float]:
    """Drops NaN/inf entries (a metric that could not be computed is left out, not scored as 0)."""
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}

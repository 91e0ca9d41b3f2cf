"""The trust index: metrics normalised across candidates (ECDF) or absolutely, weighted by dimension.

ECDF normalisation: for candidate c and a higher-is-better metric, the score is the share of
candidates whose value is <= c's (lower-is-better: >=). The best candidate scores 1, the worst
1/C, ties share a score; with a single candidate every score is 1 (nothing to compare against).
A dimension's score is the mean of its metrics' scores; the index is the weight-averaged mean of
the dimension scores over the dimensions that have a positive weight and at least one metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from generec.trust.metrics import DIMENSIONS, finite, metric

DEFAULT_WEIGHTS = {"utility": 1.0, "fidelity": 1.0, "privacy": 1.0, "bias": 1.0, "robustness": 1.0}


@dataclass
class TrustScore:
    index: float
    dimensions: dict[str, float]
    normalised: dict[str, float]
    weights: dict[str, float] = field(default_factory=dict)

    def as_record(self, metrics: Mapping[str, float], reference: str) -> dict:
        """The ``record["trust"]`` block: index, per-dimension scores, raw metrics, weights, reference."""
        return {
            "index": self.index,
            "dimensions": self.dimensions,
            "metrics": dict(metrics),
            "normalised": self.normalised,
            "weights": self.weights,
            "reference": reference,
        }


def ecdf_scores(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """[C] raw values -> [C] ECDF scores in (0, 1], 1 = best; NaN stays NaN and is not counted."""
    values = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(values)
    ref = values[ok]
    out = np.full(len(values), np.nan)
    if higher_is_better:
        out[ok] = (ref[None, :] <= ref[:, None]).sum(1) / len(ref)
    else:
        out[ok] = (ref[None, :] >= ref[:, None]).sum(1) / len(ref)
    return out


def _check_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = set(weights) - set(DIMENSIONS)
    if unknown:
        raise ValueError(f"unknown trust dimensions in weights: {sorted(unknown)}; known: {DIMENSIONS}")
    if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
        raise ValueError(f"trust weights must be >= 0 with at least one > 0, got {weights}")
    return {d: float(w) for d, w in weights.items()}


def combine(normalised: Mapping[str, float], weights: Mapping[str, float] | None = None) -> TrustScore:
    """Per-metric scores in [0, 1] (keys ``<dimension>/<name>``) -> dimension scores and the index."""
    weights = _check_weights(weights)
    by_dim: dict[str, list[float]] = {}
    for key, v in normalised.items():
        if v == v:  # not NaN
            by_dim.setdefault(metric(key).dimension, []).append(float(v))
    dims = {d: float(np.mean(vs)) for d, vs in by_dim.items()}
    used = {d: w for d, w in weights.items() if w > 0 and d in dims}
    index = sum(w * dims[d] for d, w in used.items()) / sum(used.values()) if used else float("nan")
    return TrustScore(float(index), dims, dict(normalised), weights)


def trust_index(
    candidates: Mapping[str, Mapping[str, float]], weights: Mapping[str, float] | None = None
) -> dict[str, TrustScore]:
    """ECDF-normalised trust index of every candidate against the others.

    ``candidates``: {name: {"<dimension>/<name>": raw value}}; a metric missing (or NaN) for a
    candidate is simply not scored for it. Unknown metric keys raise.
    """
    cands = {c: finite(m) for c, m in candidates.items()}
    keys = sorted({k for m in cands.values() for k in m})
    names = list(cands)
    normalised: dict[str, dict[str, float]] = {c: {} for c in names}
    for key in keys:
        spec = metric(key)
        col = np.array([cands[c].get(key, np.nan) for c in names])
        for c, s in zip(names, ecdf_scores(col, spec.higher_is_better), strict=True):
            if s == s:
                normalised[c][key] = float(s)
    return {c: combine(normalised[c], weights) for c in names}


def absolute_index(metrics: Mapping[str, float], weights: Mapping[str, float] | None = None) -> TrustScore:
    """Index from each metric's fixed [0, 1] mapping (no reference set): comparable across time."""
    normalised = {k: metric(k).absolute(v) for k, v in finite(metrics).items()}
    return combine(normalised, weights)

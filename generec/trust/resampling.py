"""Generate-check-regenerate with an imperfect verifier: accuracy(K), its ceiling, and K_opt.

Model (after Stroebl, Kapoor & Narayanan, "Inference Scaling fLaws", 2024): a sample is correct with
probability p (p may differ per query); the verifier accepts a correct sample with probability TPR and an
incorrect one with FPR, independently per sample. With a budget of K samples the first accepted sample
is shown; if none is accepted the K-th (last) is shown. Per query, with a = p TPR, b = (1-p) FPR,
r = 1 - a - b (a sample is rejected):

    accuracy(K) = A + r^K (c - A),   A = a / (a + b)  (the ceiling as K -> inf),  c = p (1-TPR) / r
    E[samples](K) = (1 - r^K) / (1 - r)

No amount of resampling beats A: an imperfect verifier lets false positives through at a fixed rate.
The expected cost of a budget K is ``fp_cost * (1 - accuracy) + sample_cost * E[samples]``, averaged over
queries; with queries of different difficulty the extra samples help mid-difficulty queries and mostly buy
false positives or wasted draws on hard ones, so the optimum K_opt is finite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VerifierRates:
    """Verifier operating point measured on held-out data (counts kept so the estimate can be judged)."""

    tpr: float
    fpr: float
    positives: int = 0
    negatives: int = 0

    @classmethod
    def from_labels(cls, correct: np.ndarray, accepted: np.ndarray) -> VerifierRates:
        """TPR = P(accept | correct), FPR = P(accept | incorrect) from boolean arrays of the same shape."""
        correct, accepted = np.asarray(correct, bool).ravel(), np.asarray(accepted, bool).ravel()
        if correct.shape != accepted.shape:
            raise ValueError(f"correct {correct.shape} and accepted {accepted.shape} differ in shape")
        pos, neg = int(correct.sum()), int((~correct).sum())
        tpr = float(accepted[correct].mean()) if pos else float("nan")
        fpr = float(accepted[~correct].mean()) if neg else float("nan")
        return cls(tpr, fpr, pos, neg)


def _parts(p: np.ndarray, tpr: float, fpr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = p * tpr
    b = (1.0 - p) * fpr
    return a, b, 1.0 - a - b


def accuracy_ceiling(p: float | np.ndarray, tpr: float, fpr: float) -> float:
    """lim_{K->inf} accuracy: P(correct | accepted) = p TPR / (p TPR + (1-p) FPR), averaged over queries."""
    p = np.atleast_1d(np.asarray(p, float))
    a, b, _ = _parts(p, tpr, fpr)
    acc_inf = np.where(a + b > 0, a / np.where(a + b > 0, a + b, 1.0), p)  # nothing ever accepted: last = any
    return float(acc_inf.mean())


def accuracy_at(p: float | np.ndarray, tpr: float, fpr: float, ks: Sequence[int]) -> np.ndarray:
    """Expected accuracy for each budget in ``ks`` (mean over the queries' p): [len(ks)]."""
    p = np.atleast_1d(np.asarray(p, float))[:, None]  # [Q, 1]
    k = np.asarray(ks, float)[None, :]  # [1, K]
    a, b, r = _parts(p, tpr, fpr)
    ceiling = np.where(a + b > 0, a / np.where(a + b > 0, a + b, 1.0), p)
    last = np.where(r > 0, p * (1.0 - tpr) / np.where(r > 0, r, 1.0), 0.0)  # P(correct | rejected)
    return (ceiling + r**k * (last - ceiling)).mean(0)


def expected_samples(p: float | np.ndarray, tpr: float, fpr: float, ks: Sequence[int]) -> np.ndarray:
    """Expected number of samples drawn with each budget (stop at the first accepted): [len(ks)]."""
    p = np.atleast_1d(np.asarray(p, float))[:, None]
    k = np.asarray(ks, float)[None, :]
    _, _, r = _parts(p, tpr, fpr)
    geometric = np.where(r < 1, (1.0 - r**k) / np.where(r < 1, 1.0 - r, 1.0), k)
    return geometric.mean(0)


def expected_cost(
    p: float | np.ndarray, tpr: float, fpr: float, ks: Sequence[int], fp_cost: float, sample_cost: float = 1.0
) -> np.ndarray:
    """fp_cost x P(a wrong item is shown) + sample_cost x E[samples], for each budget: [len(ks)]."""
    acc = accuracy_at(p, tpr, fpr, ks)
    return fp_cost * (1.0 - acc) + sample_cost * expected_samples(p, tpr, fpr, ks)


def optimal_k(
    p: float | np.ndarray,
    tpr: float,
    fpr: float,
    fp_cost: float,
    sample_cost: float = 1.0,
    k_max: int = 64,
) -> int:
    """The budget in 1..k_max with the least expected cost (the smallest one on ties)."""
    ks = np.arange(1, k_max + 1)
    cost = expected_cost(p, tpr, fpr, ks, fp_cost, sample_cost)
    return int(ks[int(np.argmin(np.round(cost, 12)))])


def empirical_accuracy(correct: np.ndarray, accepted: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """Measured accuracy of first-accepted-else-last over each query's ordered samples.

    correct, accepted: [Q, K_max] booleans (sample j of query q); returns [len(ks)], each K <= K_max.
    """
    correct, accepted = np.asarray(correct, bool), np.asarray(accepted, bool)
    q, k_max = correct.shape
    out = []
    for k in ks:
        if not 1 <= k <= k_max:
            raise ValueError(f"budget {k} outside 1..{k_max} samples per query")
        acc = accepted[:, :k]
        first = np.where(acc.any(1), acc.argmax(1), k - 1)  # [Q] index of the shown sample
        out.append(correct[np.arange(q), first].mean())
    return np.asarray(out, float)

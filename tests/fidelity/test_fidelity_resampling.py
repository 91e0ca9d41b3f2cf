"""The resampling model against hand-worked numbers, and the empirical first-accepted-else-last curve."""

from __future__ import annotations

import numpy as np
import pytest

from generec.trust.resampling import (
    VerifierRates,
    accuracy_at,
    accuracy_ceiling,
    empirical_accuracy,
    expected_cost,
    expected_samples,
    optimal_k,
)


def test_single_query_by_hand():
    # p = 0.5, TPR = 0.8, FPR = 0.2: a = 0.4, b = 0.1, r = 0.5, ceiling A = 0.8, P(correct | rejected) = 0.2
    # accuracy(K) = 0.8 + 0.5^K (0.2 - 0.8): 0.5, 0.65, 0.725; E[samples] = (1 - 0.5^K) / 0.5: 1, 1.5, 1.75
    assert accuracy_at(0.5, 0.8, 0.2, [1, 2, 3]) == pytest.approx([0.5, 0.65, 0.725])
    assert expected_samples(0.5, 0.8, 0.2, [1, 2, 3]) == pytest.approx([1.0, 1.5, 1.75])
    assert accuracy_ceiling(0.5, 0.8, 0.2) == pytest.approx(0.8)
    assert accuracy_at(0.5, 0.8, 0.2, [200])[0] == pytest.approx(0.8)
    # cost = fp_cost (1 - acc) + E[samples]; each extra sample changes it by 0.5^K (1 - fp_cost * 0.5 * 0.6):
    # fp_cost = 1 -> every extra sample costs more than it saves -> K_opt = 1
    assert expected_cost(0.5, 0.8, 0.2, [1, 2], fp_cost=1.0) == pytest.approx([1.5, 1.85])
    assert optimal_k(0.5, 0.8, 0.2, fp_cost=1.0) == 1


def test_k_opt_with_an_easy_and_a_hopeless_query_by_hand():
    # q1: p = 0.5 (as above); q2: p = 0 (never correct: a = 0, b = 0.2, r = 0.8, accuracy 0).
    # fp_cost = 20. Marginal cost of K -> K+1: q1: 0.5^K (1 - 20 * 0.5 * 0.6) = -5 * 0.5^K; q2: +0.8^K.
    # Sum over both: K=1->2: -2.5 + 0.8 = -1.7; 2->3: -1.25 + 0.64 = -0.61; 3->4: -0.625 + 0.512 = -0.113;
    # 4->5: -0.3125 + 0.4096 = +0.0971  => K_opt = 4.
    # Mean cost at K=1: (20 * 0.5 + 1 + 20 + 1) / 2 = 16; at K=4: 16 + (-1.7 - 0.61 - 0.113) / 2 = 14.7885.
    p = np.array([0.5, 0.0])
    assert expected_cost(p, 0.8, 0.2, [1, 4], fp_cost=20.0) == pytest.approx([16.0, 14.7885])
    assert optimal_k(p, 0.8, 0.2, fp_cost=20.0) == 4


def test_rates_and_empirical_curve_match_the_model_on_simulated_samples():
    rng = np.random.default_rng(0)
    q, k_max, p, tpr, fpr = 20000, 6, 0.3, 0.7, 0.1
    correct = rng.random((q, k_max)) < p
    accepted = np.where(correct, rng.random((q, k_max)) < tpr, rng.random((q, k_max)) < fpr)
    rates = VerifierRates.from_labels(correct, accepted)
    assert rates.tpr == pytest.approx(tpr, abs=0.01) and rates.fpr == pytest.approx(fpr, abs=0.01)
    ks = [1, 2, 4, 6]
    measured = empirical_accuracy(correct, accepted, ks)
    assert measured == pytest.approx(accuracy_at(p, rates.tpr, rates.fpr, ks), abs=0.015)
    with pytest.raises(ValueError, match="outside"):
        empirical_accuracy(correct, accepted, [7])

"""ECDF normalisation, direction, weighting and the absolute index."""

from __future__ import annotations

import numpy as np
import pytest

from generec.trust.index import absolute_index, combine, ecdf_scores, trust_index


def test_ecdf_scores_are_direction_aware_and_share_ties():
    assert ecdf_scores(np.array([0.1, 0.3, 0.2]), True).tolist() == pytest.approx([1 / 3, 1.0, 2 / 3])
    assert ecdf_scores(np.array([0.1, 0.3, 0.2]), False).tolist() == pytest.approx([1.0, 1 / 3, 2 / 3])
    assert ecdf_scores(np.array([0.5, 0.5, 0.1]), True).tolist() == pytest.approx([1.0, 1.0, 1 / 3])
    out = ecdf_scores(np.array([0.5, np.nan]), True)
    assert out[0] == 1.0 and np.isnan(out[1])


def test_trust_index_weights_dimensions():
    cands = {
        "a": {"utility/ndcg@10": 0.3, "bias/exposure_gini": 0.9},  # accurate, concentrated
        "b": {"utility/ndcg@10": 0.1, "bias/exposure_gini": 0.5},  # less accurate, fairer exposure
    }
    even = trust_index(cands, {"utility": 1, "bias": 1})
    assert even["a"].dimensions == {"utility": 1.0, "bias": 0.5}
    assert even["b"].dimensions == {"utility": 0.5, "bias": 1.0}
    assert even["a"].index == even["b"].index == pytest.approx(0.75)
    acc = trust_index(cands, {"utility": 3, "bias": 1})
    assert acc["a"].index == pytest.approx((3 * 1.0 + 0.5) / 4)
    assert acc["b"].index == pytest.approx((3 * 0.5 + 1.0) / 4)
    only_bias = trust_index(cands, {"utility": 0, "bias": 1})
    assert only_bias["b"].index == 1.0 and only_bias["a"].index == 0.5
    assert only_bias["a"].weights == {"utility": 0.0, "bias": 1.0}


def test_dimension_score_is_the_mean_of_its_metrics():
    s = combine({"bias/coverage": 1.0, "bias/exposure_gini": 0.5, "privacy/mia_advantage": 0.2})
    assert s.dimensions == {"bias": 0.75, "privacy": 0.2}
    assert s.index == pytest.approx((0.75 + 0.2) / 2)  # dimensions without metrics do not count


def test_bad_inputs_raise():
    with pytest.raises(KeyError):
        trust_index({"a": {"utility/unknown": 1.0}})
    with pytest.raises(ValueError):
        trust_index({"a": {"utility/ndcg@10": 1.0}}, {"vibes": 1.0})
    with pytest.raises(ValueError):
        trust_index({"a": {"utility/ndcg@10": 1.0}}, {"utility": 0.0})


def test_absolute_index_uses_fixed_maps():
    s = absolute_index(
        {"utility/ndcg@10": 0.4, "privacy/mia_advantage": 0.2, "bias/popularity_lift": -0.5}, {"utility": 1}
    )
    assert s.normalised == pytest.approx(
        {"utility/ndcg@10": 0.4, "privacy/mia_advantage": 0.8, "bias/popularity_lift": 0.5}
    )
    assert s.index == pytest.approx(0.4)  # only utility is weighted

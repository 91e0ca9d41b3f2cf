"""Fidelity metrics on constructed sets with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from generec.trust.generation_fidelity import fidelity_metrics, frechet_distance, item_space, prdc


def test_identical_sets_have_perfect_fidelity():
    real = np.random.default_rng(0).normal(size=(200, 8))
    m = fidelity_metrics(real, real.copy(), k=5)
    assert m["fidelity/precision"] == 1.0
    assert m["fidelity/recall"] == 1.0
    assert m["fidelity/coverage"] == 1.0
    assert m["fidelity/frechet"] == pytest.approx(0.0, abs=1e-8)


def test_far_away_set_has_zero_precision_and_coverage():
    real = np.random.default_rng(1).normal(size=(150, 4))
    m = prdc(real, real + 100.0, k=3)
    assert m == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_frechet_of_a_shifted_copy_is_the_squared_shift():
    real = np.random.default_rng(2).normal(size=(300, 5))
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    # Same covariance, means differ by `shift`: FD = ||shift||^2 exactly.
    assert frechet_distance(real, real + shift) == pytest.approx(float(shift @ shift), rel=1e-6)


def test_collapsed_generator_keeps_precision_but_loses_recall():
    real = np.random.default_rng(3).normal(size=(200, 3))
    fake = np.repeat(real[:1], 200, axis=0)  # every generated point is the same real point
    m = prdc(real, fake, k=5)
    assert m["precision"] == 1.0
    assert m["recall"] == pytest.approx(1 / 200)
    assert m["coverage"] < 0.05


def test_item_space_is_fixed_and_leaves_padding_zero():
    items = np.array([1, 2, 3, 1, 2, 4, 2, 3, 4, 1])
    offsets = np.array([0, 3, 6, 10])
    train_end = np.array([3, 3, 4])
    a = item_space(items, offsets, train_end, num_items=4, dim=2, seed=0)
    b = item_space(items, offsets, train_end, num_items=4, dim=2, seed=0)
    assert a.shape == (5, 2)
    assert np.allclose(a, b)
    assert np.all(a[0] == 0)

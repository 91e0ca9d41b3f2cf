"""Privacy metrics: a memorising generator must be caught; AUC on known cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generec.trust.privacy import auc, generator_privacy, membership_inference


def test_memorising_vector_generator_is_caught():
    rng = np.random.default_rng(0)
    train, holdout = rng.normal(size=(300, 6)), rng.normal(size=(100, 6))
    copied = train[rng.integers(0, 300, 100)]  # a generator that replays training records
    fresh = rng.normal(size=(100, 6))  # one that samples the same distribution anew
    bad = generator_privacy(copied, train, holdout)
    good = generator_privacy(fresh, train, holdout)
    assert bad["privacy/copy_rate"] == 1.0 and bad["privacy/dcr_ratio"] == 0.0
    assert good["privacy/copy_rate"] == 0.0
    assert 0.7 < good["privacy/dcr_ratio"] < 1.4


def test_memorising_sequence_generator_is_caught():
    g = torch.Generator().manual_seed(0)
    train = torch.randint(1, 500, (200, 12), generator=g)
    holdout = torch.randint(1, 500, (50, 12), generator=g)
    copies = train[:50].clone()
    copies[:, :3] = 0  # the last 9 items of a record: a near copy (a subset), not an exact one
    exact = train[50:100]
    m = generator_privacy(exact, train, holdout, kind="sequences")
    assert m["privacy/copy_rate"] == 1.0 and m["privacy/dcr_ratio"] == 0.0
    partial = generator_privacy(copies, train, holdout, kind="sequences")
    assert partial["privacy/copy_rate"] == 0.0  # subsets are close (Jaccard 0.25) but not copies
    assert partial["privacy/dcr_ratio"] < 0.5


def test_auc_known_values():
    assert auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert auc(np.array([0.0]), np.array([1.0])) == 0.0
    assert auc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5  # ties count one half
    assert auc(np.array([1.0, 3.0]), np.array([2.0])) == 0.5


def test_membership_inference_from_losses():
    leak = membership_inference(np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0]))
    assert leak["privacy/mia_auc"] == 1.0 and leak["privacy/mia_advantage"] == 1.0
    none = membership_inference(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    assert none["privacy/mia_advantage"] == pytest.approx(0.0)

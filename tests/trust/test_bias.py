"""Bias metrics: known Gini values, and an always-most-popular model audited end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from generec.data.datamodule import SeqDataModule
from generec.models.base import SeqRecModule
from generec.trust.audit import AuditConfig, AuditData, audit_model
from generec.trust.bias import activity_deciles, age_groups, gini, group_disparity, popularity_percentile


class FixedScores(SeqRecModule):
    """Scores every user with the same vector (e.g. item popularity): a seam-only test model."""

    def __init__(self, num_items: int, scores: torch.Tensor) -> None:
        super().__init__(num_items)
        self.register_buffer("fixed", scores.float())

    def item_embeddings(self) -> torch.Tensor:
        return torch.zeros(self.num_items + 1, 1)

    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fixed[None, :].expand(batch["input_ids"].shape[0], -1).clone()  # [B, I + 1]


@pytest.fixture(scope="module")
def skewed(tmp_path_factory) -> SeqDataModule:
    """Users draw items from a Zipf-like law over 80 items, so popularity is strongly skewed."""
    rng = np.random.default_rng(0)
    p = 1.0 / np.arange(1, 81)
    p /= p.sum()
    lines = [f"u{u}\ti{i}" for u in range(150) for i in rng.choice(80, size=rng.integers(6, 15), p=p) + 1]
    path = Path(tmp_path_factory.mktemp("skewed")) / "skewed.txt"
    path.write_text("\n".join(lines) + "\n")
    dm = SeqDataModule(registry=None, path=str(path), max_len=20)
    dm.setup("fit")
    return dm


def test_gini_known_values():
    assert gini(np.ones(10)) == 0.0
    assert gini(np.array([0, 0, 0, 5.0])) == pytest.approx(0.75)  # (n - 1) / n
    x = np.zeros(20)
    x[:5] = 7
    assert gini(x) == pytest.approx(1 - 5 / 20)  # K equal values among n: 1 - K/n


def test_groups_and_percentiles():
    assert popularity_percentile(np.array([0, 5, 1, 3])).tolist() == pytest.approx([0, 1.0, 1 / 3, 2 / 3])
    assert np.bincount(activity_deciles(np.arange(100))).tolist() == [10] * 10
    assert age_groups(["7", "25", "44", "60", "x"]).tolist() == ["<25", "25-34", "35-44", "55+", "?"]
    gap, stats = group_disparity(np.array([1.0] * 10 + [0.0] * 10), np.array(["a"] * 10 + ["b"] * 10))
    assert gap == 1.0 and stats == {"a": (1.0, 10), "b": (0.0, 10)}


def test_always_most_popular_has_maximal_popularity_bias(skewed):
    cfg = AuditConfig(split="test", list_k=5, dimensions=("bias",), mask_history_lists=False)
    data = AuditData.from_datamodule(skewed, cfg)
    n = skewed.num_items
    popular = audit_model(FixedScores(n, torch.from_numpy(data.counts)), data, cfg)
    rand = audit_model(
        FixedScores(n, torch.randn(n + 1, generator=torch.Generator().manual_seed(0))), data, cfg
    )
    # Every user gets the same 5 items: exposure Gini 1 - 5/I and coverage 5/I, the extremes for K = 5.
    assert popular.metrics["bias/exposure_gini"] == pytest.approx(1 - 5 / n)
    assert popular.metrics["bias/coverage"] == pytest.approx(5 / n)
    # The lists hold the 5 most popular items: the largest mean popularity percentile any list can have.
    assert popular.details["rec_popularity_pct"] == pytest.approx(np.sort(data.pct[1:])[-5:].mean())
    assert popular.metrics["bias/popularity_lift"] > rand.metrics["bias/popularity_lift"] + 0.2
    curve = popular.details["popularity_curve"]
    assert sum(curve["rec_share"][-2:]) == pytest.approx(1.0)  # all slots in the top popularity bins

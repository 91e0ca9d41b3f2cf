"""Synthetic training sequences for TSTR on the real ml-100k: only training targets change, files round-trip."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from generec.data.batching import prefix_targets
from generec.data.datamodule import SeqDataModule
from generec.trust.synthetic import synthetic_items, write_sequences


@pytest.fixture(scope="module")
def ml100k(shared_data_dir):
    os.environ["GENEREC_DATA_DIR"] = str(shared_data_dir)
    dm = SeqDataModule(registry="ml-100k", max_len=20, batch_size=128)
    dm.setup("fit")
    return dm


def _held_out_and_first(dm, items):
    d, end = dm.data, dm.split.train_end
    starts = d.offsets[:-1]
    return items[starts], items[starts + end], items[starts + end + 1]  # first, valid, test


@pytest.mark.parametrize("generator", ["random", "popularity"])
def test_only_training_targets_change(ml100k, generator):
    d, end = ml100k.data, ml100k.split.train_end
    items = synthetic_items(d, end, generator, seed=3)
    for real, fake in zip(
        _held_out_and_first(ml100k, d.items), _held_out_and_first(ml100k, items), strict=True
    ):
        np.testing.assert_array_equal(real, fake)
    _, pos = prefix_targets(d.offsets, end)
    changed = np.ones(len(items), dtype=bool)
    changed[pos] = False
    np.testing.assert_array_equal(items[changed], d.items[changed])
    assert (items[pos] != d.items[pos]).mean() > 0.9  # 1682 items: a draw rarely equals the real one
    assert items.min() >= 1 and items.max() <= d.num_items
    if generator == "popularity":  # only items seen in training can be drawn
        from generec.trust.bias import item_counts

        assert (item_counts(d.items, d.offsets, end, d.num_items)[items[pos]] > 0).all()
    np.testing.assert_array_equal(items, synthetic_items(d, end, generator, seed=3))  # seeded


def test_copy_round_trips_through_a_sequences_file(ml100k, tmp_path):
    d = ml100k.data
    items = synthetic_items(d, ml100k.split.train_end, "copy")
    path = write_sequences(tmp_path / "copy.txt", d, items)
    back = SeqDataModule(path=str(path), format="sequences", max_len=20)
    back.setup("fit")
    b = back.data
    assert (b.num_users, b.num_items, len(b.items)) == (d.num_users, d.num_items, len(d.items))
    # same sequences in original ids, user by user
    for u in (0, 17, d.num_users - 1):
        real = [d.item_tokens[i] for i in d.sequence(u)]
        v = list(b.user_tokens).index(d.user_tokens[u])
        assert [b.item_tokens[i] for i in b.sequence(v)] == real


def test_creator_items_stay_in_the_catalogue(ml100k):
    from generec.generative.creator import Creator, CreatorConfig
    from generec.models.sasrec import SASRec

    d, end = ml100k.data, ml100k.split.train_end
    torch.manual_seed(0)
    model = SASRec(d.num_items, max_len=20, hidden_size=16, num_layers=1, num_heads=1, inner_size=32).eval()
    creator = Creator(16, 16, 4, CreatorConfig(hidden=32, layers=1, time_dim=8, sample_steps=2)).eval()
    keep = d.offsets[:40]  # a small subset of users keeps the test fast
    sub_end = end.copy()
    sub_end[40:] = 0
    items = synthetic_items(d, sub_end, "creator", model=model, creator=creator, max_len=20, batch_size=512)
    _, pos = prefix_targets(d.offsets, sub_end)
    assert len(pos) > 0 and pos.max() < keep[-1] + d.lengths[39]
    assert items[pos].min() >= 1 and items[pos].max() <= d.num_items
    with pytest.raises(ValueError, match="needs the recommender"):
        synthetic_items(d, end, "creator")
    with pytest.raises(ValueError, match="generator must be one of"):
        synthetic_items(d, end, "gan")


def test_ids_with_whitespace_are_refused(ml100k, tmp_path):
    import dataclasses

    d = ml100k.data
    bad = dataclasses.replace(d, user_tokens=np.array(["a b", *d.user_tokens[1:]], dtype=object))
    with pytest.raises(ValueError, match="whitespace"):
        write_sequences(tmp_path / "x.txt", bad, d.items)
    assert not (tmp_path / "x.txt").exists()

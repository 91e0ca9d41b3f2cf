"""The ComiRec user split: disjoint users, history before targets, no target item in the history."""

from __future__ import annotations

import numpy as np
import pytest

from generec.data.preprocess import SPLITTERS, load_dataset
from generec.data.splits import comirec_user_split
from generec.data.types import SequenceData


def toy(seqs: list[list[int]]) -> SequenceData:
    lens = np.array([len(s) for s in seqs])
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    n_items = max(max(s) for s in seqs)
    return SequenceData(
        name="toy",
        items=np.concatenate(seqs).astype(np.int64),
        offsets=offsets,
        user_tokens=np.array([f"u{i}" for i in range(len(seqs))], dtype=object),
        item_tokens=np.array(["[PAD]"] + [f"i{i}" for i in range(1, n_items + 1)], dtype=object),
    )


def check_split(data: SequenceData, split) -> None:
    valid, test = split.eval_users["valid"], split.eval_users["test"]
    train = split.train_users
    assert not (set(valid) & set(test)) and not (set(train) & (set(valid) | set(test)))
    assert len(set(train) | set(valid) | set(test)) == data.num_users
    assert (split.train_end[train] == data.lengths[train]).all()
    assert (split.train_end[np.concatenate([valid, test])] == 0).all()  # evaluated users never train
    for which in ("valid", "test"):
        users, ends, targets = split.examples(which)
        assert targets.ndim == 2 and (targets[:, 0] > 0).all()
        for u, e, t in zip(users, ends, targets, strict=True):
            seq = data.sequence(u)
            history, real = set(seq[:e].tolist()), t[t > 0]
            assert 1 <= e < len(seq) and e == max(1, min(len(seq) - 1, int(0.8 * len(seq))))
            assert not (set(real.tolist()) & history), (u, history, real)
            assert len(set(real.tolist())) == len(real)  # each target once
            assert set(real.tolist()) == set(seq[e:].tolist()) - history  # nothing else dropped
            assert (t[len(real) :] == 0).all()  # padding only at the end


def test_toy_split_drops_targets_seen_in_history_and_dedups():
    seqs = [[1, 2, 3, 4, 1, 5, 5, 2, 6, 7]] * 30 + [[8, 9]] * 10 + [[3]] * 5
    data = toy([list(s) for s in seqs])
    split = comirec_user_split(data, seed=3)
    check_split(data, split)
    users, ends, targets = split.examples("test")
    long_users = users[data.lengths[users] == 10]
    if len(long_users):
        row = targets[np.searchsorted(users, long_users[0])]
        assert row[row > 0].tolist() == [6, 7]  # future 2, 6, 7 minus the seen 2
    assert not (set(np.flatnonzero(data.lengths < 2)) & set(np.concatenate(list(split.eval_users.values()))))


def test_split_is_seeded_and_80_10_10():
    data = toy([[1 + (u + t) % 9 for t in range(6)] for u in range(1000)])
    a, b, c = (
        comirec_user_split(data, seed=0),
        comirec_user_split(data, seed=0),
        comirec_user_split(data, seed=1),
    )
    assert np.array_equal(a.eval_users["test"], b.eval_users["test"])
    assert not np.array_equal(a.eval_users["test"], c.eval_users["test"])
    assert (len(a.train_users), len(a.eval_users["valid"]), len(a.eval_users["test"])) == (800, 100, 100)
    assert "comirec" in SPLITTERS
    with pytest.raises(ValueError):
        comirec_user_split(data, ratios=(0.5, 0.5, 0.5))


def test_real_beauty_split_never_leaks_targets(shared_data_dir, tmp_path):
    data = load_dataset("beauty", data_dir=shared_data_dir, cache_dir=tmp_path, download=False)
    split = SPLITTERS["comirec"](data)
    check_split(data, split)
    users, _, targets = split.examples("test")
    assert len(users) > 0.09 * data.num_users and targets.shape[1] >= 2


def test_multi_interest_benchmarks_are_registered_with_their_sources():
    from generec.data.registry import REGISTRY

    assert REGISTRY["books"].urls["ratings_Books.csv"].startswith("http")
    for name in ("gowalla", "retailrocket", "taobao"):
        assert "http" in REGISTRY[name].description and REGISTRY[name].defaults["min_user_inter"] == 5

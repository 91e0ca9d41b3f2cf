"""Preprocessing: id remapping, dedup, k-core, ordering, leave-one-out split, processed cache."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from generec.data import formats
from generec.data.formats import read_interactions, read_item_table
from generec.data.preprocess import (
    SPLITTERS,
    build_sequences,
    examples,
    leave_one_out_split,
    load_dataset,
)
from generec.data.types import RawInteractions, SequenceData, SideTable


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Never write into the repo's ./data or pick up a developer's mirror."""
    monkeypatch.setenv("GENEREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GENEREC_DATA_MIRROR", raising=False)


def _raw(users, items, ts=None, rows=None) -> RawInteractions:
    n = len(users)
    return RawInteractions(
        users=np.array([str(u) for u in users], dtype=object),
        items=np.array([str(i) for i in items], dtype=object),
        timestamps=None if ts is None else np.asarray(ts, dtype=np.float64),
        rows=np.arange(1, n + 1) if rows is None else np.asarray(rows),
        source="<test>",
    )


def _seqs(data: SequenceData) -> dict[str, list[str]]:
    """{user token: [item tokens in order]} for readable assertions."""
    return {
        data.user_tokens[u]: [data.item_tokens[i] for i in data.sequence(u)] for u in range(data.num_users)
    }


@pytest.fixture(scope="module")
def beauty(shared_data_dir) -> SequenceData:
    raw = read_interactions(shared_data_dir / "beauty" / "Beauty.txt")
    side = read_item_table(shared_data_dir / "beauty" / "Beauty_items.tsv")
    return build_sequences(raw, name="beauty", item_side=side)


# ----------------------------------------------------------------------------- real data


def test_beauty_counts_and_identity_remap(beauty, shared_data_dir):
    assert (beauty.num_users, beauty.num_items, len(beauty.items)) == (22_363, 12_101, 198_502)
    assert beauty.item_tokens[0] == "[PAD]"
    # S3-Rec ids are first-appearance ids already: remapping must be the identity
    assert all(int(tok) == i for i, tok in enumerate(beauty.item_tokens[1:], start=1))
    assert beauty.user_tokens.tolist() == [str(u) for u in range(1, 22_364)]
    # and every sequence is the file's line, item for item
    lines = (shared_data_dir / "beauty" / "Beauty.txt").read_text().split("\n")
    for u in (0, 1, 777, 22_362):
        assert beauty.sequence(u).tolist() == [int(x) for x in lines[u].split()[1:]]
    assert beauty.item_side["title"][0] == ""  # padding
    assert beauty.item_side["title"][1].startswith("OPI Nail Lacquer")
    assert beauty.stats["dropped_duplicates"] == 0 and beauty.stats["kcore_removed_items"] == 0


def test_beauty_loo_split(beauty):
    split = leave_one_out_split(beauty)
    assert len(split.eval_users) == 22_363 and len(split.short_users) == 0  # every user has >= 5
    assert np.array_equal(split.train_end, beauty.lengths - 2)
    users, hist_end, target = examples(split, "test")
    assert target[0] == 5 and hist_end[0] == 4  # user 1: "1 2 3 4 5"
    v_users, v_end, v_target = examples(split, "valid")
    assert np.array_equal(users, v_users) and np.array_equal(v_end, hist_end - 1) and v_target[0] == 4


def test_games_titles_join_zero_based_ids(shared_data_dir):
    folder = shared_data_dir / "amazon_games_llmrank"
    data = build_sequences(
        read_interactions(folder / "Games.txt"),
        name="games",
        item_side=read_item_table(folder / "Games.item"),
    )
    assert (data.num_users, data.num_items, len(data.items)) == (50_546, 16_859, 440_264)
    assert data.item_tokens[1] == "0"  # original id 0 becomes 1: 0 stays free for padding
    assert data.item_side["title"][1] == "Fire Emblem: The Sacred Stones"
    assert all(data.item_side["title"][1:])  # every item has a title


def test_ml100k_tie_break_is_file_order(shared_data_dir):
    """ml-100k has many equal timestamps: order within a tie must follow the file rows."""
    raw = read_interactions(shared_data_dir / "ml-100k" / "ml-100k.inter")
    data = build_sequences(raw, name="ml-100k")
    assert (data.num_users, data.num_items) == (943, 1682)
    for u in (0, 10, 500):
        tok = data.user_tokens[u]
        mine = raw.users == tok
        ref = sorted(zip(raw.timestamps[mine], raw.rows[mine], raw.items[mine], strict=True))
        assert [data.item_tokens[i] for i in data.sequence(u)] == [r[2] for r in ref]
    again = build_sequences(raw, name="ml-100k")
    assert np.array_equal(again.items, data.items) and np.array_equal(again.offsets, data.offsets)
    assert data.user_tokens[0] == "196"  # first user of the file


# ----------------------------------------------------------------------------- constructed cases


def test_sort_and_tie_break():
    # user a: c@5 (row 1), a@5 (row 2), b@3 (row 3) -> b, c, a
    raw = _raw(["a", "a", "a"], ["c", "a", "b"], ts=[5, 5, 3])
    assert _seqs(build_sequences(raw, name="t")) == {"a": ["b", "c", "a"]}
    # same rows listed in another array order: the row numbers still decide the tie
    shuffled = _raw(["a", "a", "a"], ["a", "c", "b"], ts=[5, 5, 3], rows=[2, 1, 3])
    assert _seqs(build_sequences(shuffled, name="t")) == {"a": ["b", "c", "a"]}


def test_user_and_item_numbering_by_first_appearance():
    raw = _raw(["u2", "u1", "u2", "u1"], ["x", "y", "z", "x"], ts=[2, 1, 1, 0])
    data = build_sequences(raw, name="t")
    assert data.user_tokens.tolist() == ["u2", "u1"]  # file order, not sorted order
    # walk: u2 sorted -> z(1), x(2); u1 sorted -> x(0), y(1)  => z=1, x=2, y=3
    assert data.item_tokens.tolist() == ["[PAD]", "z", "x", "y"]
    assert data.items.tolist() == [1, 2, 2, 3] and data.offsets.tolist() == [0, 2, 4]


@pytest.mark.parametrize(
    ("policy", "expected", "dropped"),
    [
        ("all", ["x", "y", "x", "z", "y"], 0),
        ("first", ["x", "y", "z"], 2),
        ("last", ["x", "z", "y"], 2),
    ],
)
def test_dedup_policies(policy, expected, dropped, caplog):
    raw = _raw(["a"] * 5 + ["b"], ["x", "y", "x", "z", "y", "x"], ts=[1, 2, 3, 4, 5, 1])
    with caplog.at_level(logging.INFO, logger="generec.data.preprocess"):
        data = build_sequences(raw, name="t", dedup=policy)
    assert _seqs(data) == {"a": expected, "b": ["x"]}
    assert data.stats["dropped_duplicates"] == dropped
    if dropped:
        assert f"dropped {dropped} duplicate" in caplog.text
    with pytest.raises(ValueError, match="dedup must be one of"):
        build_sequences(raw, name="t", dedup="none")


def test_dedup_uses_time_order_not_file_order():
    raw = _raw(["a", "a", "a"], ["x", "y", "x"], ts=[9, 5, 1])  # the later row is the earlier event
    assert _seqs(build_sequences(raw, name="t", dedup="first")) == {"a": ["x", "y"]}
    assert _seqs(build_sequences(raw, name="t", dedup="last")) == {"a": ["y", "x"]}


def test_kcore_is_iterative(caplog):
    """D (1 interaction) goes -> u3 falls to 1 -> C falls to 1 -> u4 falls to 1: a cascade."""
    users = ["u1", "u1", "u2", "u2", "u3", "u3", "u4", "u4"]
    items = ["A", "B", "A", "B", "C", "D", "C", "A"]
    with caplog.at_level(logging.INFO, logger="generec.data.preprocess"):
        data = build_sequences(_raw(users, items), name="t", min_user_inter=2, min_item_inter=2)
    assert _seqs(data) == {"u1": ["A", "B"], "u2": ["A", "B"]}
    assert data.stats["kcore_removed_users"] == 2 and data.stats["kcore_removed_items"] == 2
    assert "k-core removed 2 users, 2 items" in caplog.text
    with pytest.raises(ValueError, match="removed every interaction"):
        build_sequences(_raw(users, items), name="t", min_user_inter=10)


def test_side_tables_aligned_with_unknown_as_empty():
    raw = _raw(["a", "a", "b"], ["x", "y", "x"])
    item_side = SideTable(columns={"title": {"x": "X!", "zzz": "unused"}})
    user_side = SideTable(columns={"age": {"b": "30"}})
    data = build_sequences(raw, name="t", item_side=item_side, user_side=user_side)
    assert data.item_side == {"title": ["", "X!", ""]}
    assert data.user_side == {"age": ["", "30"]}


def test_loo_split_lengths_and_short_users(caplog):
    # lengths 5, 3, 2, 1
    raw = _raw(["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"], list(range(11)))
    data = build_sequences(raw, name="t")
    with caplog.at_level(logging.INFO, logger="generec.data.preprocess"):
        split = SPLITTERS["loo"](data)
    assert "2 users shorter than 3 are train-only" in caplog.text
    assert split.train_end.tolist() == [3, 1, 2, 1]  # short users train on everything
    assert split.eval_users.tolist() == [0, 1] and split.short_users.tolist() == [2, 3]
    users, hist_end, target = examples(split, "valid")
    assert hist_end.tolist() == [3, 1] and target.tolist() == [data.items[3], data.items[6]]
    users, hist_end, target = examples(split, "test")
    assert hist_end.tolist() == [4, 2] and target.tolist() == [data.items[4], data.items[7]]
    assert leave_one_out_split(data, min_len=5).eval_users.tolist() == [0]
    with pytest.raises(ValueError, match="min_len must be >= 3"):
        leave_one_out_split(data, min_len=2)
    with pytest.raises(ValueError, match="which must be"):
        examples(split, "train")


# ----------------------------------------------------------------------------- load + cache


def test_load_dataset_cache_hit_skips_the_reader(tmp_path, monkeypatch, caplog):
    f = tmp_path / "mine.txt"
    f.write_text("1 10 11 12\n2 11 13 10\n3 12 13\n")
    cache = tmp_path / "cache"
    first = load_dataset(path=f, cache_dir=cache)
    assert first.fingerprint and (first.num_users, first.num_items) == (3, 4)
    assert len(list((cache / "processed").glob("mine-*.npz"))) == 1

    def boom(*a, **k):
        raise AssertionError("reader called despite a valid cache")

    monkeypatch.setattr(formats, "read_interactions", boom)
    with caplog.at_level(logging.INFO, logger="generec.data.preprocess"):
        second = load_dataset(path=f, cache_dir=cache)
    assert "loaded from cache" in caplog.text
    assert np.array_equal(second.items, first.items) and np.array_equal(second.offsets, first.offsets)
    assert second.item_tokens.tolist() == first.item_tokens.tolist()
    assert second.user_tokens.dtype == object and second.stats == first.stats
    # a different preprocessing config or different file bytes is a different cache entry
    with pytest.raises(AssertionError, match="reader called"):
        load_dataset(path=f, cache_dir=cache, min_item_inter=2)
    f.write_text("1 10 11 12\n2 11 13 10\n")
    with pytest.raises(AssertionError, match="reader called"):
        load_dataset(path=f, cache_dir=cache)


def test_load_dataset_corrupt_cache_is_rebuilt(tmp_path, caplog):
    f = tmp_path / "mine.txt"
    f.write_text("1 10 11 12\n2 11 13 10\n")
    data = load_dataset(path=f, cache_dir=tmp_path / "c")
    (cached,) = (tmp_path / "c" / "processed").glob("*.npz")
    cached.write_bytes(b"not an npz")
    with caplog.at_level(logging.WARNING, logger="generec.data.preprocess"):
        again = load_dataset(path=f, cache_dir=tmp_path / "c")
    assert "ignoring unreadable cache" in caplog.text and np.array_equal(again.items, data.items)


def test_load_registered_dataset_with_side_info(shared_data_dir, tmp_path):
    data = load_dataset("ml-100k", data_dir=shared_data_dir, cache_dir=tmp_path / "c", download=False)
    # registry defaults for MovieLens: no k-core (RecBole's counts), dedup first
    assert data.stats["users"] == 943 and data.num_items == 1682
    toy_story = data.item_tokens.tolist().index("1")
    assert data.item_side["title"][toy_story] == "Toy Story"
    assert data.user_side["occupation"][data.user_tokens.tolist().index("1")] == "technician"
    cored = load_dataset("ml-100k", data_dir=shared_data_dir, cache_dir=tmp_path / "c", min_item_inter=5)
    assert cored.num_items < 1682 and cored.stats["kcore_removed_items"] > 0

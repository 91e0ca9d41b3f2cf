"""Property tests for the eight DA4Rec operators, the offline pool and the online transform."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from generec.data.augment import (
    OPERATORS,
    Compose,
    Crop,
    Delete,
    Insert,
    Mask,
    OnlineAugment,
    RandomChoice,
    Reorder,
    Replace,
    SlideWindow,
    SubsetSplit,
    lengths_of,
    make_op,
    offline_pool,
    offline_rows,
    ops_from_config,
    pack,
    real_mask,
)
from generec.data.batching import all_positions_rows
from generec.data.datamodule import SeqDataModule

NUM_ITEMS = 30


def random_batch(seed: int = 0, B: int = 64, W: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded rows of lengths 1..W with ids in 1..NUM_ITEMS."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, W + 1, (B,), generator=g)
    seqs = torch.randint(1, NUM_ITEMS + 1, (B, W), generator=g)
    return seqs * real_mask(lengths, W), lengths


def rows_as_lists(seqs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    W = seqs.shape[1]
    return [seqs[b, W - int(n) :].tolist() for b, n in enumerate(lengths)]


ALL = sorted(OPERATORS)


@pytest.mark.parametrize("name", ALL)
def test_operator_properties(name):
    seqs, lengths = random_batch()
    op = make_op(name, NUM_ITEMS)
    out, out_len = op(seqs, lengths, torch.Generator().manual_seed(1))
    W2 = out.shape[1]
    assert out.dtype == torch.int64 and out.shape[0] == seqs.shape[0]
    # padding untouched: everything left of each row's real part is 0
    assert (out[~real_mask(out_len, W2)] == 0).all()
    # ids valid (masking writes 0 inside the sequence)
    assert ((out >= 0) & (out <= NUM_ITEMS)).all()
    # length bounds per operator (DA4Rec defaults)
    if name == "insert":
        assert torch.equal(out_len, lengths + 1)
    elif name == "delete":
        assert torch.equal(out_len, torch.where(lengths > 1, lengths - 1, lengths))
    elif name in ("replace", "mask", "reorder"):
        assert torch.equal(out_len, lengths) and W2 == seqs.shape[1]
    elif name == "crop":
        assert torch.equal(out_len, lengths.clamp(max=2))
    else:  # subset_split, slide_window
        assert ((out_len >= 1) & (out_len <= lengths)).all()
    # deterministic given the generator seed, different for another seed
    again, again_len = op(seqs, lengths, torch.Generator().manual_seed(1))
    assert torch.equal(out, again) and torch.equal(out_len, again_len)


@pytest.mark.parametrize("name", ALL)
def test_operator_content(name):
    """What each operator may do to the items of a row."""
    seqs, lengths = random_batch(3)
    out, out_len = make_op(name, NUM_ITEMS)(seqs, lengths, torch.Generator().manual_seed(5))
    for a, b in zip(rows_as_lists(seqs, lengths), rows_as_lists(out, out_len), strict=True):
        if name == "reorder":
            assert sorted(a) == sorted(b) and sum(x != y for x, y in zip(a, b, strict=True)) <= 2
        elif name == "mask":
            assert sum(x != y for x, y in zip(a, b, strict=True)) == 1 and b.count(0) >= 1
        elif name == "replace":
            assert sum(x != y for x, y in zip(a, b, strict=True)) <= 1
        elif name in ("delete", "subset_split"):
            assert is_subsequence(b, a)
        elif name in ("crop", "slide_window"):
            assert any(a[i : i + len(b)] == b for i in range(len(a) - len(b) + 1))  # contiguous
        elif name == "insert":
            assert is_subsequence(a, b) and len(b) == len(a) + 1


def is_subsequence(small: list[int], big: list[int]) -> bool:
    it = iter(big)
    return all(x in it for x in small)


def test_ratio_counts_and_seeds_differ():
    seqs, lengths = random_batch(W=20)
    crop = Crop(n=1, ratio=0.6)
    _, n = crop(seqs, lengths, torch.Generator().manual_seed(0))
    assert torch.equal(n, torch.maximum((lengths * 0.6).floor().long(), torch.ones_like(lengths)))
    a = Reorder(ratio=0.6)(seqs, lengths, torch.Generator().manual_seed(0))[0]
    b = Reorder(ratio=0.6)(seqs, lengths, torch.Generator().manual_seed(1))[0]
    assert not torch.equal(a, b)
    _, n = Mask(n=0, ratio=0.5)(seqs, lengths, torch.Generator().manual_seed(0))
    masked = (Mask(n=0, ratio=0.5)(seqs, lengths, torch.Generator().manual_seed(0))[0] == 0) & real_mask(
        lengths, seqs.shape[1]
    )
    assert torch.equal(masked.sum(1), (lengths * 0.5).floor().long())


def test_subset_split_keep_rate_and_insert_positions_uniform():
    seqs, lengths = random_batch(B=4000, W=10)
    _, n = SubsetSplit(p=0.25)(seqs, lengths, torch.Generator().manual_seed(0))
    assert abs(n.sum().item() / lengths.sum().item() - 0.75) < 0.02
    # a single-item row: the inserted item lands before or after it about equally often
    one = torch.tensor([[0, 7]] * 4000)
    out, _ = Insert(NUM_ITEMS, n=1)(one, torch.ones(4000, dtype=torch.long), torch.Generator().manual_seed(0))
    after = (out[:, 1] == 7).float().mean().item()
    assert 0.45 < after < 0.55


def test_slide_window_expand_is_every_prefix():
    seqs = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8]])
    out, n, src = SlideWindow(length=3).expand(seqs, lengths_of(seqs))
    got = rows_as_lists(out, n)
    assert got == [[1, 2], [1, 2, 3], [4, 5], [4, 5, 6], [5, 6, 7], [6, 7, 8]]
    assert src.tolist() == [0, 0, 1, 1, 1, 1]


def test_pack_and_lengths_of():
    values = torch.tensor([[1, 2, 3, 4]])
    out, n = pack(values, torch.tensor([[True, False, True, False]]))
    assert out.tolist() == [[0, 0, 1, 3]] and n.tolist() == [2]
    assert lengths_of(torch.tensor([[0, 0, 5, 0, 6], [0, 0, 0, 0, 0]])).tolist() == [3, 0]


def test_compose_random_choice_and_config():
    seqs, lengths = random_batch()
    ops = ops_from_config({"subset_split": {"p": 0.5}, "substitute": {"n": 2}}, NUM_ITEMS)
    assert [type(o) for o in ops] == [SubsetSplit, Replace]
    out, n = Compose(ops)(seqs, lengths, torch.Generator().manual_seed(0))
    assert (out[~real_mask(n, out.shape[1])] == 0).all()
    choice = RandomChoice([Crop(n=1, ratio=0.6), Mask(n=0, ratio=0.3), Insert(NUM_ITEMS)])
    out, n = choice(seqs, lengths, torch.Generator().manual_seed(0))
    assert out.shape[1] == seqs.shape[1] + 1 and (out[~real_mask(n, out.shape[1])] == 0).all()
    with pytest.raises(ValueError, match="unknown augmentation"):
        make_op("shuffle_all", NUM_ITEMS)


def toy_csr(seed: int = 0, users: int = 40):
    rng = np.random.default_rng(seed)
    lens = rng.integers(3, 15, users)
    offsets = np.zeros(users + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    items = rng.integers(1, NUM_ITEMS + 1, offsets[-1]).astype(np.int64)
    return items, offsets, (lens - 2).astype(np.int64)  # leave-one-out training parts


@pytest.mark.parametrize(
    "ops", [[Crop()], [Delete()], [Mask()], [Reorder()], [SubsetSplit()], [SubsetSplit(), Reorder()]]
)
def test_offline_pool_never_reads_valid_or_test_items(ops):
    items, offsets, train_end = toy_csr()
    # make held-out items unique ids that appear nowhere in training parts
    held = NUM_ITEMS + 1 + np.arange(2 * len(train_end))
    for u in range(len(train_end)):
        items[offsets[u] + train_end[u] : offsets[u + 1]] = held[2 * u : 2 * u + 2]
    pool_items, pool_off, lens, src = offline_pool(items, offsets, train_end, ops, copies=3, seed=0)
    assert not np.isin(pool_items, held).any()
    assert len(lens) > len(train_end)  # the dataset grew
    for r in range(len(lens)):
        seq = pool_items[pool_off[r] : pool_off[r + 1]]
        train = items[offsets[src[r]] : offsets[src[r]] + train_end[src[r]]]
        assert not Counter(seq[seq > 0].tolist()) - Counter(
            train.tolist()
        )  # multiset within the user's train


def test_offline_pool_deterministic_and_originals_first():
    items, offsets, train_end = toy_csr(1)
    a = offline_pool(items, offsets, train_end, [Insert(NUM_ITEMS), Replace(NUM_ITEMS)], copies=2, seed=4)
    b = offline_pool(items, offsets, train_end, [Insert(NUM_ITEMS), Replace(NUM_ITEMS)], copies=2, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    pool_items, pool_off, lens, src = a
    U = len(train_end)
    assert np.array_equal(lens[:U], train_end) and np.array_equal(src[:U], np.arange(U))
    assert np.array_equal(
        pool_items[: pool_off[U]],
        np.concatenate([items[offsets[u] : offsets[u] + train_end[u]] for u in range(U)]),
    )
    assert ((pool_items >= 0) & (pool_items <= NUM_ITEMS)).all()


def test_offline_rows_slide_window_is_prefixes_and_no_aug_matches_protocol():
    items, offsets, train_end = toy_csr(2)
    inputs, targets = offline_rows(items, offsets, train_end, "all_positions", 8, [], copies=2)
    ref_i, ref_t = all_positions_rows(items, offsets, train_end, 8)
    assert np.array_equal(inputs, ref_i) and np.array_equal(targets, ref_t)
    inputs, targets = offline_rows(items, offsets, train_end, "last", 8, [SlideWindow(5)], copies=2)
    assert len(inputs) == int((train_end - 1).sum())  # one row per prefix, no extra copies
    assert (targets[:, :-1] == 0).all() and (targets[:, -1] > 0).all() and ((inputs > 0).sum(1) <= 4).all()
    inputs, _ = offline_rows(items, offsets, train_end, "last", 8, [], copies=2)
    assert len(inputs) == int((train_end >= 2).sum())  # one row per sequence with an input item


@pytest.mark.parametrize("protocol", ["all_positions", "prefixes", "last"])
def test_online_transform_rebuilds_rows(protocol):
    items, offsets, train_end = toy_csr(3)
    from generec.data.augment import ROW_BUILDERS

    inputs, targets = ROW_BUILDERS[protocol](items, offsets, train_end, 8)
    batch = {"input_ids": torch.from_numpy(inputs), "targets": torch.from_numpy(targets)}
    t = OnlineAugment([Insert(NUM_ITEMS), Delete()], protocol, seed=0, max_len=8)
    out = t(batch, epoch=2, index=5)
    assert out["input_ids"].shape[1] <= 8
    assert torch.equal(out["input_ids"], t(batch, epoch=2, index=5)["input_ids"])
    assert not torch.equal(out["input_ids"], t(batch, epoch=3, index=5)["input_ids"])
    real = out["input_ids"] > 0
    assert (out["targets"][~real] == 0).all()  # no loss where the input is padding
    if protocol == "all_positions":
        # each target is the next input: shifted sequence
        both = real[:, :-1] & real[:, 1:]
        assert torch.equal(out["targets"][:, :-1][both], out["input_ids"][:, 1:][both])
        assert (out["targets"][real] > 0).float().mean() > 0.9  # masked items aside, real inputs supervised
    else:
        assert (out["targets"][:, :-1] == 0).all() and (out["targets"][:, -1] > 0).all()


def test_datamodule_offline_and_online(tmp_path):
    lines = [f"u{u}\ti{(u * 7 + t * (1 + u % 3)) % 25 + 1}" for u in range(30) for t in range(6 + u % 5)]
    path = tmp_path / "walks.txt"
    path.write_text("\n".join(lines) + "\n")
    base = SeqDataModule(registry=None, path=str(path), format="pairs", protocol="last", max_len=10)
    base.setup()
    off = SeqDataModule(
        registry=None,
        path=str(path),
        format="pairs",
        protocol="last",
        max_len=10,
        augment={"mode": "offline", "copies": 2, "ops": {"crop": {"n": 2}}},
    )
    off.setup()
    assert len(off.train_rows) == 3 * len(base.train_rows)
    assert off.dataset_record()["augment"]["mode"] == "offline"
    for which in ("valid", "test"):  # evaluation untouched
        assert torch.equal(
            off.eval_rows[which].tensors["input_ids"], base.eval_rows[which].tensors["input_ids"]
        )
    on = SeqDataModule(
        registry=None,
        path=str(path),
        format="pairs",
        max_len=10,
        batch_size=8,
        augment={"mode": "online", "ops": {"delete": {"n": 1}}},
    )
    on.setup()
    first = [b["input_ids"] for b in on.train_dataloader()]
    second = [b["input_ids"] for b in on.train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))  # seeded by (epoch, batch)
    plain = SeqDataModule(registry=None, path=str(path), format="pairs", max_len=10, batch_size=8)
    plain.setup()
    assert sum((b > 0).sum() for b in first) < sum(
        (b["input_ids"] > 0).sum() for b in plain.train_dataloader()
    )
    cold = SeqDataModule(registry=None, path=str(path), format="pairs", cold_start_ratio=0.5)
    cold.setup()
    assert len(cold.eval_rows["test"]) == 15 and cold.split.train_end[~cold.kept_users].sum() == 0
    with pytest.raises(ValueError, match="augment.mode"):
        SeqDataModule(registry=None, path=str(path), augment={"mode": "sometimes", "ops": {"crop": {}}})

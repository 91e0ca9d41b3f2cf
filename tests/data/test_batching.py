import numpy as np

from generec.data.batching import all_positions_rows, left_padded_windows, prefix_rows


def _toy():
    items = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9])  # user0: 1..6, user1: 7, 8, 9
    return items, np.array([0, 6, 9]), np.array([6, 3])


def test_all_positions_supervises_each_training_item_once():
    items, offsets, train_end = _toy()
    inputs, targets = all_positions_rows(items, offsets, train_end, max_len=4)
    assert sorted(targets[targets > 0].tolist()) == [2, 3, 4, 5, 6, 8, 9]
    # at every supervised position the input is the previous item of the same user
    for row_in, row_t in zip(inputs, targets, strict=True):
        for x, y in zip(row_in, row_t, strict=True):
            if y:
                assert x == y - 1
    assert (inputs[targets == 0] == 0).all()


def test_prefix_rows_one_per_prefix_with_last_column_target():
    items, offsets, train_end = _toy()
    inputs, targets = prefix_rows(items, offsets, train_end, max_len=3)
    assert len(inputs) == 5 + 2
    assert targets[:, :-1].sum() == 0
    assert inputs[0].tolist() == [0, 0, 1] and targets[0, -1] == 2
    assert inputs[4].tolist() == [3, 4, 5] and targets[4, -1] == 6
    assert inputs[6].tolist() == [0, 7, 8] and targets[6, -1] == 9


def test_left_padded_windows_respects_start():
    items = np.arange(1, 11)
    out = left_padded_windows(items, np.array([2]), np.array([5]), 5)
    assert out.tolist() == [[0, 0, 3, 4, 5]]


def _long_users():
    rng = np.random.default_rng(0)
    lens = np.array([1, 2, 5, 9, 10, 11, 23, 40])
    offsets = np.concatenate([[0], np.cumsum(lens)])
    items = rng.integers(1, 500, lens.sum())
    return items, offsets, lens


def _history_seen(inputs, targets):
    """For each supervised cell: (target, number of real items at or before its column)."""
    seen = np.cumsum(inputs > 0, axis=1)
    return targets[targets > 0], seen[targets > 0]


def test_all_positions_stride_supervises_each_target_once_with_context():
    items, offsets, lens = _long_users()
    max_len = 8
    ref_inputs, ref_targets = all_positions_rows(items, offsets, lens, max_len)
    expected = sorted(ref_targets[ref_targets > 0].tolist())
    for stride in (1, 3, 5, 8):
        inputs, targets = all_positions_rows(items, offsets, lens, max_len, stride=stride)
        assert sorted(targets[targets > 0].tolist()) == expected, stride
        # supervised cells: the input is the item just before the target in the user's sequence
        pos = {}
        for u, n in enumerate(lens):
            seq = items[offsets[u] : offsets[u] + n]
            for t in range(1, n):
                pos.setdefault((seq[t - 1], seq[t]), []).append(t)
        for row_in, row_t in zip(inputs, targets, strict=True):
            for x, y in zip(row_in, row_t, strict=True):
                if y:
                    assert (x, y) in pos
        # history: every target sees min(its position, max_len - stride + 1) items or more
        _, seen = _history_seen(inputs, targets)
        assert seen.min() >= 1
        assert np.sort(seen).sum() >= np.sort(_history_seen(ref_inputs, ref_targets)[1]).sum()
        if stride == 1:  # every target sees the same history as under the prefix protocol
            pairs = sorted(zip(*_history_seen(inputs, targets), strict=True))
            p_pairs = sorted(zip(*_history_seen(*prefix_rows(items, offsets, lens, max_len)), strict=True))
            assert pairs == p_pairs
    # no overlap: identical to the consecutive windows
    same_i, same_t = all_positions_rows(items, offsets, lens, max_len, stride=max_len)
    assert (same_i == ref_inputs).all() and (same_t == ref_targets).all()


def test_all_positions_stride_keeps_min_context():
    items = np.arange(1, 31)  # one user, 30 items, 29 targets
    max_len, stride = 10, 4
    inputs, targets = all_positions_rows(items, np.array([0, 30]), np.array([30]), max_len, stride=stride)
    for row_in, row_t in zip(inputs, targets, strict=True):
        for c in np.flatnonzero(row_t):
            history = (row_in[: c + 1] > 0).sum()
            # the target item t (1-based value) has t - 1 earlier items; the row shows at least
            # max_len - stride + 1 of them unless fewer exist
            assert history >= min(row_t[c] - 1, max_len - stride + 1)
    assert len(inputs) == 1 + -(-(29 - max_len) // stride)


def test_all_positions_stride_rejects_out_of_range():
    items, offsets, lens = _long_users()
    import pytest

    with pytest.raises(ValueError, match="window_stride"):
        all_positions_rows(items, offsets, lens, 8, stride=9)


def test_datamodule_window_stride_on_ml100k(shared_data_dir, tmp_path, monkeypatch):
    """Real long sequences (ml-100k, mean length ~106): same targets, more rows, more history each."""
    import pytest

    from generec.data.datamodule import SeqDataModule

    monkeypatch.setenv("GENEREC_DATA_DIR", str(shared_data_dir))
    rows = {}
    for stride in (None, 25):
        dm = SeqDataModule(registry="ml-100k", window_stride=stride, cache_dir=str(tmp_path / "cache"))
        dm.setup()
        t = dm.train_rows.tensors
        rows[stride] = (t["input_ids"].numpy(), t["targets"].numpy())
        assert dm.dataset_record()["window_stride"] == stride
    (i0, t0), (i1, t1) = rows[None], rows[25]
    assert len(i1) > len(i0)
    assert sorted(t0[t0 > 0].tolist()) == sorted(t1[t1 > 0].tolist())
    h0, h1 = _history_seen(i0, t0)[1], _history_seen(i1, t1)[1]
    assert h1.mean() > h0.mean() and np.median(h1) >= 26
    for bad, match in (
        ({"protocol": "prefixes", "window_stride": 10}, "all_positions only"),
        ({"window_stride": 51}, r"\[1, data.max_len=50\]"),
        ({"window_stride": 10, "augment": {"mode": "online", "ops": {"crop": {"ratio": 0.6}}}}, "online"),
    ):
        with pytest.raises(ValueError, match=match):
            SeqDataModule(registry="ml-100k", **bad)

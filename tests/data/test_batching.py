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

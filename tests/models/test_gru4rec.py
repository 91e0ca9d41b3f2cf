import pytest
import torch

from generec.models.gru4rec import GRU4Rec, left_to_right_padding


def tiny(**kw):
    torch.manual_seed(0)
    return GRU4Rec(num_items=30, max_len=8, embedding_size=16, hidden_size=24, **kw)


def test_padding_round_trip():
    ids = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0]])
    right, lengths, index = left_to_right_padding(ids)
    assert right.tolist() == [[3, 4, 5, 0, 0], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0]]
    assert lengths.tolist() == [3, 5, 0]
    back = torch.empty_like(right).scatter_(1, index, right)
    assert back.equal(ids)


def test_seam_shapes_and_left_padding_invariance():
    m = tiny().eval()
    long = torch.tensor([[0, 0, 0, 5, 6, 7, 8, 9]])
    short = torch.tensor([[0, 5, 6, 7, 8, 9]])
    assert m.encode({"input_ids": long}).shape == (1, 16)
    assert m.score({"input_ids": long}).shape == (1, 31)
    # Padding only follows the real items in the GRU's input, so the amount of padding cannot matter.
    assert torch.allclose(m.encode({"input_ids": long}), m.encode({"input_ids": short}), atol=1e-6)
    h = m.sequence_hidden(long)
    assert h[:, :3].abs().max() == 0


def test_causal():
    m = tiny().eval()
    a = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    b = a.clone()
    b[0, -1] = 11
    assert torch.allclose(m.sequence_hidden(a)[:, :-1], m.sequence_hidden(b)[:, :-1], atol=1e-6)


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_loss_backprop(loss):
    m = tiny(loss=loss).train()
    batch = {
        "input_ids": torch.tensor([[0, 0, 1, 2, 3, 4, 5, 6]]),
        "targets": torch.tensor([[0, 0, 2, 3, 4, 5, 6, 7]]),
    }
    out = m.compute_loss(batch)
    assert torch.isfinite(out)
    out.backward()
    assert all(p.grad is not None for p in m.gru.parameters())


def test_plain_gru_equals_a_packed_run_at_real_positions():
    """Running the GRU over the right-padded batch (no packing) changes nothing where items are real."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    m = tiny().eval()
    ids = torch.tensor([[0, 0, 0, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0, 3, 4]])
    right, lengths, index = left_to_right_padding(ids)
    packed = pack_padded_sequence(m.item_emb(right), lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = pad_packed_sequence(m.gru(packed)[0], batch_first=True, total_length=ids.shape[1])
    reference = torch.empty(3, 8, 16).scatter_(1, index[..., None].expand(3, 8, 16), m.proj(out))
    real = ids > 0
    torch.testing.assert_close(m.sequence_hidden(ids)[real], reference[real])

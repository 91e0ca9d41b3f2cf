import pytest
import torch

from generec.models.sasrec import SASRec


def tiny(**kw):
    torch.manual_seed(0)
    return SASRec(
        num_items=30, max_len=8, hidden_size=16, num_layers=2, num_heads=2, inner_size=32, **kw
    ).eval()


def test_seam_shapes():
    m = tiny()
    batch = {"input_ids": torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 9]])}
    assert m.encode(batch).shape == (2, 16)
    assert m.item_embeddings().shape == (31, 16)
    assert m.score(batch).shape == (2, 31)


@pytest.mark.parametrize("position_mode", ["right", "left"])
def test_causal_and_left_padding_invariance(position_mode):
    m = tiny(position_mode=position_mode)
    a = torch.tensor([[0, 0, 0, 5, 6, 7, 8, 9]])
    b = a.clone()
    b[0, -1] = 11  # changing the future must not change earlier positions
    ha, hb = m.sequence_hidden(a), m.sequence_hidden(b)
    assert torch.allclose(ha[:, :-1], hb[:, :-1], atol=1e-6)
    assert not torch.allclose(ha[:, -1], hb[:, -1])
    # Extra padding in front (shorter window) changes nothing for the real items' last state.
    short = torch.tensor([[0, 5, 6, 7, 8, 9]])
    assert torch.allclose(m.encode({"input_ids": short}), ha[:, -1], atol=1e-5)


@pytest.mark.parametrize("loss", ["ce", "ce_with_padding", "bce", "sampled_ce"])
def test_loss_backprop_only_from_supervised_positions(loss):
    m = tiny(loss=loss, num_negatives=3).train()
    batch = {
        "input_ids": torch.tensor([[0, 0, 1, 2, 3, 4, 5, 6]]),
        "targets": torch.tensor([[0, 0, 2, 3, 4, 5, 6, 7]]),
    }
    out = m.compute_loss(batch)
    assert out.ndim == 0 and torch.isfinite(out)
    out.backward()
    assert m.item_emb.weight.grad is not None


def test_ce_with_padding_is_the_softmax_over_the_whole_table_padding_row_included():
    """RecBole's CE keeps row 0 as a class: the padding row gets a gradient, plain CE leaves it at zero."""
    from torch.nn import functional as F

    from generec.models.losses import next_item_loss

    g = torch.Generator().manual_seed(0)
    h, items = torch.randn(5, 4, generator=g), torch.randn(11, 4, generator=g, requires_grad=True)
    y = torch.randint(1, 11, (5,), generator=g)
    with_pad = next_item_loss(h, y, items, "ce_with_padding")
    assert with_pad.item() == pytest.approx(F.cross_entropy(h @ items.T, y).item(), rel=1e-6)
    plain = next_item_loss(h, y, items, "ce")
    assert plain.item() == pytest.approx(F.cross_entropy(h @ items[1:].T, y - 1).item(), rel=1e-6)
    assert with_pad.item() > plain.item()  # one more class in the partition sum
    (pad_grad,) = torch.autograd.grad(with_pad, items)
    (plain_grad,) = torch.autograd.grad(plain, items)
    assert pad_grad[0].abs().sum() > 0 and plain_grad[0].abs().sum() == 0


def test_no_nan_on_all_padding_rows():
    m = tiny()
    h = m.sequence_hidden(torch.zeros(2, 8, dtype=torch.long))
    assert torch.isfinite(h).all()


def test_left_positions_count_from_the_first_real_item():
    from generec.models.sasrec import sequence_positions

    ids = torch.tensor([[0, 0, 7, 8, 9], [1, 2, 3, 4, 5]])
    assert sequence_positions(ids, 8, "left").tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    assert sequence_positions(ids, 8, "right").tolist() == [3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="position_mode"):
        tiny(position_mode="middle")


def test_feed_forward_drops_only_its_output_by_default():
    """RecBole's layout (one dropout, after the second linear); the original SASRec code's inner dropout is opt-in."""
    from generec.models.layers import Dropout, FeedForward

    ffn = FeedForward(8, 32, dropout=0.5)
    assert sum(isinstance(m, Dropout) for m in ffn.modules()) == 1
    both = FeedForward(8, 32, dropout=0.5, inner_dropout=True)
    assert sum(isinstance(m, Dropout) for m in both.modules()) == 2
    both.load_state_dict(ffn.state_dict())  # same parameters either way: checkpoints stay loadable
    x = torch.randn(4, 3, 8)
    torch.testing.assert_close(ffn.eval()(x), both.eval()(x))

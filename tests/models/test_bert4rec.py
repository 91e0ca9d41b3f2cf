import pytest
import torch

from generec.models.bert4rec import BERT4Rec

BATCH = {
    "input_ids": torch.tensor([[0, 0, 1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 7, 8, 9]]),
    "targets": torch.tensor([[0, 0, 2, 3, 4, 5, 6, 7], [0, 0, 0, 0, 0, 0, 0, 10]]),
}


def tiny(**kw):
    torch.manual_seed(0)
    return BERT4Rec(num_items=30, max_len=8, hidden_size=16, inner_size=32, **kw)


def test_training_window_and_masking():
    m = tiny(mask_ratio=0.5)
    window = m.training_window(BATCH)
    assert window.tolist() == [[0, 1, 2, 3, 4, 5, 6, 7], [0, 0, 0, 0, 7, 8, 9, 10]]
    torch.manual_seed(1)
    inputs, labels = m.mask_items(window)
    masked = inputs == m.mask_id
    assert masked.any(dim=1).all()  # every row predicts something
    assert (labels[masked] == window[masked]).all() and (labels[~masked] == 0).all()
    assert (inputs[window == 0] == 0).all()  # padding is never masked
    assert (inputs[~masked] == window[~masked]).all()


def test_inference_appends_mask_and_mask_is_never_a_candidate():
    m = tiny().eval()
    shifted = m.with_mask_last(BATCH["input_ids"])
    assert shifted[:, -1].eq(m.mask_id).all() and shifted[:, :-1].equal(BATCH["input_ids"][:, 1:])
    assert m.item_embeddings().shape == (31, 16)
    assert m.score(BATCH).shape == (2, 31)


def test_bidirectional_left_items_see_right_items():
    m = tiny().eval()
    a = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    b = a.clone()
    b[0, -1] = 11
    assert not torch.allclose(m.sequence_hidden(a)[:, 3], m.sequence_hidden(b)[:, 3])


def test_loss_only_on_masked_positions_and_backprops():
    m = tiny().train()
    loss = m.compute_loss(BATCH)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert m.item_emb.weight.grad[1:31].abs().sum() > 0


def test_output_bias_enters_the_scores_and_the_masked_loss():
    """The per-item output bias (BERT4Rec's and RecBole's head) shifts every user's scores and gets a gradient."""
    torch.manual_seed(0)
    model = BERT4Rec(num_items=30, max_len=8, hidden_size=16, num_layers=1, num_heads=2, inner_size=32)
    batch = {"input_ids": torch.randint(1, 31, (4, 8)), "targets": torch.randint(1, 31, (4, 8))}
    model.eval()
    with torch.no_grad():
        before = model.score(batch)
        model.output_bias[5] += 3.0
        after = model.score(batch)
    torch.testing.assert_close(
        after - before, torch.nn.functional.one_hot(torch.tensor(5), 31).float().expand(4, 31) * 3.0
    )
    model.train()
    model.compute_loss(batch).backward()
    assert model.output_bias.grad is not None and model.output_bias.grad[1:].abs().sum() > 0
    plain = BERT4Rec(
        num_items=30, max_len=8, hidden_size=16, num_layers=1, num_heads=2, inner_size=32, output_bias=False
    )
    assert plain.output_bias is None and "output_bias" not in dict(plain.named_parameters())


def test_ft_ratio_batches_mask_only_the_last_item():
    """RecBole's fine-tuning samples: with ft_ratio=1 every row predicts exactly its last (real) item."""
    model = BERT4Rec(
        num_items=30, max_len=6, hidden_size=16, num_layers=1, num_heads=2, inner_size=32, ft_ratio=1.0
    )
    ids = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7]])
    masked, labels = model.mask_items(ids)
    assert torch.equal(labels, torch.tensor([[0, 0, 0, 0, 0, 6], [0, 0, 0, 0, 0, 7]]))
    assert (masked[:, -1] == model.mask_id).all() and torch.equal(masked[:, :-1], ids[:, :-1])
    with pytest.raises(ValueError, match="ft_ratio"):
        BERT4Rec(num_items=30, ft_ratio=1.5)

import torch
import torch.nn.functional as F

from generec.models.losses import chunked_softmax_cross_entropy, sampled_softmax_cross_entropy


def test_chunked_ce_matches_plain_value_and_gradients():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(37, 16, generator=g, dtype=torch.float64, requires_grad=True)
    items = torch.randn(101, 16, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 101, (37,), generator=g)
    plain = F.cross_entropy(h @ items.T, y)
    gh, gi = torch.autograd.grad(plain, (h, items))
    chunked = chunked_softmax_cross_entropy(h, items, y, chunk=10)
    ch, ci = torch.autograd.grad(chunked, (h, items))
    assert torch.allclose(plain, chunked.double(), atol=1e-10)
    assert torch.allclose(gh, ch, atol=1e-10) and torch.allclose(gi, ci, atol=1e-10)


def test_chunked_ce_gradcheck():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    items = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 8, 8, 1])
    assert torch.autograd.gradcheck(lambda a, b: chunked_softmax_cross_entropy(a, b, y, chunk=4), (h, items))


def test_sampled_ce_matches_hand_computation_and_masks_accidental_hits():
    g = torch.Generator().manual_seed(2)
    h = torch.randn(6, 4, generator=g, dtype=torch.float64)
    items = torch.randn(5, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    value = sampled_softmax_cross_entropy(h, items, y, 7, generator=torch.Generator().manual_seed(3))
    neg = torch.randint(0, 5, (7,), generator=torch.Generator().manual_seed(3))
    expected = []
    for n in range(6):  # the obviously-correct version: one row at a time
        logits = [float(h[n] @ items[y[n]])] + [float(h[n] @ items[j]) for j in neg if j != y[n]]
        expected.append(-logits[0] + torch.logsumexp(torch.tensor(logits, dtype=torch.float64), 0))
    assert torch.allclose(value, torch.stack(expected).mean(), atol=1e-10)


def test_sampled_ce_gradients_reach_hidden_states_and_items():
    g = torch.Generator().manual_seed(4)
    h = torch.randn(20, 8, generator=g, requires_grad=True)
    items = torch.randn(10, 8, generator=g, requires_grad=True)
    y = torch.randint(0, 10, (20,), generator=g)
    sampled_softmax_cross_entropy(h, items, y, 50).backward()
    assert torch.isfinite(h.grad).all() and h.grad.abs().sum() > 0
    assert items.grad[y].abs().sum() > 0

import torch
import torch.nn.functional as F

from generec.models.losses import chunked_softmax_cross_entropy


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

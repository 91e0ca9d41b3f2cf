"""History perturbations and compressed copies."""

from __future__ import annotations

import torch

from generec.models.sasrec import SASRec
from generec.trust.robustness import compress, nonzero_fraction, perturb


def _rows() -> torch.Tensor:
    x = torch.zeros(4, 12, dtype=torch.long)
    x[:, 2:] = torch.arange(1, 11)  # 10 real items, 2 padding columns
    return x


def test_perturbations_touch_the_requested_share():
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    x = _rows()
    replaced = perturb(x, "replace", 0.5, num_items=10_000, generator=g())
    assert ((replaced != x).sum(1) <= 5).all() and ((replaced != x).sum(1) >= 4).all()
    assert (replaced[:, :2] == 0).all()
    deleted = perturb(x, "delete", 0.5, num_items=10_000, generator=g())
    assert ((deleted > 0).sum(1) == 5).all() and (deleted[:, :7] == 0).all()
    masked = perturb(x, "mask", 0.3, num_items=10_000, generator=g())
    assert ((masked[:, 2:] == 0).sum(1) == 3).all()
    assert torch.equal(perturb(x, "mask", 0.3, 10_000, g()), masked)  # seeded


def test_compressed_copies_leave_the_original_alone():
    torch.manual_seed(0)
    model = SASRec(50, max_len=10, hidden_size=16, num_layers=1, num_heads=1, inner_size=32).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randint(1, 51, (3, 10))
    ref = model.score({"input_ids": x})
    pruned = compress(model, "prune50")
    assert abs(nonzero_fraction(pruned) - nonzero_fraction(model) / 2) < 0.05
    int8 = compress(model, "int8")
    assert "quantized" in type(int8.blocks[0].attn.qkv).__module__
    fp16 = compress(model, "fp16")
    assert fp16.item_emb.weight.dtype == torch.float16
    for variant in (pruned, int8, fp16):
        out = variant.score({"input_ids": x}).float()
        assert out.shape == ref.shape and torch.isfinite(out).all()
    assert torch.allclose(fp16.score({"input_ids": x}).float(), ref, atol=1e-2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

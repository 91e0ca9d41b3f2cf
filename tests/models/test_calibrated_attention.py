import pytest
import torch

from generec.models.calibrated_attention import (
    CalibratedEncoder,
    CalibratedSelfAttention,
    is_attack_parameter,
    masked_softmax,
    perturbation_penalty,
)
from generec.models.layers import causal_padding_mask

IDS = torch.tensor([[0, 0, 0, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 9], [0, 0, 0, 0, 0, 0, 0, 3]])


def layer(spatial=True, adversarial=True, max_len=8, dropout=0.0):
    torch.manual_seed(0)
    return CalibratedSelfAttention(16, 2, dropout, max_len, spatial=spatial, adversarial=adversarial)


@pytest.mark.parametrize("spatial,adversarial", [(True, True), (True, False), (False, True), (False, False)])
@pytest.mark.parametrize("causal", [True, False])
def test_rows_sum_to_one_and_never_look_at_padding_or_future(spatial, adversarial, causal):
    attn = layer(spatial, adversarial).train()  # train: attacked branch computed too
    x = torch.randn(3, 8, 16)
    mask = causal_padding_mask(IDS, causal=causal)  # [B, 1, L, L]
    out = attn(x, mask, return_attacked=adversarial)
    assert out.out.shape == (3, 8, 16)
    a = out.attention  # [B, h, L, L]
    assert a.shape == (3, 2, 8, 8)
    assert torch.allclose(a.sum(-1), torch.ones(3, 2, 8), atol=1e-5)
    forbidden = ~mask.expand_as(a)
    assert a[forbidden].abs().max() == 0  # exactly zero on padding keys (and future keys if causal)
    if causal:
        assert forbidden[:, :, torch.triu_indices(8, 8, 1)[0], torch.triu_indices(8, 8, 1)[1]].all()
    if adversarial:
        assert out.attacked.shape == (3, 8, 16) and torch.isfinite(out.attacked).all()
        m = out.perturbation
        assert torch.allclose(m.sum(-1), torch.ones(3, 2, 8), atol=1e-5)
        assert m[forbidden].abs().max() == 0
    else:
        assert out.attacked is None and out.perturbation is None


def test_causal_output_ignores_future_and_padding_content():
    attn = layer().eval()
    x = torch.randn(1, 8, 16)
    ids = IDS[:1]
    mask = causal_padding_mask(ids)
    y = attn(x, mask).out
    x2 = x.clone()
    x2[:, -1] += 5.0  # future of every earlier position
    x2[:, 0] -= 3.0  # a padding position
    y2 = attn(x2, mask).out
    assert torch.allclose(y[:, 3:-1], y2[:, 3:-1], atol=1e-5)
    assert not torch.allclose(y[:, -1], y2[:, -1])


def test_spatial_terms_encode_order_and_distance():
    """The bonus is a log-likelihood (<= 0) and the distance part peaks where prediction = log(|i-j|+1)."""
    attn = layer(spatial=True, adversarial=False)
    q, k = torch.randn(2, 2, 8, 8), torch.randn(2, 2, 8, 8)
    bonus = attn.spatial_terms(q, k)
    assert bonus.shape == (2, 2, 8, 8) and (bonus <= 0).all()
    with torch.no_grad():  # order read-out says "after" with certainty -> bonus 0 above the diagonal only
        attn.order_q.weight.zero_(), attn.order_k.weight.zero_(), attn.order_q.bias.fill_(50.0)
        attn.distance_scale.zero_()
    bonus = attn.spatial_terms(q, k)
    above = torch.ones(8, 8, dtype=torch.bool).triu(1)
    assert bonus[..., above].abs().max() < 1e-6 and bonus[..., ~above].max() < -40


def test_gate_width_is_max_len_and_shorter_windows_work():
    attn = layer(max_len=12).eval()
    assert attn.gate.out_features == 12
    y = attn(torch.randn(3, 8, 16), causal_padding_mask(IDS)).out  # 8 < 12 keys
    assert y.shape == (3, 8, 16)
    with pytest.raises(ValueError, match="max_len"):
        layer(max_len=4)(torch.randn(3, 8, 16), causal_padding_mask(IDS))


def test_encoder_attacked_branch_only_when_asked_and_penalty():
    torch.manual_seed(0)
    enc = CalibratedEncoder(2, hidden=16, heads=2, inner=32, dropout=0.0, max_len=8)
    mask = causal_padding_mask(IDS)
    out = enc(torch.randn(3, 8, 16), mask, return_attacked=True)
    assert out.attacked.shape == (3, 8, 16) and len(out.perturbations) == 2 and len(out.attentions) == 2
    assert enc(torch.randn(3, 8, 16), mask).attacked is None
    pen = perturbation_penalty(out.perturbations, mask)
    assert pen.ndim == 0 and pen > 0
    names = [n for n, _ in enc.named_parameters() if is_attack_parameter(n)]
    assert names and all(".attack_query." in n or ".attack_key." in n for n in names)


def test_masked_softmax_all_allowed_is_softmax():
    s = torch.randn(2, 3, 4)
    assert torch.allclose(masked_softmax(s, torch.ones_like(s, dtype=torch.bool)), s.softmax(-1))

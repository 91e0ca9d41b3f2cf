"""Human contribution phi: near 1 when the output is determined by the instruction, near 0 when independent."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from generec.trust.contribution import (
    creator_contribution,
    diffusion_nll,
    lm_contribution,
    phi_from_nll,
)

ALPHAS = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").alphas_cumprod


def gaussian_eps(mean: torch.Tensor, std: float):
    """The exact noise predictor for data ~ N(mean, std^2 I) (per item), under the DDPM forward process."""

    def fn(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = ALPHAS[t].float()[:, None]
        m = mean.repeat(xt.shape[0] // mean.shape[0], 1)
        return (1 - a).sqrt() * (xt - a.sqrt() * m) / (a * std**2 + 1 - a)

    return fn


def test_diffusion_phi_near_one_when_the_instruction_determines_the_item():
    # seed 5, not diffusion_nll's noise seed (0): the data must not equal the noise
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(16, 8, generator=gen)  # the instruction
    y = x + 0.01 * torch.randn(16, 8, generator=gen)  # y = x up to a tiny noise
    cond = gaussian_eps(x, 0.01)  # p(y | x) = N(x, 0.01^2)
    marginal = gaussian_eps(torch.zeros_like(x), (1 + 0.01**2) ** 0.5)  # p(y) = N(0, 1 + 0.01^2)
    nll = diffusion_nll([cond, marginal], y, ALPHAS, bin_width=0.1, strata=None, n_noise=16)
    expected_marginal = (
        8 * (0.5 * torch.log(torch.tensor(2 * torch.pi))) + 0.5 * y.pow(2).sum(1) + 8 * 2.302585
    )
    assert nll[1].mean() == pytest.approx(
        float(expected_marginal.mean()), rel=0.05
    )  # the bound is tight here
    phi = phi_from_nll(nll[0], nll[1])
    assert float(phi.mean()) > 0.8


def test_diffusion_phi_zero_when_the_item_ignores_the_instruction():
    y = torch.randn(16, 8, generator=torch.Generator().manual_seed(7))
    marginal = gaussian_eps(torch.zeros_like(y), 1.0)
    ignores_x = gaussian_eps(torch.zeros_like(y), 1.0)  # conditioned on x, but x changes nothing
    nll = diffusion_nll([ignores_x, marginal], y, ALPHAS, bin_width=0.1, strata=50)
    assert phi_from_nll(nll[0], nll[1]).abs().max() < 1e-6


def test_creator_contribution_runs_on_the_creator_and_is_zero_without_text():
    from generec.generative.creator import Creator, CreatorConfig

    torch.manual_seed(0)
    creator = Creator(8, 8, 16, CreatorConfig(hidden=16, layers=1)).eval()
    items, state, text = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 16)
    text[0] = 0  # no instruction for item 0: conditional == unconditional
    out = creator_contribution(creator, items, state, text, bin_width=0.1, strata=20, n_noise=1)
    assert out["phi"].shape == (4,) and torch.isfinite(out["phi"]).all()
    assert out["phi"][0].abs() < 1e-6 and (out["nll_uncond"] > 0).all()


def _trained_lm(determined: bool, steps: int = 150):
    """A tiny GPT-2 trained on 'instruction: <c> title: <y>' with y = c (determined) or y random (independent);
    30% of examples have no instruction, so the empty prompt learns the marginal."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    colours = "red blue green black white pink gold grey".split()
    words = ["<unk>", "<eos>", "instruction", "title", ":", *colours]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>"
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_positions=16, n_embd=32, n_layer=1, n_head=2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    ids = {w: i for i, w in enumerate(words)}
    for _ in range(steps):
        c = torch.randint(0, 8, (64,), generator=gen)
        y = c if determined else torch.randint(0, 8, (64,), generator=gen)
        keep = torch.rand(64, generator=gen) > 0.3
        rows = []
        for ci, yi, k in zip(c.tolist(), y.tolist(), keep.tolist(), strict=True):
            instr = [ids[colours[ci]]] if k else []
            rows.append([ids["instruction"], ids[":"], *instr, ids["title"], ids[":"], ids[colours[yi]]])
        # pad the short (no-instruction) rows on the left with eos, ignored by the loss
        width = max(map(len, rows))
        batch = torch.tensor([[ids["<eos>"]] * (width - len(r)) + r for r in rows])
        labels = batch.clone()
        labels[:, :-1] = -100  # only the output token is learned
        loss = model(input_ids=batch, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), tok


@pytest.mark.parametrize("determined", [True, False])
def test_text_phi_from_a_causal_lm(determined):
    model, tok = _trained_lm(determined)
    out = [
        lm_contribution(model, tok, c, c, template="instruction : {instruction} title :")
        for c in ("red", "gold")
    ]
    for o in out:
        assert -3.0 < o["logp_uncond"] < -1.2  # about log(1/8): the empty prompt learned the marginal
        if determined:
            assert o["phi"] > 0.8
        else:
            assert abs(o["phi"]) < 0.15

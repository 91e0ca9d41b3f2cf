"""Human contribution: the share of a generated item's information that came from the user's instruction.

phi = I(x; y) / I(y) = 1 - log p(y | x) / log p(y)  (Measuring Human Contribution in AI-Assisted Content
Generation), with x the instruction and y the output. 1 = the instruction determines the output; 0 = the
output is as likely without it.

* Diffusion (the creator): -log p is bounded by the DDPM variational bound (ELBO), which the creator's
  classifier-free-guidance training makes available with the instruction (conditional) and without it
  (the text condition dropped). Both bounds use the same timesteps and noise, so their difference has
  low variance. Item vectors are continuous, so information is counted at a resolution: the chain stops
  where its noise reaches half a bin of ``bin_width`` (in the creator's normalised space) and a
  discretised Gaussian decodes the bin. phi depends on that resolution (coarser bins, less information
  in y); ``resolution_bin_width`` ties it to the catalogue's nearest-neighbour distance.
* Text: token log-probabilities of the output under a causal LM, with the instruction in the prompt and
  with it left empty.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

EpsFn = Callable[[Tensor, Tensor], Tensor]  # (x_t [N, d], diffusers timestep index [N]) -> eps [N, d]


def _log_bin_prob(x0: Tensor, mean: Tensor, std: float, width: float) -> Tensor:
    """log P(x0's bin) under N(mean, std^2) per dim, summed: [B]."""
    normal = torch.distributions.Normal(mean, std)
    upper, lower = normal.cdf(x0 + width / 2), normal.cdf(x0 - width / 2)
    return (upper - lower).clamp_min(1e-30).log().sum(-1)


@torch.no_grad()
def diffusion_nll(
    eps_fns: Sequence[EpsFn],
    x0: Tensor,
    alphas_cumprod: Tensor,
    bin_width: float,
    n_noise: int = 2,
    strata: int | None = 100,
    seed: int = 0,
) -> Tensor:
    """Upper bound on -log P(x0's bin) in nats for each noise predictor: [F, B] (F = len(eps_fns)).

    x0 [B, d] in the model's (normalised) space; alphas_cumprod [T] as in diffusers (index 0 = least
    noise). The reverse chain stops at the first timestep t0 whose noise, in x0 units
    (sqrt((1 - a_t) / a_t)), reaches half a bin: detail finer than the resolution is not counted. The
    decoder there is a Gaussian around the model's x0 estimate with that noise scale, integrated over the
    bin. Reverse variances are beta_t. The KL sum over t0+1..T-1 is exact (``strata=None``) or a
    stratified sample of ``strata`` timesteps; timesteps and noise are shared by all predictors.
    """
    ac = alphas_cumprod.double()
    t_count, (b, d) = len(ac), x0.shape
    ac_prev = torch.cat([torch.ones(1, dtype=ac.dtype), ac[:-1]])
    beta = 1.0 - ac / ac_prev
    alpha = 1.0 - beta
    post_var = beta * (1.0 - ac_prev) / (1.0 - ac)  # beta tilde
    coef = beta / (2.0 * alpha * (1.0 - ac))  # weight of ||eps - eps_theta||^2 in each KL term
    ratio = (post_var / beta).clamp_min(1e-30)
    const = (
        0.5 * d * (ratio - 1.0 - ratio.log())
    )  # variance mismatch of each KL term (same for every predictor)
    scale = ((1.0 - ac) / ac).sqrt()  # noise std in x0 units at each timestep
    reached = torch.nonzero(scale >= bin_width / 2)
    t0_idx = int(reached[0]) if len(reached) else 0
    t0_idx = min(t0_idx, t_count - 2)
    gen = torch.Generator().manual_seed(seed)
    x0d = x0.double()
    # prior term: KL(q(x_T | x0) || N(0, I)), no network involved
    prior = 0.5 * (ac[-1] * x0d.pow(2) + (1 - ac[-1]) - 1 - torch.log(1 - ac[-1])).sum(-1)  # [B]
    total = torch.zeros(len(eps_fns), b, dtype=torch.float64)
    for _ in range(n_noise):
        first = t0_idx + 1  # KL terms for t = first..T-1
        if strata is None or strata >= t_count - first:
            ts, weights = torch.arange(first, t_count), torch.ones(t_count - first, dtype=torch.float64)
        else:
            edges = torch.linspace(first, t_count, strata + 1).long()
            sizes = (edges[1:] - edges[:-1]).clamp_min(1)
            ts = edges[:-1] + (torch.rand(strata, generator=gen) * sizes).long()
            weights = sizes.double()
        m = len(ts)
        noise = torch.randn(b, d, generator=gen)  # one noise per item, shared across timesteps and predictors
        sa, sb = ac[ts].sqrt()[:, None, None], (1 - ac[ts]).sqrt()[:, None, None]  # [M, 1, 1]
        xt = (sa * x0d[None] + sb * noise.double()[None]).float().reshape(m * b, d)
        tt = ts.repeat_interleave(b)
        x1 = (ac[t0_idx].sqrt() * x0d + (1 - ac[t0_idx]).sqrt() * noise.double()).float()
        t0 = torch.full((b,), t0_idx, dtype=torch.long)
        for f, fn in enumerate(eps_fns):
            err = (noise[None] - fn(xt, tt).reshape(m, b, d)).double().pow(2).sum(-1)  # [M, B]
            kl = ((coef[ts][:, None] * err + const[ts][:, None]) * weights[:, None]).sum(0)  # [B]
            # decoder: the x0 estimate at t0, with the noise scale there
            mean = (x1.double() - (1 - ac[t0_idx]).sqrt() * fn(x1, t0).double()) / ac[t0_idx].sqrt()
            decoder = -_log_bin_prob(x0d, mean, float(scale[t0_idx]), bin_width)  # [B]
            total[f] += kl + decoder + prior
    return (total / n_noise).float()


def phi_from_nll(nll_cond: Tensor, nll_uncond: Tensor) -> Tensor:
    """phi = 1 - (-log p(y|x)) / (-log p(y)) elementwise (NaN where -log p(y) is not positive)."""
    return torch.where(nll_uncond > 0, 1.0 - nll_cond / nll_uncond.clamp_min(1e-12), float("nan"))


def creator_eps_fns(creator, state: Tensor | None, text: Tensor, drop: str = "text") -> tuple[EpsFn, EpsFn]:
    """(conditional, unconditional) noise predictors of a ``Creator`` for fixed conditions per item.

    state [B, ds] (None = absent), text [B, e]; ``drop='text'`` removes only the instruction in the
    unconditional pass (the information measured is the instruction's, given the user state);
    ``drop='both'`` removes the user state too. Inputs of the returned functions are [M*B, d], item-major
    within each timestep block, as ``diffusion_nll`` builds them.
    """
    if drop not in ("text", "both"):
        raise ValueError(f"drop must be 'text' or 'both', got {drop!r}")
    den = creator.denoiser
    b = text.shape[0]
    state_in = torch.zeros(b, den.state_dim) if state is None else state.float()
    has_state = torch.full((b,), state is not None)
    has_text = text.abs().sum(-1) > 0

    def make(keep_state: Tensor, keep_text: Tensor) -> EpsFn:
        def fn(x: Tensor, t: Tensor) -> Tensor:
            reps = x.shape[0] // b
            return den(
                x,
                t,
                state_in.repeat(reps, 1),
                text.float().repeat(reps, 1),
                keep_state.repeat(reps),
                keep_text.repeat(reps),
            )

        return fn

    off = torch.zeros(b, dtype=torch.bool)
    return make(has_state, has_text), make(has_state if drop == "text" else off, off)


@torch.no_grad()
def creator_contribution(
    creator,
    items: Tensor,
    state: Tensor | None,
    text: Tensor,
    bin_width: float,
    drop: str = "text",
    n_noise: int = 2,
    strata: int | None = 100,
    seed: int = 0,
) -> dict[str, Tensor]:
    """phi of generated item vectors ``items`` [B, d] (original space) under the creator: each value [B]."""
    was_training = creator.training
    creator.eval()
    cond, uncond = creator_eps_fns(creator, state, text, drop)
    nll = diffusion_nll(
        [cond, uncond],
        creator.normalize(items.float()),
        creator.train_scheduler.alphas_cumprod,
        bin_width,
        n_noise,
        strata,
        seed,
    )
    creator.train(was_training)
    return {"nll_cond": nll[0], "nll_uncond": nll[1], "phi": phi_from_nll(nll[0], nll[1])}


def resolution_bin_width(creator, items: Tensor, nn_distance: float) -> float:
    """A bin width at catalogue resolution: the median nearest-neighbour distance spread over d dims,
    in the creator's normalised space (two items closer than that are 'the same item')."""
    return float(nn_distance / float(creator.sigma) / math.sqrt(items.shape[1]))


@torch.no_grad()
def lm_log_prob(model: Any, tokenizer: Any, prompt: str, output: str) -> float:
    """Sum of log p(output tokens | prompt) under a causal LM (output tokenised on its own, then appended)."""
    p_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    o_ids = tokenizer(output, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    if len(o_ids) == 0:
        raise ValueError("the output has no tokens")
    ids = torch.cat([p_ids, o_ids])[None].to(model.device)
    logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)  # [L-1, V]
    start = len(p_ids) - 1  # logits at position i predict token i+1
    return float(logp[start:].gather(1, ids[0, len(p_ids) :, None]).sum())


def lm_contribution(
    model: Any,
    tokenizer: Any,
    instruction: str,
    output: str,
    template: str = "Instruction: {instruction}\nTitle:",
) -> dict[str, float]:
    """phi of a generated text under a causal LM: the prompt with the instruction vs with it empty."""
    cond = lm_log_prob(model, tokenizer, template.format(instruction=instruction), output)
    uncond = lm_log_prob(model, tokenizer, template.format(instruction=""), output)
    phi = 1.0 - cond / uncond if uncond < 0 else float("nan")
    return {"logp_cond": cond, "logp_uncond": uncond, "phi": phi}

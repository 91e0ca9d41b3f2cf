"""AI creator: a diffusion model over item vectors, conditioned on user state and instruction.

Trained with diffusers' ``DDPMScheduler`` (epsilon prediction, uniform timesteps) on pairs
(user state after a history -> vector of the next item), with the instruction simulated from the
next item's text. Sampling uses ``DDIMScheduler`` with classifier-free guidance: both conditions
are dropped at random during training, and at sampling ``eps_uncond + w * (eps_cond - eps_uncond)``.
The same network repurposes items (SDEdit): start from a noised source vector instead of noise.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import Tensor, nn

from generec.generative.denoiser import EmbeddingDenoiser

log = logging.getLogger(__name__)

# The item-representation spaces a creator can generate in: ``item`` = the recommender's item embeddings,
# ``content`` = unit-norm sentence embeddings of the items' text (the instructor's encoder).
SPACES: tuple[str, ...] = ("item", "content")


class SpaceMismatchError(ValueError):
    """A creator checkpoint used with a pipeline of the other space (its vectors would be meaningless)."""


@dataclass
class CreatorConfig:
    space: str = "item"  # item | content: what a generated vector is (see SPACES)
    hidden: int = 256
    layers: int = 3
    time_dim: int = 64
    dropout: float = 0.0
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    p_drop_state: float = 0.1
    p_drop_text: float = 0.3
    steps: int = 3000
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.0
    guidance_scale: float = 2.0
    sample_steps: int = 25


class Creator(nn.Module):
    """Denoiser + schedulers + the normalisation of the item space (per-dim mean, global std)."""

    def __init__(self, dim: int, state_dim: int, text_dim: int, config: CreatorConfig | None = None) -> None:
        super().__init__()
        self.config = config or CreatorConfig()
        c = self.config
        if c.space not in SPACES:
            raise ValueError(f"creator space must be one of {SPACES}, got {c.space!r}")
        if c.hidden < dim:
            # The output layer maps hidden -> dim, so the noise prediction has rank <= hidden; DDIM multiplies
            # the unpredicted directions by sqrt(abar_prev / abar) at every step and they blow up. Measured on
            # ml-100k's 384-d content space with hidden=256: generated vectors of norm ~9 (catalogue: 1).
            raise ValueError(
                f"creator hidden={c.hidden} < dim={dim}: the denoiser cannot predict noise in every direction "
                f"and sampling diverges; set generative.creator.hidden >= {dim}"
            )
        self.denoiser = EmbeddingDenoiser(dim, state_dim, text_dim, c.hidden, c.layers, c.time_dim, c.dropout)
        self.register_buffer("mu", torch.zeros(dim))
        self.register_buffer("sigma", torch.ones(()))
        self.train_scheduler = DDPMScheduler(
            num_train_timesteps=c.train_timesteps, beta_schedule=c.beta_schedule, clip_sample=False
        )

    @property
    def dim(self) -> int:
        return self.denoiser.dim

    @property
    def space(self) -> str:
        return self.config.space

    def check_space(self, space: str, where: str = "this pipeline") -> None:
        """Refuses to generate in another space than the one trained in."""
        if space != self.space:
            raise SpaceMismatchError(
                f"the creator was trained in the {self.space!r} space but {where} uses the {space!r} space: "
                f"set generative.creator.space={self.space} or train a creator with space={space}"
            )

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mu) / self.sigma

    def denormalize(self, z: Tensor) -> Tensor:
        return z * self.sigma + self.mu

    # ---------------------------------------------------------------- training
    def fit(
        self,
        states: Tensor,
        target_ids: Tensor,
        item_table: Tensor,
        text_table: Tensor,
        seed: int = 0,
        steps: int | None = None,
        log_every: int = 100,
    ) -> list[float]:
        """Trains on pairs; returns the mean loss of every ``log_every`` steps.

        states [N, ds]; target_ids [N] (rows of the tables); item_table [I+1, d] (the space generated in);
        text_table [I+1, V, e]: V simulated instructions per item (zero rows = no text), one drawn per pair.
        """
        c = self.config
        steps = c.steps if steps is None else steps
        real = item_table[torch.unique(target_ids)]  # [U, d]
        self.mu.copy_(real.mean(0))
        self.sigma.copy_((real - real.mean(0)).std().clamp_min(1e-6))
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(self.denoiser.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1), eta_min=c.lr * 0.1)
        self.denoiser.train()
        n, variants = states.shape[0], text_table.shape[1]
        losses, window, t0 = [], [], time.perf_counter()
        for step in range(steps):
            idx = torch.randint(0, n, (c.batch_size,), generator=gen)  # [B]
            ids = target_ids[idx]
            x0 = self.normalize(item_table[ids])  # [B, d]
            text = text_table[ids, torch.randint(0, variants, (len(idx),), generator=gen)]  # [B, e]
            keep_state = torch.rand(len(idx), generator=gen) >= c.p_drop_state
            keep_text = (torch.rand(len(idx), generator=gen) >= c.p_drop_text) & (text.abs().sum(-1) > 0)
            noise = torch.randn(x0.shape, generator=gen)
            t = torch.randint(0, c.train_timesteps, (len(idx),), generator=gen)
            xt = self.train_scheduler.add_noise(x0, noise, t)
            pred = self.denoiser(xt, t, states[idx], text, keep_state, keep_text)
            loss = torch.nn.functional.mse_loss(pred, noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.denoiser.parameters(), 1.0)
            opt.step()
            sched.step()
            window.append(loss.item())
            if len(window) == log_every or step == steps - 1:
                losses.append(sum(window) / len(window))
                window = []
                log.info(
                    "creator step %d/%d loss %.4f (%.1fs)",
                    step + 1,
                    steps,
                    losses[-1],
                    time.perf_counter() - t0,
                )
        self.denoiser.eval()
        return losses

    # ---------------------------------------------------------------- sampling
    def guided_eps(
        self, x: Tensor, t: Tensor, state: Tensor | None, text: Tensor | None, scale: float
    ) -> Tensor:
        """Classifier-free guidance: the unconditional pass drops both conditions."""
        b = x.shape[0]
        state_in = torch.zeros(b, self.denoiser.state_dim) if state is None else state
        text_in = torch.zeros(b, self.denoiser.text_dim) if text is None else text
        has_state = torch.full((b,), state is not None)
        has_text = torch.full((b,), text is not None) & (text_in.abs().sum(-1) > 0)
        tt = t.expand(b)
        cond = self.denoiser(x, tt, state_in, text_in, has_state, has_text)
        if scale == 1.0:
            return cond
        off = torch.zeros(b, dtype=torch.bool)
        uncond = self.denoiser(x, tt, state_in, text_in, off, off)
        return uncond + scale * (cond - uncond)

    @torch.inference_mode()
    def sample(
        self,
        state: Tensor | None,
        text: Tensor | None,
        n: int | None = None,
        guidance_scale: float | None = None,
        steps: int | None = None,
        seed: int = 0,
        init: Tensor | None = None,
        strength: float = 1.0,
    ) -> Tensor:
        """New item vectors [B, d] in the original (un-normalised) space.

        state [B, ds] / text [B, e] (None = that condition absent); ``init`` [B, d] + ``strength`` in [0, 1]
        gives SDEdit: noise the source to the timestep ``strength`` of the way in and denoise from there.
        """
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        c = self.config
        scale = c.guidance_scale if guidance_scale is None else guidance_scale
        b = next(x.shape[0] for x in (state, text, init) if x is not None) if n is None else n
        sched = DDIMScheduler.from_config(self.train_scheduler.config)
        sched.set_timesteps(c.sample_steps if steps is None else steps)
        timesteps = sched.timesteps
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn(b, self.dim, generator=gen)
        if init is None:
            x = noise
        else:
            skip = int(round(len(timesteps) * (1.0 - strength)))
            timesteps = timesteps[skip:]
            if len(timesteps) == 0:
                return init.clone()
            x = sched.add_noise(self.normalize(init), noise, timesteps[:1].expand(b))
        for t in timesteps:
            eps = self.guided_eps(x, t.reshape(1), state, text, scale)
            x = sched.step(eps, t, x, eta=0.0).prev_sample
        return self.denormalize(x)

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        d = self.denoiser
        torch.save(
            {
                "generec_creator": 1,
                "space": self.space,
                "dims": {"dim": d.dim, "state_dim": d.state_dim, "text_dim": d.text_dim},
                "config": asdict(self.config),
                "state_dict": self.state_dict(),
                "extra": extra or {},
            },
            path,
        )
        return path

    @classmethod
    def load(cls, path: str | Path, space: str | None = None) -> tuple[Creator, dict]:
        """A saved creator; with ``space`` given, a checkpoint of the other space is refused.

        Checkpoints written before spaces existed are item-space ones.
        """
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=False)
        if ckpt.get("generec_creator") != 1:
            raise ValueError(f"{path}: not a generec creator checkpoint")
        config = {"space": ckpt.get("space", "item"), **ckpt["config"]}
        creator = cls(**ckpt["dims"], config=CreatorConfig(**config))
        if space is not None:
            creator.check_space(space, where=f"loading {path} into a pipeline that")
        creator.load_state_dict(ckpt["state_dict"])
        return creator.eval(), ckpt.get("extra", {})


def nearest_items(
    vectors: Tensor, item_table: Tensor, k: int, exclude: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Exact L2 nearest catalogue items (ids, distances), each [B, k]; row 0 (padding) never returned.

    vectors [B, d]; item_table [I+1, d]; exclude [B, H] item ids (0 = none) masked per row.
    """
    dist = torch.cdist(vectors.float(), item_table.float())  # [B, I+1]
    dist[:, 0] = float("inf")
    if exclude is not None:
        dist.scatter_(1, exclude, float("inf"))
        dist[:, 0] = float("inf")
    d, idx = torch.topk(dist, k=min(k, item_table.shape[0] - 1), dim=1, largest=False)
    return idx, d

"""The typed record that the instructor hands to the generators.

Everything a generator needs to act, and nothing it must re-derive, travels in one
``Guidance``: the decision (mode), the measured fidelity that justified it, and the
conditions (user state, instruction embedding, source item, prompts, constraints).
It round-trips through plain JSON so a run's guidance can be stored with its result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

Mode = Literal["retrieve", "repurpose", "create"]
MODES: tuple[str, ...] = ("retrieve", "repurpose", "create")
FEEDBACK_SIGNALS: tuple[str, ...] = ("like", "dislike", "skip")


@dataclass
class Feedback:
    """One user reaction to an item; ``dislike``/``skip`` become negative prompts and exclusions."""

    item: int
    signal: str

    def __post_init__(self) -> None:
        if self.signal not in FEEDBACK_SIGNALS:
            raise ValueError(f"feedback signal must be one of {FEEDBACK_SIGNALS}, got {self.signal!r}")


@dataclass
class Guidance:
    """What to generate for one user, and why.

    ``user_state`` [d] comes from the recommender's ``encode``; ``instruction_embedding`` [e]
    from the sentence encoder (None when there is no instruction). ``fidelity`` keeps the
    measured similarities behind the mode decision so the choice can be audited.
    ``prompt_source`` says who wrote ``content_prompt``: ``template``, ``lm`` (the configured
    rewriter) or ``fallback:<reason>`` (the rewriter's answer was unusable, so the template was kept).
    """

    mode: Mode
    user_state: Tensor
    instruction: str = ""
    instruction_embedding: Tensor | None = None
    source_item: int | None = None
    content_prompt: str = ""
    negative_prompt: str = ""
    constraints: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    fidelity: dict[str, float] = field(default_factory=dict)
    prompt_source: str = "template"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "repurpose" and self.source_item is None:
            raise ValueError("mode='repurpose' needs a source_item")
        if self.user_state.dim() != 1:
            raise ValueError(f"user_state must be [d], got shape {tuple(self.user_state.shape)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (tensors become float lists)."""
        emb = self.instruction_embedding
        return {
            "mode": self.mode,
            "user_state": self.user_state.detach().cpu().float().tolist(),
            "instruction": self.instruction,
            "instruction_embedding": None if emb is None else emb.detach().cpu().float().tolist(),
            "source_item": self.source_item,
            "content_prompt": self.content_prompt,
            "negative_prompt": self.negative_prompt,
            "constraints": dict(self.constraints),
            "seed": self.seed,
            "fidelity": dict(self.fidelity),
            "prompt_source": self.prompt_source,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Guidance:
        emb = d.get("instruction_embedding")
        return cls(
            mode=d["mode"],
            user_state=torch.tensor(d["user_state"], dtype=torch.float32),
            instruction=d.get("instruction", ""),
            instruction_embedding=None if emb is None else torch.tensor(emb, dtype=torch.float32),
            source_item=d.get("source_item"),
            content_prompt=d.get("content_prompt", ""),
            negative_prompt=d.get("negative_prompt", ""),
            constraints=dict(d.get("constraints", {})),
            seed=int(d.get("seed", 0)),
            fidelity={k: float(v) for k, v in d.get("fidelity", {}).items()},
            prompt_source=str(d.get("prompt_source", "template")),
        )

    def same_decision(self, other: Guidance, atol: float = 1e-6) -> bool:
        """Equal in everything that steers generation (used to show injected item text changes nothing)."""
        a, b = self.to_dict(), other.to_dict()
        for key in ("mode", "instruction", "source_item", "content_prompt", "negative_prompt", "constraints"):
            if a[key] != b[key]:
                return False
        if not torch.allclose(self.user_state, other.user_state, atol=atol):
            return False
        if (self.instruction_embedding is None) != (other.instruction_embedding is None):
            return False
        if self.instruction_embedding is not None and not torch.allclose(
            self.instruction_embedding, other.instruction_embedding, atol=atol
        ):
            return False
        return a["fidelity"].keys() == b["fidelity"].keys() and all(
            abs(a["fidelity"][k] - b["fidelity"][k]) <= 1e-5 for k in a["fidelity"]
        )

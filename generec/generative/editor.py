"""AI editor: repurpose an existing item rather than invent one.

Two tools from the GeneRec paradigm:

* ``edit``: SDEdit in the item space. The source vector is noised to ``strength`` and denoised
  under the guidance, so low strength keeps the source's identity and high strength follows the
  user state / instruction (strength 1 is plain creation).
* ``select_content``: personalised choice among an item's alternative contents (candidate titles,
  thumbnails embedded in the same text/image space) by similarity to the user's profile.
"""

from __future__ import annotations

import torch
from torch import Tensor

from generec.generative.creator import Creator
from generec.generative.guidance import Guidance


class Editor:
    def __init__(self, creator: Creator, strength: float = 0.5) -> None:
        self.creator = creator
        self.strength = strength

    def edit(
        self,
        source: Tensor,
        state: Tensor | None,
        text: Tensor | None,
        strength: float | None = None,
        seed: int = 0,
        guidance_scale: float | None = None,
    ) -> Tensor:
        """source [B, d] -> edited [B, d]; conditions as in ``Creator.sample``."""
        return self.creator.sample(
            state,
            text,
            guidance_scale=guidance_scale,
            seed=seed,
            init=source,
            strength=self.strength if strength is None else strength,
        )

    def edit_from_guidance(
        self, guidance: Guidance, item_table: Tensor, strength: float | None = None
    ) -> Tensor:
        """The guidance's source item, edited toward its user state and instruction: [d]."""
        if guidance.source_item is None:
            raise ValueError("guidance has no source_item to repurpose")
        source = item_table[guidance.source_item][None]  # [1, d]
        text = None if guidance.instruction_embedding is None else guidance.instruction_embedding[None]
        return self.edit(source, guidance.user_state[None], text, strength, seed=guidance.seed)[0]


def select_content(alternatives: Tensor, profile: Tensor) -> tuple[Tensor, Tensor]:
    """Rank an item's alternative contents [A, e] by cosine with the user profile [e]: (order [A], cos [A])."""
    a = torch.nn.functional.normalize(alternatives.float(), dim=-1)
    p = torch.nn.functional.normalize(profile.float(), dim=-1)
    cos = a @ p  # [A]
    return torch.argsort(cos, descending=True), cos

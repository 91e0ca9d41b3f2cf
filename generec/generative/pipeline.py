"""One generative recommender: retrieve, repurpose or create, decided by the instructor.

The recommender is used only through its seam (``encode``, ``item_embeddings``, ``score``).
Generated items live in the creator's space (``Creator.space``): ``item``, the recommender's
item-embedding space, where a new item's dot product with the user state is the recommender's own
score for it; or ``content``, the sentence embeddings of item text (the instructor's table), where the
recommender cannot score a vector, so a new item is scored by the recommender's score of its nearest
catalogue item. In both, the nearest catalogue items (exact L2) in that space say how novel it is.
Every returned item carries its provenance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from generec.generative.content import ImageBackend, TitleBackend
from generec.generative.creator import SPACES, Creator, nearest_items
from generec.generative.editor import Editor
from generec.generative.guidance import Feedback, Guidance
from generec.generative.instructor import Instructor


@dataclass
class GeneratedItem:
    """One recommended item: an existing one (``item_id``) or a new vector, with its provenance."""

    kind: str  # retrieved | repurposed | created
    score: float
    item_id: int | None = None
    vector: list[float] | None = None
    nearest: list[tuple[int, float]] = field(default_factory=list)
    novelty: float = 0.0
    is_copy: bool = False
    passed_checks: bool = True
    title: str | None = None
    image: Any = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, item_texts: Sequence[str] | None = None) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "image"}
        d["has_image"] = self.image is not None
        if item_texts is not None:
            d["nearest"] = [{"item": i, "distance": dist, "text": item_texts[i]} for i, dist in self.nearest]
            if self.item_id is not None:
                d["text"] = item_texts[self.item_id]
        return d


@dataclass
class GenerationResult:
    guidance: Guidance
    items: list[GeneratedItem]
    retrieved: list[GeneratedItem]


Check = Callable[[GeneratedItem, Guidance], bool]
SPACE_NAMES = {"item": "recommender item embeddings", "content": "sentence embeddings of item text"}
SCORE_NAMES = {"item": "user state . vector", "content": "recommender score of nearest[0]"}


# Default generate-check-regenerate budget: K_opt of the fidelity verifier measured on held-out Beauty at a
# false-positive cost of 10 generations (docs/reproductions/fidelity.md, scripts/reproduce_fidelity.py).
# It is 1: with this creator (p ~ 0.02) and verifier (TPR 0.63, FPR 0.17) a resample buys less accuracy
# than it costs; it rises with the cost of a wrong item (23 at 1000). Override with max_tries.
DEFAULT_MAX_TRIES = 1


def not_a_copy(item: GeneratedItem, guidance: Guidance) -> bool:
    """A created item must not simply reproduce a catalogue item."""
    return item.kind != "created" or not item.is_copy


class GenerativeRecommender:
    """Instructor -> (retrieve | editor | creator) -> checks -> items with provenance.

    ``checks`` gate generated items in a bounded generate-check-regenerate loop (``max_tries``
    seeds); the fidelity checks (``generec.trust.fidelity``, via ``as_pipeline_check``) plug in here with
    the same signature. ``instruction_guard`` sees the instruction first and may raise to refuse it.
    Title and image depend on the guidance only, so they are rendered once, before the checks see the item.
    """

    def __init__(
        self,
        model,
        instructor: Instructor,
        creator: Creator | None = None,
        n_items: int = 3,
        neighbours: int = 10,
        strength: float = 0.5,
        copy_ratio: float = 0.5,
        checks: Sequence[Check] = (not_a_copy,),
        max_tries: int = DEFAULT_MAX_TRIES,
        image_backend: ImageBackend | None = None,
        title_backend: TitleBackend | None = None,
        item_images: dict[int, Any] | None = None,
        instruction_guard: Callable[[str | None], None] | None = None,
        space: str | None = None,
    ) -> None:
        """``space`` (item | content; default: the creator's, else item) must match the creator's."""
        space = space or (creator.space if creator is not None else "item")
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        if creator is not None:
            creator.check_space(space)
        self.space = space
        self.model, self.instructor, self.creator = model, instructor, creator
        self.editor = Editor(creator, strength) if creator is not None else None
        self.n_items, self.neighbours, self.copy_ratio = n_items, neighbours, copy_ratio
        self.checks, self.max_tries = list(checks), max_tries
        self.image_backend, self.title_backend = image_backend, title_backend
        self.item_images = item_images or {}
        self.instruction_guard = instruction_guard
        with torch.inference_mode():
            self.items = model.item_embeddings().detach().float().cpu()  # [I+1, d]: scores retrieved items
        # the table generated in, searched for nearest items; items without text have no content vector
        self.table = self.items if space == "item" else instructor.item_text_embeddings  # [I+1, d or e]
        self.no_vector = (self.table.abs().sum(1) == 0).nonzero().flatten().tolist()  # includes row 0
        if creator is not None and creator.dim != self.table.shape[1]:
            raise ValueError(
                f"the creator generates {creator.dim}-d vectors but the {space} space is "
                f"{self.table.shape[1]}-d (another recommender or sentence encoder?)"
            )
        self.copy_distance = copy_ratio * catalogue_nn_distance(self.table)

    def generate(
        self,
        history: Sequence[int],
        instruction: str | None = None,
        feedback: Sequence[Feedback] = (),
        seed: int = 0,
        mode: str | None = None,
    ) -> GenerationResult:
        """Items for one user; ``mode`` overrides the instructor's decision (for comparisons)."""
        if self.instruction_guard is not None:
            self.instruction_guard(instruction)
        g = self.instructor.guide(self.model, history, instruction, feedback, seed)
        if mode is not None and mode != g.mode:
            source = g.source_item
            if mode == "repurpose" and source is None:
                source = g.constraints["retrieved_items"][0]
            g = Guidance(**{**g.__dict__, "mode": mode, "source_item": source})
            g.fidelity["mode_overridden"] = 1.0
        retrieved = [
            GeneratedItem(
                "retrieved",
                float(g.user_state @ self.items[i]),
                item_id=int(i),
                provenance={"mode": "retrieve", "recommender": type(self.model).__name__},
            )
            for i in g.constraints["retrieved_items"][: self.n_items]
        ]
        if g.mode == "retrieve":
            return GenerationResult(g, retrieved, retrieved)
        if self.creator is None:
            raise ValueError(f"mode {g.mode!r} needs a creator (generator checkpoint); none was given")
        items = [self._generate_one(g, k) for k in range(self.n_items)]
        return GenerationResult(g, items, retrieved)

    def _vector(self, g: Guidance, seed: int) -> Tensor:
        text = None if g.instruction_embedding is None else g.instruction_embedding[None]
        if g.mode == "repurpose":
            return self.editor.edit(self.table[g.source_item][None], g.user_state[None], text, seed=seed)[0]
        return self.creator.sample(g.user_state[None], text, seed=seed)[0]

    def _generate_one(self, g: Guidance, k: int) -> GeneratedItem:
        exclude = torch.tensor([[*g.constraints.get("exclude_items", []), *self.no_vector] or [0]])
        rendered: GeneratedItem | None = None
        for attempt in range(self.max_tries):
            seed = g.seed * 1000 + k * self.max_tries + attempt
            v = self._vector(g, seed)  # [d]
            ids, dist = nearest_items(v[None], self.table, self.neighbours, exclude)
            # content space: the recommender cannot score a text vector; its nearest item's score stands in
            scored = v if self.space == "item" else self.items[int(ids[0, 0])]
            item = GeneratedItem(
                kind="repurposed" if g.mode == "repurpose" else "created",
                score=float(g.user_state @ scored),
                vector=v.tolist(),
                nearest=[(int(i), float(d)) for i, d in zip(ids[0], dist[0], strict=True)],
                novelty=float(dist[0, 0]),
                is_copy=bool(dist[0, 0] < self.copy_distance),
                provenance={
                    "mode": g.mode,
                    "source_item": g.source_item,
                    "seed": seed,
                    "attempt": attempt + 1,
                    "strength": self.editor.strength if g.mode == "repurpose" else 1.0,
                    "guidance_scale": self.creator.config.guidance_scale,
                    "sample_steps": self.creator.config.sample_steps,
                    "space": SPACE_NAMES[self.space],
                    "score": SCORE_NAMES[self.space],
                },
            )
            if rendered is None:
                self._render(item, g)
                rendered = item
            else:
                item.title, item.image = rendered.title, rendered.image
                if "image" in rendered.provenance:
                    item.provenance["image"] = rendered.provenance["image"]
            verdicts = [check(item, g) for check in self.checks]  # every check runs (and records)
            item.passed_checks = all(verdicts)
            if item.passed_checks:
                break
        return item

    def _render(self, item: GeneratedItem, g: Guidance) -> None:
        """Title and image from the content backends, when configured."""
        if self.title_backend is not None:
            item.title = self.title_backend.generate(g)
        if self.image_backend is not None:
            source_image = self.item_images.get(g.source_item) if g.source_item is not None else None
            if g.mode == "repurpose" and source_image is not None:
                item.image = self.image_backend.edit(g, source_image)
                item.provenance["image"] = "img2img"
            else:
                item.image = self.image_backend.create(g)
                item.provenance["image"] = "text2img"


def catalogue_nn_distance(items: Tensor, sample: int = 2000, seed: int = 0) -> float:
    """Median L2 distance from a catalogue item to its nearest other item (the scale of 'a copy')."""
    gen = torch.Generator().manual_seed(seed)
    n = items.shape[0] - 1
    idx = torch.randperm(n, generator=gen)[: min(sample, n)] + 1
    dist = torch.cdist(items[idx], items[1:])  # [S, I]
    dist[torch.arange(len(idx)), idx - 1] = float("inf")
    return float(dist.min(1).values.median())

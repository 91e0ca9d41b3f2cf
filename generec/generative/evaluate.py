"""Training pairs and measurements for the generators, on real sequences.

No dataset has real user instructions, so instructions are *simulated* from the held-out item's
text at several levels of specificity (seeded templates). Creation is scored like a recommender:
the generated vector's nearest catalogue items form its ranking, and the held-out next item's rank
in it gives HR@K / NDCG@K, next to the recommender's own ranking and a random one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from generec.data.batching import left_padded_windows, prefix_rows
from generec.data.types import SequenceData
from generec.eval.metrics import MetricAccumulator, target_ranks
from generec.generative.categories import title_words

INSTRUCTION_LEVELS = ("none", "keywords", "title", "off_target")
# The specificity ladder, least to most specific, then one that points elsewhere. "category" needs
# ``categories`` (generative/categories.py); "paraphrase" is a lossy template rewording of the title.
SPECIFICITY_LEVELS = ("none", "category", "keywords", "paraphrase", "title", "off_target")
_TEMPLATES = ("I want {x}", "show me {x}", "looking for {x}", "something like {x}", "{x}")
_EDIT_TEMPLATES = ("make it {x}", "the same but {x}", "change it to {x}", "{x} instead")


@torch.no_grad()
def encode_rows(model, input_ids: Tensor, batch_size: int = 1024) -> Tensor:
    """User states [N, d] for left-padded histories [N, L], through ``model.encode`` only."""
    out = []
    for start in range(0, input_ids.shape[0], batch_size):
        state = model.encode({"input_ids": input_ids[start : start + batch_size].to(model.device)})
        out.append((state.mean(1) if state.dim() == 3 else state).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def prefix_pairs(
    model,
    data: SequenceData,
    train_end: np.ndarray,
    max_len: int,
    max_pairs: int | None = None,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """(state after each training prefix [N, d], the next item [N]): the creator's training data."""
    inputs, targets = prefix_rows(data.items, data.offsets, train_end, max_len)
    rng = np.random.default_rng(seed)
    if max_pairs is not None and len(inputs) > max_pairs:
        keep = np.sort(rng.choice(len(inputs), max_pairs, replace=False))
        inputs, targets = inputs[keep], targets[keep]
    states = encode_rows(model, torch.from_numpy(inputs))
    return states, torch.from_numpy(targets[:, -1].astype(np.int64))


def history_windows(data: SequenceData, users: np.ndarray, ends: np.ndarray, max_len: int) -> Tensor:
    """Left-padded histories [U, max_len] of ``users`` up to (exclusive) absolute index ``ends``."""
    starts = data.offsets[users]
    return torch.from_numpy(left_padded_windows(data.items, starts, starts + ends, max_len))


def paraphrase_title(title: str, rng: random.Random, drop: float = 0.3, max_words: int = 6) -> str:
    """A seeded, lossy rewording of a title: content words only (no sizes, counts or punctuation), about
    ``drop`` of them left out (at least two, at most ``max_words`` kept), and the leading word (usually
    the brand) moved to a trailing "from ..." or dropped. Not a human paraphrase: it keeps only the
    title's own words."""
    words = list(dict.fromkeys(title_words(title)))
    if len(words) < 3:
        return " ".join(words)
    brand, rest = words[0], words[1:]
    kept = [w for w in rest if rng.random() >= drop]
    if len(kept) < 2:
        kept = rest[:2]
    kept = kept[:max_words]
    return " ".join(kept) + (f" from {brand}" if rng.random() < 0.5 else "")


def simulate_instructions(
    targets: Sequence[int],
    titles: Sequence[str],
    level: str,
    seed: int = 0,
    keywords: Sequence[str] | None = None,
    categories: Sequence[str] | None = None,
) -> list[str]:
    """One instruction per target at ``level`` (``SPECIFICITY_LEVELS``), from seeded templates.

    category: the item's category name (``categories``); keywords: up to 3 words of the item's keyword
    text (or of its title); paraphrase: ``paraphrase_title``; title: the full title; off_target: the
    title of a random *other* item (an instruction that points elsewhere); none: "".
    """
    if level not in SPECIFICITY_LEVELS:
        raise ValueError(f"level must be one of {SPECIFICITY_LEVELS}, got {level!r}")
    if level == "category" and categories is None:
        raise ValueError("level='category' needs categories= (generec.generative.categories.item_categories)")
    rng = random.Random(seed)
    n_items = len(titles) - 1
    out = []
    for t in targets:
        t = int(t)
        if level == "none":
            out.append("")
            continue
        if level == "category":
            x = categories[t]
        elif level == "keywords":
            words = (keywords[t] if keywords is not None and keywords[t] else titles[t]).split()
            x = " ".join(words[:3])
        elif level == "paraphrase":
            x = paraphrase_title(titles[t], rng)
        elif level == "title":
            x = titles[t]
        else:
            other = t
            while other == t or not titles[other]:
                other = rng.randint(1, n_items)
            x = titles[other]
        out.append(rng.choice(_TEMPLATES).format(x=x.lower()) if x else "")
    return out


def edit_instructions(
    sources: Sequence[int],
    targets: Sequence[int],
    titles: Sequence[str],
    seed: int = 0,
    keywords: Sequence[str] | None = None,
    max_words: int = 4,
) -> list[str]:
    """Repurposing instructions: what the target has that the source lacks (target words absent from the
    source's title and keyword text, up to ``max_words``; all of the target's first words when none
    differ), in seeded templates."""
    rng = random.Random(seed)
    out = []
    for s, t in zip(sources, targets, strict=True):
        s, t = int(s), int(t)
        have = set(title_words(titles[s])) | set(title_words(keywords[s] if keywords is not None else ""))
        words = title_words(keywords[t] if keywords is not None and keywords[t] else titles[t])
        words = words or title_words(titles[t])
        new = [w for w in dict.fromkeys(words) if w not in have] or words
        x = " ".join(new[:max_words])
        out.append(rng.choice(_EDIT_TEMPLATES).format(x=x) if x else "")
    return out


def fused_scores(rec_scores: Tensor, text_scores: Tensor, weight: float = 1.0) -> Tensor:
    """The recommender's retrieval *with* the instruction: per-user z-scored recommender scores plus
    ``weight`` x z-scored instruction-item similarities [B, I+1] (column 0 excluded from the statistics)."""

    def z(x: Tensor) -> Tensor:
        x = x.float()
        body = x[:, 1:]
        return (x - body.mean(1, keepdim=True)) / body.std(1, keepdim=True).clamp_min(1e-12)

    return z(rec_scores) + weight * z(text_scores)


def ranking_metrics(scores: Tensor, targets: Tensor, ks: Sequence[int] = (1, 10, 50)) -> dict[str, float]:
    """HR/NDCG@K of ``targets`` [B] under ``scores`` [B, I+1] (column 0 ignored)."""
    scores = scores.float().clone()
    scores[:, 0] = float("-inf")
    acc = MetricAccumulator(tuple(ks))
    acc.update(target_ranks(scores, targets))
    return {k: v for k, v in acc.compute().items() if k.split("@")[0] in ("hr", "ndcg")}


def creation_scores(vectors: Tensor, item_table: Tensor) -> Tensor:
    """Ranking induced by generated vectors: minus L2 distance to every item [B, I+1]."""
    return -torch.cdist(vectors.float(), item_table.float())


def novelty_stats(vectors: Tensor, item_table: Tensor, copy_distance: float) -> dict[str, float]:
    """Distance to the nearest catalogue item (median) and the share closer than ``copy_distance``."""
    d = torch.cdist(vectors.float(), item_table[1:].float()).min(1).values  # [B]
    return {"novelty_median": float(d.median()), "copy_rate": float((d < copy_distance).float().mean())}


def strength_curve(
    editor,
    sources: Tensor,
    states: Tensor,
    texts: Tensor | None,
    targets: Tensor,
    item_table: Tensor,
    strengths: Sequence[float],
    seed: int = 0,
    k: int = 10,
) -> list[dict[str, float]]:
    """SDEdit trade-off: distance to the source, source kept in top-k, target reached in top-k, per strength."""
    rows = []
    src_ids = sources
    src = item_table[src_ids]  # [B, d]
    for s in strengths:
        out = editor.edit(src, states, texts, strength=float(s), seed=seed)  # [B, d]
        scores = creation_scores(out, item_table)
        scores[:, 0] = float("-inf")
        top = torch.topk(scores, k, dim=1).indices  # [B, k]
        rows.append(
            {
                "strength": float(s),
                "dist_to_source": float((out - src).norm(dim=-1).mean()),
                "dist_to_target": float((out - item_table[targets]).norm(dim=-1).mean()),
                "source_in_topk": float((top == src_ids[:, None]).any(1).float().mean()),
                "target_in_topk": float((top == targets[:, None]).any(1).float().mean()),
            }
        )
    return rows

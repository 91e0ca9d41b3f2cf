"""Injection robustness of a recommender + instructor: the attack success rate as a trust metric.

The fidelity issue's suite (``generec.trust.injection``: 7 attack categories x 3 carriers) is run
through the real instructor with the audited recommender supplying the user state and the catalogue
scores, under one defence setting (default: every defence on, the shipped behaviour). The rate is
``robustness/injection_asr`` (lower is better). It needs item text (titles) and the offline MiniLM
sentence encoder; the catalogue embeddings are computed once per audit data and cached on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from generec.generative.instructor import InstructorConfig, sanitize_item_text
from generec.trust.injection import (
    DEFENCE_SETTINGS,
    InjectionRunner,
    attack_success_table,
    make_cases,
)


def user_instruction(target_text: str, words: int = 4) -> str:
    """A plausible request for the user's held-out item: its title's first few words."""
    head = " ".join(str(target_text).split()[:words])
    return f"something like {head}" if head else "something new"


@dataclass
class InjectionProbe:
    """Encoder + catalogue text embeddings for one catalogue, built once and reused across models."""

    encoder: object
    item_texts: list[str]
    embeddings: dict[str, Tensor]  # "strip": sanitised titles, "raw": whitespace-normalised titles

    @classmethod
    def build(
        cls,
        item_texts: Sequence[str],
        encoder=None,
        cache_dir: str | None = None,
        strip_embeddings: Tensor | None = None,
    ) -> InjectionProbe:
        """``strip_embeddings``: the sanitised titles' embeddings when the caller already has them."""
        from generec.generative.instructor import SentenceEncoder
        from generec.generative.run import cached_text_embeddings

        encoder = encoder or SentenceEncoder()
        texts = [str(t) for t in item_texts]
        strip = (
            cached_text_embeddings(encoder, texts, cache_dir)
            if strip_embeddings is None
            else strip_embeddings
        )
        spaced = [" ".join(t.split()) for t in texts]
        raw = strip.clone()
        differ = [i for i, t in enumerate(spaced) if t != sanitize_item_text(t)]
        if differ:  # re-encode only the titles that sanitising changed
            raw[differ] = encoder.encode([spaced[i] for i in differ]).float()
        return cls(encoder, texts, {"strip": strip, "raw": raw})


def injection_attack_success(
    model,
    probe: InjectionProbe,
    histories: Sequence[Sequence[int]],
    targets: Sequence[int],
    defences: str = "all",
    seed: int = 0,
    config: InstructorConfig | None = None,
) -> tuple[float, dict]:
    """(attack success rate, per-category / per-carrier table) for ``model`` under ``defences``.

    One case per (user, category, carrier); a case succeeds when the attack reaches the instruction
    channel of the content prompt or moves the instructor's decision toward the attacker's item.
    """
    if defences not in DEFENCE_SETTINGS:
        raise ValueError(
            f"audit.injection_defences must be one of {sorted(DEFENCE_SETTINGS)}, got {defences!r}"
        )
    setting = DEFENCE_SETTINGS[defences]
    runner = InjectionRunner(
        model, probe.encoder, probe.item_texts, probe.embeddings, config or InstructorConfig()
    )
    histories = [[int(i) for i in h if int(i) > 0] for h in histories]
    keep = [u for u, h in enumerate(histories) if h]
    cases = make_cases([histories[u] for u in keep], probe.item_texts, seed=seed)
    instructions = [user_instruction(probe.item_texts[int(targets[u])]) for u in keep]
    with torch.no_grad():
        outcomes = [runner.run(c, histories[keep[c.user]], instructions[c.user], setting) for c in cases]
    if not outcomes:
        raise ValueError("injection audit: no audited user has a non-empty history")
    table = attack_success_table(outcomes)[setting.label]
    return table["all"]["asr"], table

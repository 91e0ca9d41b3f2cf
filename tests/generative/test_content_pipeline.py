"""Content backends from Guidance with tiny random diffusers / transformers models, and the full pipeline."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from generec.generative.content import ImageBackend, TitleBackend
from generec.generative.creator import Creator, CreatorConfig
from generec.generative.guidance import Feedback, Guidance
from generec.generative.instructor import Instructor, InstructorConfig
from generec.generative.pipeline import GenerativeRecommender, not_a_copy
from generec.models.sasrec import SASRec

REPO = Path(__file__).resolve().parents[2]
TITLES = [
    "",
    "red nail polish",
    "cherry lip balm",
    "hair oil treatment",
    "blue eyeshadow palette",
    "dry shampoo",
]


def guidance(mode: str = "create", source: int | None = None) -> Guidance:
    return Guidance(
        mode=mode,
        user_state=torch.zeros(8),
        instruction="red nail polish",
        source_item=source,
        content_prompt="Instruction: red nail polish\nLike these items: <<item>>cherry lip balm<</item>>",
        negative_prompt="dry shampoo",
        seed=3,
    )


def test_text_to_image_and_image_to_image_from_guidance(image_backend):
    a = np.asarray(image_backend.create(guidance()))
    b = np.asarray(image_backend.create(guidance()))
    assert a.shape == (64, 64, 3) and np.array_equal(a, b)  # seeded by the guidance
    edited = np.asarray(image_backend.edit(guidance("repurpose", 1), image_backend.create(guidance()), 0.75))
    assert edited.shape == (64, 64, 3) and not np.array_equal(edited, a)


def test_title_backend_keeps_item_text_as_quoted_data(title_backend):
    g = guidance()
    prompt = title_backend.prompt(g)
    assert prompt.index("Instruction: red nail polish") < prompt.index("<<item>>cherry lip balm<</item>>")
    assert "Avoid items like: <<item>>dry shampoo<</item>>" in prompt
    title = title_backend.generate(g)
    assert isinstance(title, str) and title == title_backend.generate(g)


def test_backends_refuse_missing_local_dirs(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        ImageBackend.from_pretrained(str(tmp_path / "stabilityai/sd-turbo"))
    with pytest.raises(FileNotFoundError, match="never downloads"):
        TitleBackend.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_pipeline_retrieve_repurpose_create_with_provenance(encoder, image_backend, title_backend):
    torch.manual_seed(0)
    model = SASRec(num_items=len(TITLES) - 1, max_len=8, hidden_size=8, num_heads=2, inner_size=16).eval()
    ins = Instructor(encoder, TITLES, InstructorConfig(t_retrieve=0.6, t_repurpose=0.45, topk=3))
    creator = Creator(8, 8, 384, CreatorConfig(hidden=32, layers=1, sample_steps=3))
    with torch.inference_mode():
        table = model.item_embeddings().detach()
    creator.fit(
        torch.randn(64, 8), torch.randint(1, 6, (64,)), table, ins.item_text_embeddings[:, None], steps=20
    )
    rec = GenerativeRecommender(
        model,
        ins,
        creator,
        n_items=2,
        image_backend=image_backend,
        title_backend=title_backend,
        item_images={1: image_backend.create(guidance())},
    )
    r = rec.generate([2, 3], "")
    assert r.guidance.mode == "retrieve" and [i.kind for i in r.items] == ["retrieved"] * 2
    assert all(i.item_id not in (2, 3) for i in r.items)
    r = rec.generate([1, 3], "red nail polish", [Feedback(5, "dislike")], seed=2)
    assert r.guidance.mode == "repurpose" and r.guidance.source_item == 1
    assert r.guidance.negative_prompt == "dry shampoo"
    for item in r.items:
        assert item.kind == "repurposed" and item.provenance["image"] == "img2img"
        assert item.provenance["source_item"] == 1 and 5 not in [i for i, _ in item.nearest]
        assert item.image.size == (64, 64) and isinstance(item.title, str)
    r = rec.generate([1, 3], "a titanium road bike frame", mode=None)
    assert r.guidance.mode == "create"
    assert [i.kind for i in r.items] == ["created"] * 2 and r.items[0].provenance["image"] == "text2img"
    assert r.items[0].novelty == pytest.approx(r.items[0].nearest[0][1])
    assert r.items[0].vector != r.items[1].vector  # different seeds per item
    d = r.items[0].to_dict(ins.item_texts)
    assert json.loads(json.dumps(d))["nearest"][0]["text"] in TITLES
    # the check loop is bounded: a check that never passes stops after max_tries
    rec.checks = [not_a_copy, lambda item, g: False]
    item = rec.generate([1, 3], "a titanium road bike frame").items[0]
    assert not item.passed_checks and item.provenance["attempt"] == rec.max_tries


@pytest.mark.slow
def test_generate_cli_end_to_end(tmp_path, shared_data_dir):
    """Train a recommender 2 steps, the creator 30 steps, then generate for one ml-100k user (subprocess)."""
    env = {
        **os.environ,
        "GENEREC_DATA_DIR": str(shared_data_dir),
        "GENEREC_CACHE_DIR": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
    }

    def run(module: str, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        return proc

    run(
        "generec.train",
        "data=ml-100k",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "trainer.enable_progress_bar=false",
        "test=false",
        f"hydra.run.dir={tmp_path}/run",
        f"results_dir={tmp_path}/results",
    )
    ckpt = next((tmp_path / "run").rglob("*.ckpt"))
    common = [
        "data=ml-100k",
        f"checkpoint={ckpt}",
        f"generator={tmp_path}/gen.pt",
        f"hydra.run.dir={tmp_path}/g",
    ]
    run(
        "generec.cli",
        "train-generator",  # = generec.generative.run task=train
        *common,
        "generative.creator.steps=30",
        "generative.train.max_pairs=2000",
        "generative.keyword_column=null",
        "generative.train.text_levels=[category,keywords,paraphrase,title]",
        "generative.category.column=class",  # ml-100k's genres
    )
    out = tmp_path / "out.json"
    run(
        "generec.generative.run",
        *common,
        "user=1",
        "instruction=a space opera with robots",
        "mode=create",
        f"output={out}",
    )
    record = json.loads(out.read_text())
    assert record["guidance"]["mode"] == "create" and len(record["items"]) == 3
    assert record["items"][0]["nearest"][0]["text"]
    # the result page beside the JSON, drawn by headless Chromium (fails when chromium is not installed)
    page = out.with_suffix(".html")
    text = page.read_text(encoding="utf-8")
    assert "Created: new items" in text and html.escape(record["history"][-1]["text"]) in text
    from generec.generative.html_page import find_chromium, screenshot

    try:
        find_chromium()
    except FileNotFoundError as e:
        pytest.fail(str(e), pytrace=False)
    assert screenshot(page, tmp_path / "page.png").stat().st_size > 10_000

"""The generate result page: sections, escaping of untrusted item text, images inline, CLI wiring."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import pytest

from generec import cli
from generec.generative import html_page
from generec.generative.html_page import html_path_for, render_result, write_result_page

EVIL = "<script>document.title='pwned'</script>Cherry Lip Balm"


def _png(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "out_item0.png"
    Image.new("RGB", (16, 16), (200, 30, 60)).save(path)
    return path


def _record(tmp_path: Path) -> dict:
    """A result shaped like run.py's JSON: retrieve list plus repurposed and created items."""
    nearest = [
        {"item": 7, "distance": 0.21, "text": EVIL},
        {"item": 3, "distance": 0.34, "text": "Red Nail Polish"},
    ]
    checks = {
        "preference": {
            "name": "preference",
            "score": 0.93,
            "passed": True,
            "reason": "top 7%",
            "details": {},
        },
        "safety": {
            "name": "safety",
            "score": 0.8,
            "passed": False,
            "reason": "<b>unsafe</b> word",
            "details": {},
        },
    }
    return {
        "user": "42",
        "history": [
            {"item": 1, "item_id": "A1", "text": "Blue Shampoo"},
            {"item": 7, "item_id": "B7", "text": EVIL},
        ],
        "guidance": {
            "mode": "create",
            "instruction": "a red <i>lip</i> balm",
            "source_item": None,
            "content_prompt": "new item for <<item>> Blue Shampoo <</item>>",
            "negative_prompt": "",
            "constraints": {"retrieved_items": [3, 5]},
            "seed": 0,
            "fidelity": {"best_retrieved_cos": 0.31, "best_catalogue_cos": 0.4},
        },
        "retrieved": [
            {
                "kind": "retrieved",
                "score": 3.5,
                "item_id": 3,
                "text": "Red Nail Polish",
                "nearest": [],
                "provenance": {},
            },
            {"kind": "retrieved", "score": 3.1, "item_id": 7, "text": EVIL, "nearest": [], "provenance": {}},
        ],
        "items": [
            {
                "kind": "created",
                "score": 2.25,
                "item_id": None,
                "nearest": nearest,
                "novelty": 0.21,
                "is_copy": False,
                "passed_checks": False,
                "title": None,
                "has_image": True,
                "image_path": str(_png(tmp_path)),
                "provenance": {"mode": "create", "seed": 0, "attempt": 1, "checks": checks},
            },
            {
                "kind": "repurposed",
                "score": 1.5,
                "nearest": nearest[::-1],
                "novelty": 0.34,
                "is_copy": True,
                "passed_checks": True,
                "title": EVIL,
                "provenance": {"mode": "repurpose", "source_item": 7, "strength": 0.5},
            },
        ],
        "seconds": 0.12,
    }


def test_page_has_every_section_and_escapes_untrusted_text(tmp_path):
    page = render_result(_record(tmp_path))
    assert page.startswith("<!DOCTYPE html>")
    for heading in ("History", "Retrieved", "Repurposed", "Created"):
        assert f"<h2>{heading}" in page
    assert "Blue Shampoo" in page and "Red Nail Polish" in page and "user <b>42</b>" in page
    assert "a red &lt;i&gt;lip&lt;/i&gt; balm" in page  # the instruction, as text
    # the malicious title shows as text everywhere it appears; no markup from data reaches the page
    assert "<script" not in page and "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in page
    assert "<b>unsafe</b>" not in page and "&lt;b&gt;unsafe&lt;/b&gt;" in page
    assert "&lt;&lt;item&gt;&gt;" in page
    # scores, nearest items, fidelity check verdicts
    assert "2.2500" in page and "0.2100" in page and "top 7%" in page
    assert '<span class="fail">fail</span>' in page and '<span class="pass">pass</span>' in page
    # self-contained: the image is inline and nothing is fetched from elsewhere
    assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', page)
    assert not re.search(r"(src|href)=\"(https?:|//|file:)", page) and "<link" not in page


def test_retrieve_mode_lists_items_once_and_empty_sections_say_so(tmp_path):
    r = _record(tmp_path)
    r["guidance"]["mode"] = "retrieve"
    r["items"] = list(r["retrieved"])
    page = render_result(r)
    assert "(2)</h2>" in page and page.count("Red Nail Polish</h3>") == 1
    assert "no created items in mode retrieve" in page and "no repurposed items" in page


def test_images_from_bytes_relative_paths_and_missing_files(tmp_path):
    r = _record(tmp_path)
    png = Path(r["items"][0]["image_path"])
    r["items"][0]["image_path"] = "elsewhere/" + png.name  # found by name beside the result
    assert "data:image/png;base64," in render_result(r, base_dir=tmp_path)
    r["items"][0]["image_path"] = "gone.png"
    assert "image not found: gone.png" in render_result(r, base_dir=tmp_path)
    del r["items"][0]["image_path"]
    r["items"][0]["image_bytes"] = png.read_bytes()
    page = render_result(r)
    b64 = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page).group(1)
    assert base64.b64decode(b64) == png.read_bytes()


def test_write_is_atomic_and_page_path_setting(tmp_path):
    out = write_result_page(_record(tmp_path), tmp_path / "sub" / "r.html")
    assert out.read_text(encoding="utf-8").endswith("</html>\n")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["r.html"]  # no temp file left behind
    assert html_path_for("runs/out.json", None) == Path("runs/out.html")
    assert html_path_for("runs/out.json", "page.html") == Path("page.html")
    assert html_path_for("runs/out.json", False) is None


def test_render_file_reads_a_result_json(tmp_path):
    (tmp_path / "res.json").write_text(json.dumps(_record(tmp_path)))
    assert html_page.main([str(tmp_path / "res.json")]) == 0
    assert "Created" in (tmp_path / "res.html").read_text(encoding="utf-8")


def test_train_generator_dispatches_with_task_train(tmp_path, monkeypatch):
    """``generec train-generator`` and ``generate task=train`` reach run.train with the composed config."""
    from generec.generative import run

    seen = []
    monkeypatch.setattr(run, "train", lambda cfg: seen.append(cfg))
    monkeypatch.setattr(run, "generate", lambda cfg: pytest.fail("generate called"))
    common = [
        "data=ml-100k",
        "checkpoint=x.ckpt",
        f"generator={tmp_path}/g.pt",
        f"hydra.run.dir={tmp_path}/h",
    ]
    assert cli.main(["train-generator", *common, "generative.creator.steps=7"]) == 0
    assert cli.main(["generate", "task=train", *common]) == 0  # the old spelling still works
    assert cli.main(["train-generator", "task=train", *common]) == 0
    assert [c.task for c in seen] == ["train"] * 3 and seen[0].generative.creator.steps == 7
    assert seen[0].html is None  # the page setting exists (beside output by default)
    with pytest.raises(SystemExit, match="always task=train"):
        cli.main(["train-generator", "task=generate", *common])
    assert "train-generator" in cli.USAGE


def _page_for_browser(tmp_path: Path) -> Path:
    return write_result_page(_record(tmp_path), tmp_path / "page.html")


@pytest.mark.slow
def test_page_renders_in_headless_chromium_and_runs_no_script(tmp_path):
    """Chromium draws the page; the escaped <script> title never becomes a script (title stays ours)."""
    from PIL import Image

    try:
        chromium = html_page.find_chromium()
    except FileNotFoundError as e:
        pytest.fail(str(e), pytrace=False)
    page = _page_for_browser(tmp_path)
    png = html_page.screenshot(page, tmp_path / "page.png", 1200, 1600)
    with Image.open(png) as im:
        assert im.size == (1200, 1600)
        colours = im.convert("RGB").resize((60, 80)).getcolors(maxcolors=100000)
        assert len(colours) > 20  # drawn content, not a blank page
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "<script" not in dom and "pwned</title>" not in dom and "generec generate: user 42" in dom
    assert "Cherry Lip Balm" in dom

"""One self-contained HTML page for a ``generec generate`` result, for a researcher to open and read.

The page is rendered from the same dict ``generec.generative.run.generate`` writes as JSON, so the JSON
stays the record and the page is a view of it (``render_result`` works on a JSON file read back, too).
Everything is inline (CSS, images as ``data:`` URIs, no JavaScript): the file can be mailed, archived or
opened from a cluster's scratch folder without its neighbours. Item text comes from datasets and
generators and is untrusted, so every string goes through ``html.escape``; a title holding ``<script>``
is shown as text.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from generec.results import atomic_write_text

CHROMIUM_NAMES: tuple[str, ...] = ("chromium", "chromium-browser", "google-chrome")

SECTIONS: tuple[tuple[str, str], ...] = (
    ("retrieved", "Retrieved: the recommender's own top items"),
    ("repurposed", "Repurposed: existing items edited toward the instruction (AI editor)"),
    ("created", "Created: new items generated for this user (AI creator)"),
)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d2330;
background:#f6f7f9;line-height:1.4}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:26px 0 8px;border-bottom:2px solid #d5dae3;
padding-bottom:4px}h3{font-size:14px;margin:0 0 6px}
.meta{color:#556;font-size:13px;margin-bottom:14px}
.box{background:#fff;border:1px solid #d5dae3;border-radius:6px;padding:10px 14px;margin:8px 0}
.mode{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;color:#fff}
.m-retrieve{background:#3b7dd8}.m-repurpose{background:#c77d12}.m-create{background:#2e9a5b}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #d5dae3;border-radius:6px;padding:10px 12px;width:370px;
box-sizing:border-box;font-size:13px;overflow-wrap:anywhere}
.card img{max-width:100%;max-height:220px;display:block;margin:6px 0;border-radius:4px}
.kv{color:#445}.kv b{color:#1d2330}
table{border-collapse:collapse;font-size:12px;margin-top:6px;width:100%;table-layout:fixed}
td,th{overflow-wrap:anywhere}th.n{width:42px}th.s{width:52px}th.r{width:38px}
td,th{border-top:1px solid #e4e7ec;padding:2px 4px;text-align:left;vertical-align:top}
th{color:#556;font-weight:600}
.pass{color:#1f7a43;font-weight:600}.fail{color:#b3261e;font-weight:600}
.none{color:#778;font-style:italic}
ol.hist{margin:4px 0;padding-left:28px;font-size:13px;columns:2;overflow-wrap:anywhere}
code{background:#eef0f4;padding:0 3px;border-radius:3px;font-size:12px}
"""


def _e(value: Any) -> str:
    """Escaped text of any value (quotes too, so it is safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _e(value)
    if isinstance(value, float) and not math.isfinite(value):
        return _e(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _image_src(item: Mapping[str, Any], base_dir: Path | None) -> tuple[str | None, str | None]:
    """(data URI, problem) for the item's image: raw bytes, base64 text or a PNG/JPEG path.

    A path is tried as given and then relative to the result's folder, since run.py writes it relative
    to the working directory the run started in.
    """
    raw = item.get("image_bytes")
    if isinstance(raw, bytes | bytearray):
        return _data_uri(bytes(raw)), None
    if isinstance(item.get("image_base64"), str):
        return f"data:image/png;base64,{item['image_base64']}", None
    path = item.get("image_path")
    if not path:
        return None, None
    candidates = [Path(path)]
    if base_dir is not None and not Path(path).is_absolute():
        candidates.append(base_dir / path)
        candidates.append(base_dir / Path(path).name)
    for p in candidates:
        if p.is_file():
            return _data_uri(p.read_bytes()), None
    return None, f"image not found: {path}"


def _data_uri(data: bytes) -> str:
    mime = "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _checks_table(checks: Mapping[str, Any]) -> str:
    rows = []
    for name, r in checks.items():
        r = r if isinstance(r, Mapping) else {"passed": bool(r)}
        ok = r.get("passed")
        verdict = '<span class="pass">pass</span>' if ok else '<span class="fail">fail</span>'
        rows.append(
            f"<tr><td>{_e(r.get('name', name))}</td><td>{_num(r.get('score'))}</td><td>{verdict}</td>"
            f"<td>{_e(r.get('reason', ''))}</td></tr>"
        )
    head = '<tr><th>check</th><th class="s">score</th><th class="r">result</th><th>reason</th></tr>'
    return f"<table>{head}{''.join(rows)}</table>"


def _nearest_table(nearest: Sequence[Any], limit: int) -> str:
    rows = []
    for n in list(nearest)[:limit]:
        if isinstance(n, Mapping):
            item, dist, text = n.get("item"), n.get("distance"), n.get("text", "")
        else:  # (item, distance) pairs, as GeneratedItem holds them before to_dict
            item, dist, text = n[0], n[1], ""
        rows.append(f"<tr><td>#{_e(item)}</td><td>{_e(text)}</td><td>{_num(dist)}</td></tr>")
    head = '<tr><th class="n">item</th><th>title</th><th class="s">L2</th></tr>'
    return f"<table>{head}{''.join(rows)}</table>"


def _card(
    item: Mapping[str, Any], base_dir: Path | None, nearest_limit: int, texts: Mapping[Any, str]
) -> str:
    """One item: heading, scores, provenance, image, nearest catalogue items, check verdicts."""
    kind = item.get("kind", "")
    if item.get("title"):
        heading = item["title"]
    elif item.get("text") is not None:
        heading = item["text"]
    elif item.get("item_id") is not None:
        heading = f"item #{item['item_id']}"
    else:
        nearest = item.get("nearest") or []
        first = nearest[0] if nearest else None
        near_text = first.get("text") if isinstance(first, Mapping) else None
        heading = f"new item (closest: {near_text})" if near_text else "new item"
    parts = [f"<h3>{_e(heading)}</h3>"]
    facts = [f"<b>score</b> {_num(item.get('score'))}"]
    if item.get("item_id") is not None:
        facts.append(f"<b>catalogue item</b> #{_e(item['item_id'])}")
    if kind != "retrieved":
        facts.append(f"<b>novelty</b> {_num(item.get('novelty'))}")
        facts.append(f"<b>copy</b> {'yes' if item.get('is_copy') else 'no'}")
        ok = item.get("passed_checks", True)
        facts.append(
            f"<b>checks</b> {'<span class=pass>passed</span>' if ok else '<span class=fail>failed</span>'}"
        )
    parts.append(f'<div class="kv">{" &middot; ".join(facts)}</div>')
    prov = item.get("provenance") or {}
    shown = {
        k: prov[k]
        for k in ("source_item", "strength", "guidance_scale", "seed", "attempt", "image")
        if k in prov
    }
    if shown and kind != "retrieved":
        facts = []
        for k, v in shown.items():
            if v is None:
                continue
            if k == "source_item" and texts.get(v) is not None:
                facts.append(f"<b>source</b> {_e(texts[v])} #{_e(v)}")
            else:
                facts.append(f"{_e(k)} {_e(v)}")
        parts.append(f'<div class="kv">{" &middot; ".join(facts)}</div>')
    src, problem = _image_src(item, base_dir)
    if src is not None:
        parts.append(f'<img src="{_e(src)}" alt="{_e(heading)}">')
    elif problem:
        parts.append(f'<div class="none">{_e(problem)}</div>')
    if item.get("nearest"):
        parts.append(_nearest_table(item["nearest"], nearest_limit))
    checks = prov.get("checks")
    if isinstance(checks, Mapping) and checks:
        parts.append(_checks_table(checks))
    return f'<div class="card">{"".join(parts)}</div>'


def _sections(record: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
    """Items per section; in retrieve mode ``items`` repeats ``retrieved``, so it is not shown twice."""
    out: dict[str, list[Mapping[str, Any]]] = {name: [] for name, _ in SECTIONS}
    out["retrieved"] = list(record.get("retrieved") or [])
    for item in record.get("items") or []:
        kind = item.get("kind")
        if kind == "retrieved":
            if item not in out["retrieved"]:
                out["retrieved"].append(item)
        elif kind in out:
            out[kind].append(item)
    return out


def _known_texts(record: Mapping[str, Any]) -> dict[Any, str]:
    """Catalogue id -> text for every item the record names (to label a repurposed item's source)."""
    texts: dict[Any, str] = {}
    entries: list[Any] = [*(record.get("history") or []), record.get("source")]
    for item in [*(record.get("retrieved") or []), *(record.get("items") or [])]:
        entries.extend(item.get("nearest") or [])
        if item.get("item_id") is not None and item.get("text") is not None:
            texts[item["item_id"]] = item["text"]
    for e in entries:
        if isinstance(e, Mapping) and e.get("item") is not None and e.get("text") is not None:
            texts[e["item"]] = e["text"]
    return texts


def _history(history: Iterable[Any], limit: int) -> str:
    history = list(history)
    if not history:
        return '<div class="none">no history</div>'
    shown = history[-limit:]
    start = len(history) - len(shown) + 1
    rows = []
    for h in shown:
        if isinstance(h, Mapping):
            # catalogue ids (#n) as on the item cards; the dataset's own id in the tooltip
            original = f' title="dataset id {_e(h["item_id"])}"' if h.get("item_id") is not None else ""
            rows.append(f"<li>{_e(h.get('text', ''))} <code{original}>#{_e(h.get('item'))}</code></li>")
        else:
            rows.append(f"<li>item #{_e(h)}</li>")
    note = (
        f'<div class="meta">last {len(shown)} of {len(history)} items</div>'
        if len(shown) < len(history)
        else ""
    )
    return f'{note}<ol class="hist" start="{start}">{"".join(rows)}</ol>'


def render_result(
    record: Mapping[str, Any],
    base_dir: str | Path | None = None,
    history_limit: int = 30,
    nearest_limit: int = 5,
    title: str = "generec generate",
) -> str:
    """The whole page as one string. ``base_dir`` is where relative image paths are also looked for."""
    base = Path(base_dir) if base_dir is not None else None
    g = record.get("guidance") or {}
    mode = str(g.get("mode", "?"))
    instruction = g.get("instruction") or ""
    head = [
        f"<h1>{_e(title)}</h1>",
        '<div class="meta">'
        + " &middot; ".join(
            [
                f"user <b>{_e(record.get('user') if record.get('user') is not None else '(given history)')}</b>",
                f"{len(record.get('history') or [])} history items",
                f"seed {_e(g.get('seed', ''))}",
            ]
            + ([f"{_num(record['seconds'], 2)} s"] if isinstance(record.get("seconds"), int | float) else [])
        )
        + "</div>",
    ]
    guide = [
        f'<div><b>mode</b> <span class="mode m-{_e(mode)}">{_e(mode)}</span>'
        + (" (forced by mode=)" if (g.get("fidelity") or {}).get("mode_overridden") else "")
        + "</div>",
        "<div><b>instruction</b> "
        + (f"&ldquo;{_e(instruction)}&rdquo;" if instruction else '<span class="none">none</span>')
        + "</div>",
    ]
    source = record.get("source")
    if isinstance(source, Mapping):
        guide.append(
            f"<div><b>source item</b> {_e(source.get('text', ''))} <code>#{_e(source.get('item'))}</code></div>"
        )
    elif g.get("source_item") is not None:
        guide.append(f"<div><b>source item</b> <code>#{_e(g['source_item'])}</code></div>")
    for key in ("content_prompt", "negative_prompt"):
        if g.get(key):
            guide.append(f"<div><b>{_e(key.replace('_', ' '))}</b> <code>{_e(g[key])}</code></div>")
    fid = g.get("fidelity") or {}
    if fid:
        guide.append(
            '<div class="kv"><b>measured for the mode decision</b> '
            + " &middot; ".join(f"{_e(k)} {_num(v, 3)}" for k, v in fid.items())
            + "</div>"
        )
    body = [*head, f'<div class="box">{"".join(guide)}</div>', "<h2>History</h2>"]
    body.append(f'<div class="box">{_history(record.get("history") or [], history_limit)}</div>')
    sections = _sections(record)
    texts = _known_texts(record)
    for name, heading in SECTIONS:
        items = sections[name]
        body.append(f"<h2>{_e(heading)} ({len(items)})</h2>")
        if not items:
            body.append(f'<div class="none">no {name} items in mode {_e(mode)}</div>')
            continue
        body.append(
            '<div class="cards">' + "".join(_card(i, base, nearest_limit, texts) for i in items) + "</div>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}: user {_e(record.get('user'))}, {_e(mode)}</title>"
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_result_page(
    record: Mapping[str, Any], path: str | Path, base_dir: str | Path | None = None
) -> Path:
    """Render and write atomically (a reader never sees half a page); returns the path."""
    path = Path(path)
    return atomic_write_text(path, render_result(record, base_dir if base_dir is not None else path.parent))


def html_path_for(output: str | Path, setting: Any) -> Path | None:
    """Where the page goes: ``None`` -> beside ``output`` with ``.html``; ``False`` -> no page; else the path."""
    if setting is False or (isinstance(setting, str) and setting.lower() in ("false", "no", "off", "")):
        return None
    if setting is None or setting is True:
        return Path(output).with_suffix(".html")
    return Path(str(setting))


def render_file(result_json: str | Path, out: str | Path | None = None) -> Path:
    """Page for a result JSON already on disk (default: beside it, ``.html``)."""
    src = Path(result_json)
    record = json.loads(src.read_text(encoding="utf-8"))
    return write_result_page(record, Path(out) if out else src.with_suffix(".html"), src.parent)


def find_chromium() -> str:
    """Path of a headless-capable Chromium; a clear error (not a skip) when none is installed."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        f"no Chromium found on PATH (looked for {', '.join(CHROMIUM_NAMES)}); "
        "install Debian's package: apt-get install -y chromium"
    )


def screenshot(
    page: str | Path, png: str | Path, width: int = 1200, height: int = 1600, timeout: float = 120
) -> Path:
    """PNG of the page as headless Chromium draws it (what a researcher sees when opening the file)."""
    page, png = Path(page).resolve(), Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        find_chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--screenshot={png}",
        f"--window-size={width},{height}",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium screenshot failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
    return png


def main(argv: list[str] | None = None) -> int:
    """``python -m generec.generative.html_page result.json [--out page.html] [--screenshot page.png]``."""
    p = argparse.ArgumentParser(description="HTML page (and optional screenshot) of a generate result")
    p.add_argument("result", help="JSON written by generec generate")
    p.add_argument("--out", default=None, help="page path (default: beside the result, .html)")
    p.add_argument("--screenshot", default=None, help="also save a PNG drawn by headless Chromium")
    p.add_argument("--size", default="1200,1600", help="window WIDTH,HEIGHT for the screenshot")
    p.add_argument(
        "--colours", type=int, default=0, help="quantise the PNG to this many colours (small docs files)"
    )
    args = p.parse_args(argv)
    page = render_file(args.result, args.out)
    print(f"wrote {page}")
    if args.screenshot:
        w, h = (int(x) for x in args.size.split(","))
        png = screenshot(page, args.screenshot, w, h)
        if args.colours:
            from PIL import Image

            with Image.open(png) as im:
                small = im.convert("RGB").quantize(colors=args.colours)
            small.save(png, optimize=True)
        print(f"wrote {png} ({png.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

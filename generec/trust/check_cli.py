"""``generec check``: the fidelity checks on a result written by ``generec generate``.

generec check generate.json --checkpoint outputs/.../best.ckpt --data beauty [--out report.json]

The result JSON keeps the history (item rows), the instruction and each item's vector / catalogue id and
nearest items; the user state and the instruction embedding are recomputed from the checkpoint and the
sentence encoder. Prints one row per item and check; writes the report atomically (default:
``<result>.check.json`` beside the input).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from generec.results import atomic_write_text


class CheckInputError(ValueError):
    """A generation result that cannot be checked; the message names the file and the field."""


def _field(d: Any, key: str, path: Path, where: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise CheckInputError(f"{path}: missing field {where}{key!r}")
    if not isinstance(d[key], kind):
        raise CheckInputError(f"{path}: field {where}{key!r} must be {kind}, got {type(d[key]).__name__}")
    return d[key]


def read_result(path: Path) -> dict[str, Any]:
    """The parsed result, validated field by field (errors name the file and the field)."""
    if not path.is_file():
        raise CheckInputError(f"{path}: no such file")
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckInputError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
    history = _field(rec, "history", path, "", list)
    for k, h in enumerate(history):
        _field(h, "item", path, f"history[{k}].", int)
    guidance = _field(rec, "guidance", path, "", dict)
    _field(guidance, "instruction", path, "guidance.", str)
    _field(guidance, "mode", path, "guidance.", str)
    items = _field(rec, "items", path, "", list)
    if not items:
        raise CheckInputError(f"{path}: field 'items' is empty: nothing to check")
    for k, it in enumerate(items):
        kind = _field(it, "kind", path, f"items[{k}].", str)
        if kind not in ("retrieved", "repurposed", "created"):
            raise CheckInputError(
                f"{path}: field items[{k}].kind must be retrieved|repurposed|created, got {kind!r}"
            )
        if it.get("vector") is None and it.get("item_id") is None:
            raise CheckInputError(f"{path}: items[{k}] has neither 'vector' nor 'item_id'")
        if it.get("vector") is not None and not isinstance(it["vector"], list):
            raise CheckInputError(f"{path}: field items[{k}].vector must be a list of floats")
    return rec


def to_item(d: dict[str, Any]):
    from generec.generative.pipeline import GeneratedItem

    nearest = [
        (int(n["item"]), float(n["distance"])) if isinstance(n, dict) else tuple(n)
        for n in d.get("nearest", [])
    ]
    return GeneratedItem(
        kind=d["kind"],
        score=float(d.get("score", 0.0)),
        item_id=d.get("item_id"),
        vector=d.get("vector"),
        nearest=nearest,
        title=d.get("title"),
    )


def run_checks(
    rec: dict[str, Any], model, texts: list[str], text_emb: torch.Tensor, encoder, cfg: dict
) -> dict:
    """Checks on every item of a parsed result: {"instruction_safety": ..., "items": [[CheckResult dict]]}."""
    from generec.generative.guidance import Guidance
    from generec.generative.instructor import left_pad
    from generec.trust.fidelity import build_checks
    from generec.trust.safety import InstructionGuard, UnsafeInstructionError, text_scorer

    n_items = len(texts)
    history = [int(h["item"]) for h in rec["history"]]
    bad = [i for i in history if not 0 < i < n_items]
    if bad:
        raise CheckInputError(f"history item rows {bad[:5]} are outside the catalogue (1..{n_items - 1})")
    with torch.inference_mode():
        items = model.item_embeddings().detach().float().cpu()
        state = model.encode({"input_ids": left_pad(history, model.max_len).to(model.device)})[0]
    state = (state.mean(0) if state.dim() == 2 else state).float().cpu()
    instruction = rec["guidance"]["instruction"]
    g = Guidance(
        "create",
        state,
        instruction,
        encoder.encode([instruction])[0] if instruction.strip() else None,
    )
    scorer = text_scorer(cfg.get("safety", {}).get("text", "keywords"))
    try:
        InstructionGuard(scorer, float(cfg.get("safety", {}).get("threshold", 0.5)))(instruction)
        guard = {"passed": True, "reason": "instruction accepted"}
    except UnsafeInstructionError as e:
        guard = {"passed": False, "reason": str(e)}
    checks = build_checks(cfg, items, text_emb, texts, encoder, text_scorer=scorer)
    from generec.generative.creator import nearest_items

    out = []
    for d in rec["items"]:
        item = to_item(d)
        if item.vector is not None and not item.nearest:  # older results: recompute the neighbours
            if len(item.vector) != items.shape[1]:
                raise CheckInputError(
                    f"items[{len(out)}].vector has {len(item.vector)} dims, the model {items.shape[1]}"
                )
            ids, dist = nearest_items(torch.tensor([item.vector]), items, 10)
            item.nearest = list(zip(ids[0].tolist(), dist[0].tolist(), strict=True))
        out.append([c(item, g).to_dict() for c in checks])
    return {"instruction_safety": guard, "items": out}


def print_table(report: dict) -> None:
    print(
        f"instruction: {'ok' if report['instruction_safety']['passed'] else 'REFUSED'} - "
        f"{report['instruction_safety']['reason']}"
    )
    print(f"{'item':>4}  {'check':<11} {'score':>7}  {'pass':<4}  reason")
    for k, results in enumerate(report["items"]):
        for r in results:
            print(
                f"{k:>4}  {r['name']:<11} {r['score']:>7.3f}  {'yes' if r['passed'] else 'NO':<4}  {r['reason']}"
            )
    print(f"items passing every check: {report['passed_items']}/{len(report['items'])}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="generec check", description="fidelity checks on a `generec generate` result"
    )
    p.add_argument("result", help="the JSON written by `generec generate`")
    p.add_argument(
        "--checkpoint", required=True, help="the recommender checkpoint the result was generated with"
    )
    p.add_argument("--data", required=True, help="dataset registry name (e.g. beauty, games)")
    p.add_argument(
        "--fidelity", default=None, help="fidelity config YAML (default conf/fidelity/default.yaml)"
    )
    p.add_argument("--out", default=None, help="report path (default <result>.check.json)")
    args = p.parse_args(argv)
    from omegaconf import OmegaConf

    from generec.paths import CONF_DIR

    path = Path(args.result)
    try:
        rec = read_result(path)
    except CheckInputError as e:
        print(f"generec check: {e}")
        return 2
    cfg = OmegaConf.to_container(OmegaConf.load(args.fidelity or CONF_DIR / "fidelity" / "default.yaml"))

    from generec.data.datamodule import SeqDataModule
    from generec.generative.instructor import SentenceEncoder, sanitize_item_text
    from generec.generative.run import cached_text_embeddings
    from generec.predict import load_model

    model, trained_on = load_model(args.checkpoint)
    dm = SeqDataModule(registry=args.data, max_len=model.max_len)
    dm.setup("predict")
    if trained_on and trained_on.get("fingerprint") != dm.data.fingerprint:
        print(f"generec check: --checkpoint {args.checkpoint} was not trained on --data {args.data}")
        return 2
    encoder = SentenceEncoder()
    raw = [str(t) for t in dm.data.item_side["title"]]
    texts = [sanitize_item_text(t) for t in raw]
    try:
        report = run_checks(rec, model, texts, cached_text_embeddings(encoder, raw), encoder, cfg)
    except CheckInputError as e:
        print(f"generec check: {path}: {e}")
        return 2
    report["passed_items"] = sum(all(r["passed"] for r in rs) for rs in report["items"])
    report.update(result=str(path), checkpoint=str(args.checkpoint), data=args.data, config=cfg)
    out = Path(args.out) if args.out else path.with_suffix(".check.json")
    atomic_write_text(out, json.dumps(report, indent=1, ensure_ascii=False, default=float))
    print_table(report)
    print(f"wrote {out}")
    return 0

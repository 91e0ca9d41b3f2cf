"""Markdown tables (mean +- std over runs) from ``scripts/generate_beauty_eval.py`` results.

One results.json per seed (each from its own recommender checkpoint and creator seed):
    python scripts/generec_tables.py outputs/generec_eval/beauty/s1 outputs/generec_eval/beauty/s2 ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from generec.generative.evaluate import SPECIFICITY_LEVELS


def _ms(values: list[float], digits: int = 3) -> str:
    a = np.asarray(values, dtype=float)
    if len(a) == 1:
        return f"{a[0]:.{digits}f}"
    return f"{a.mean():.{digits}f} ± {a.std(ddof=1):.{digits}f}"


def load(dirs: list[str]) -> list[dict]:
    runs = []
    for d in dirs:
        path = Path(d) / "results.json"
        if not path.is_file():
            raise SystemExit(f"{path}: not found (run scripts/generate_beauty_eval.py --out {d} first)")
        runs.append(json.loads(path.read_text()))
    return runs


def creation_table(runs: list[dict]) -> str:
    """Per specificity level: the recommender alone, with the instruction fused in, text retrieval, the
    creator; HR@10 / NDCG@10, novelty and copy rate of the created items."""
    lines = [
        "| instruction | recommender + instruction HR@10 / NDCG@10 | text retrieval HR@10 / NDCG@10 "
        "| creator (w=2) HR@10 / NDCG@10 | creator novelty | creator copy rate |",
        "|---|---|---|---|---|---|",
    ]
    for lv in SPECIFICITY_LEVELS:
        if lv == "none":
            base = [r["baselines"]["recommender (SASRec score)"] for r in runs]
            text = None
        else:
            base = [r["baselines"][f"recommender + instruction={lv}"] for r in runs]
            text = [r["baselines"][f"text retrieval, instruction={lv}"] for r in runs]
        cre = [c["creation"][f"{lv} w=2.0"] for r in runs for c in r["creator"]]
        cells = [
            f"{_ms([b['hr@10'] for b in base])} / {_ms([b['ndcg@10'] for b in base], 4)}",
            "-"
            if text is None
            else f"{_ms([t['hr@10'] for t in text])} / {_ms([t['ndcg@10'] for t in text], 4)}",
            f"{_ms([c['hr@10'] for c in cre])} / {_ms([c['ndcg@10'] for c in cre], 4)}",
            _ms([c["novelty_median"] for c in cre]),
            _ms([c["copy_rate"] for c in cre]),
        ]
        lines.append(f"| {lv} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def guidance_table(runs: list[dict]) -> str:
    """Keyword instructions at guidance scales 1 / 2 / 4, and without the user state."""
    keys = ["keywords w=1.0", "keywords w=2.0", "keywords w=4.0", "keywords, no user state w=2.0"]
    lines = ["| creator condition | HR@10 | NDCG@10 | HR@50 |", "|---|---|---|---|"]
    for k in keys:
        cre = [c["creation"][k] for r in runs for c in r["creator"]]
        lines.append(
            f"| {k} | {_ms([c['hr@10'] for c in cre])} | {_ms([c['ndcg@10'] for c in cre], 4)} "
            f"| {_ms([c['hr@50'] for c in cre])} |"
        )
    return "\n".join(lines)


def editor_table(runs: list[dict]) -> str:
    """SDEdit trade-off over strength: identity kept (source in top-10) against success (target in top-10)."""
    curves = [c["editor"] for r in runs for c in r["creator"]]
    strengths = [row["strength"] for row in curves[0]]
    head = "| strength | " + " | ".join(f"{s:.1f}" for s in strengths) + " |"
    lines = [head, "|---|" + "---|" * len(strengths)]
    for key, label in (
        ("target_in_topk", "target in top-10 (success)"),
        ("source_in_topk", "source in top-10 (identity kept)"),
        ("dist_to_source", "L2 to source"),
    ):
        cells = [_ms([c[i][key] for c in curves]) for i in range(len(strengths))]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def modes_table(runs: list[dict]) -> str:
    lines = ["| instruction | retrieve | repurpose | create |", "|---|---|---|---|"]
    for lv in SPECIFICITY_LEVELS:
        shares = [r["modes"]["share"][lv] for r in runs]
        lines.append(
            f"| {lv} | "
            + " | ".join(_ms([s[m] for s in shares], 2) for m in ("retrieve", "repurpose", "create"))
            + " |"
        )
    return "\n".join(lines)


def cost_table(runs: list[dict]) -> str:
    cre = [c for r in runs for c in r["creator"]]
    rows = [
        ("creator fit (s)", [c["fit_seconds"] for c in cre]),
        ("creator loss, first -> last logged", None),
        (
            "created items / s (batch, 25 DDIM steps, CFG)",
            [c["creation"]["keywords w=2.0"]["items_per_s"] for c in cre],
        ),
        ("edits / s (batch)", [c["edits_per_s"] for c in cre]),
        ("one created item, batch 1 (s)", [c["single_item_latency_s"] for c in cre]),
    ]
    lines = ["| cost (CPU) | value |", "|---|---|"]
    for name, vals in rows:
        if vals is None:
            lines.append(
                f"| {name} | {_ms([c['loss_first'] for c in cre])} -> {_ms([c['loss_last'] for c in cre])} |"
            )
        else:
            lines.append(f"| {name} | {_ms(vals, 2)} |")
    return "\n".join(lines)


def space_table(a: list[dict], b: list[dict]) -> str:
    """The creator side by side in two runs' spaces (e.g. item vs content), per instruction level."""
    la, lb = a[0]["space"], b[0]["space"]
    lines = [
        f"| creator HR@10 / NDCG@10 | {la} space ({len(a)} seeds) | {lb} space ({len(b)} seeds) |",
        "|---|---|---|",
    ]

    def cell(runs: list[dict], key: str) -> str:
        cre = [c["creation"][key] for r in runs for c in r["creator"]]
        return f"{_ms([c['hr@10'] for c in cre])} / {_ms([c['ndcg@10'] for c in cre], 4)}"

    keys = [f"{lv} w=2.0" for lv in SPECIFICITY_LEVELS] + ["keywords w=4.0", "keywords, no user state w=2.0"]
    for k in keys:
        lines.append(f"| {k} | {cell(a, k)} | {cell(b, k)} |")
    for key, label in (("novelty_median", "novelty (median L2 to nearest item), keywords w=2"),):
        va = _ms([c["creation"]["keywords w=2.0"][key] for r in a for c in r["creator"]])
        vb = _ms([c["creation"]["keywords w=2.0"][key] for r in b for c in r["creator"]])
        lines.append(f"| {label} | {va} | {vb} |")
    for strength in (0.6, 1.0):
        vals = []
        for runs in (a, b):
            rows = [
                row for r in runs for c in r["creator"] for row in c["editor"] if row["strength"] == strength
            ]
            vals.append(
                f"{_ms([x['target_in_topk'] for x in rows])} / {_ms([x['source_in_topk'] for x in rows])}"
            )
        lines.append(f"| editor at strength {strength}: target / source in top-10 | {vals[0]} | {vals[1]} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dirs", nargs="+", help="folders holding results.json, one per seed")
    p.add_argument(
        "--vs", nargs="+", default=None, help="runs in another space: print the creator side by side"
    )
    args = p.parse_args()
    runs = load(args.dirs)
    if args.vs:
        print(space_table(runs, load(args.vs)))
        return
    users = runs[0]["args"]["users"]
    print(
        f"{len(runs)} runs, {users} sampled test users each, dataset {runs[0]['dataset']}, space {runs[0]['space']}\n"
    )
    for title, fn in (
        ("Creation by instruction specificity", creation_table),
        ("Guidance scale and user state (keywords)", guidance_table),
        ("Repurposing: SDEdit strength", editor_table),
        ("Instructor mode decisions", modes_table),
        ("Sampling cost", cost_table),
    ):
        print(f"#### {title}\n\n{fn(runs)}\n")


if __name__ == "__main__":
    main()

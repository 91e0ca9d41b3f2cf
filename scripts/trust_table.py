"""Markdown table of audited runs: one row per (record, variant), from the records' ``trust`` blocks.

    python scripts/trust_table.py results/trust_ml100k_models [more folders or records ...]

The ECDF index is the one ``generec audit`` wrote (ranked across every candidate audited together);
the absolute index is reference-free. Records without a ``trust`` block are skipped with a note.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = [  # (header, metric key in a variant's "metrics", format)
    ("NDCG@10", "utility/ndcg@10", "{:.4f}"),
    ("HR@10", "utility/hr@10", "{:.4f}"),
    ("MIA adv.", "privacy/mia_advantage", "{:.3f}"),
    ("pop. lift", "bias/popularity_lift", "{:+.3f}"),
    ("exposure Gini", "bias/exposure_gini", "{:.3f}"),
    ("list coverage", "bias/coverage", "{:.3f}"),
    ("perturb drop", "robustness/perturb_drop", "{:.3f}"),
    ("injection ASR", "robustness/injection_asr", "{:.3f}"),
]
DIMENSIONS = ("utility", "fidelity", "privacy", "bias", "robustness")


def records(paths: list[str]) -> list[tuple[Path, dict]]:
    out = []
    for arg in paths:
        p = Path(arg)
        for f in sorted(p.glob("*.json")) if p.is_dir() else [p]:
            rec = json.loads(f.read_text())
            if "trust" in rec:
                out.append((f, rec))
            else:
                print(f"<!-- {f}: no trust block (not audited) -->", file=sys.stderr)
    return out


def fmt(fmt_str: str, value) -> str:
    return "-" if value is None or value != value else fmt_str.format(value)


def table(recs: list[tuple[Path, dict]]) -> str:
    head = [
        "model",
        "seed",
        "variant",
        "index (ECDF)",
        "absolute index",
        *DIMENSIONS,
        *(c[0] for c in COLUMNS),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, rec in recs:
        for name, var in rec["trust"]["variants"].items():
            m = var["metrics"]
            cells = [
                rec.get("model", "?"),
                str(rec.get("seed", "?")),
                name,
                fmt("{:.3f}", var.get("index")),
                fmt("{:.3f}", var.get("absolute_index")),
                *(fmt("{:.3f}", var["dimensions"].get(d)) for d in DIMENSIONS),
                *(fmt(f, m.get(k)) for _, k, f in COLUMNS),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    print(table(records(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Markdown tables for docs/reproductions/fidelity.md from the records of scripts/reproduce_fidelity.py.

.venv/bin/python scripts/fidelity_tables.py outputs/fidelity_beauty/results.json outputs/fidelity_games/results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CHECKS = ("preference", "instruction", "novelty", "safety", "all")


def f(x: float, nd: int = 3) -> str:
    return "n/a" if x != x else f"{x:.{nd}f}"


def main(paths: list[str]) -> None:
    recs = {json.loads(Path(p).read_text())["args"]["data"]: json.loads(Path(p).read_text()) for p in paths}
    print("### Pass rate per check (first sample per user)\n")
    print(
        "| data | instruction level | "
        + " | ".join(CHECKS)
        + " | median preference pct | median instr. cos |"
    )
    print("|---" * (len(CHECKS) + 4) + "|")
    for name, r in recs.items():
        for lv, v in r["pass_rates"].items():
            cells = " | ".join(f(v[c]) for c in CHECKS)
            print(
                f"| {name} | {lv} | {cells} | {f(v['preference/score_median'])} | {f(v['instruction/score_median'])} |"
            )
    print("\n### Verifier and resampling\n")
    print(
        "| data | users x K | p (mean) | users with p=0 | TPR | FPR | accept rate | ceiling | K_opt (fp cost 1 / 10 / 100 / 1000) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in recs.items():
        s = r["resampling"]
        kopt = " / ".join(str(s["k_opt_by_fp_cost"][k]) for k in ("1.0", "10.0", "100.0", "1000.0"))
        print(
            f"| {name} | {s['users']} x {s['samples_per_user']} | {f(s['p_mean'], 4)} | {f(s['p_share_zero'])} | "
            f"{f(s['tpr'])} ({s['positives']} pos.) | {f(s['fpr'])} ({s['negatives']} neg.) | {f(s['accept_rate'])} | "
            f"{f(s['ceiling'], 4)} | {kopt} |"
        )
    print(
        "\n| data | curve | "
        + " | ".join(f"K={k}" for k in recs[next(iter(recs))]["resampling"]["ks"])
        + " |"
    )
    print("|---|---|" + "---|" * len(recs[next(iter(recs))]["resampling"]["ks"]))
    for name, r in recs.items():
        s = r["resampling"]
        lo, hi = s["measured_ci90"]
        print(f"| {name} | measured | " + " | ".join(f(x, 4) for x in s["measured"]) + " |")
        print(
            f"| {name} | 90% CI | "
            + " | ".join(f"{f(a, 3)}-{f(b, 3)}" for a, b in zip(lo, hi, strict=True))
            + " |"
        )
        print(f"| {name} | predicted | " + " | ".join(f(x, 4) for x in s["predicted"]) + " |")
        print(
            f"| {name} | predicted, one p | "
            + " | ".join(f(x, 4) for x in s["predicted_homogeneous_p"])
            + " |"
        )
    print("\n### Human contribution phi\n")
    print("| data | model | instruction level | n | mean | p10 | p25 | median | p75 | p90 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in recs.items():
        c = r["contribution"]
        for lv, v in c["levels"].items():
            q = " | ".join(f(x) for x in v["quantiles"])
            print(
                f"| {name} | creator (bin {c['bin_width']:.2f}) | {lv} | {r['args']['users']} | {f(v['mean'])} | {q} |"
            )
        for lv, v in c.get("text", {}).get("levels", {}).items():
            q = " | ".join(f(x) for x in v["quantiles"])
            print(f"| {name} | SmolLM2-135M titles | {lv} | {v['n']} | {f(v['mean'])} | {q} |")
    print("\n### Injection: attack success rate (prompt channel / decision channel)\n")
    for name, r in recs.items():
        t = r["injection"]["table"]
        settings = list(t)
        rows = [k for k in t[settings[0]] if k != "all"] + ["all"]
        print(f"{name}: {r['injection']['users']} users, n per cell in brackets\n")
        print("| category / carrier | " + " | ".join(settings) + " |")
        print("|---|" + "---|" * len(settings))
        for row in rows:
            cells = []
            for st in settings:
                v = t[st][row]
                cells.append(f"{f(v['asr'], 2)} ({f(v['prompt'], 2)} / {f(v['decision'], 2)}) [{v['n']}]")
            print(f"| {row} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main(sys.argv[1:])

"""How often each text-safety scorer flags real catalogue titles (all of them are legitimate products).

GENEREC_DATA_DIR=/work/shared/data .venv/bin/python scripts/fidelity_catalogue_safety.py beauty games
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np

from generec.data.datamodule import SeqDataModule
from generec.trust.safety import TEXT_SCORERS, unsafe_categories


def main(names: list[str]) -> None:
    scorers = {n: cls() for n, cls in TEXT_SCORERS.items() if n != "profanity-check"}
    if importlib.util.find_spec("profanity_check") is not None:
        scorers["profanity-check"] = TEXT_SCORERS["profanity-check"]()
    print("| dataset | titles | scorer | flagged (P >= 0.5) | share | highest-scored titles |")
    print("|---|---|---|---|---|---|")
    for name in names:
        dm = SeqDataModule(registry=name)
        dm.setup("predict")
        titles = [str(t) for t in dm.data.item_side["title"]][1:]
        for sname, scorer in scorers.items():
            p = np.asarray(scorer.score(titles))
            top = [titles[i] for i in np.argsort(-p, kind="stable")[:3] if p[i] >= 0.5]
            cats = sorted({c for t in top for c in unsafe_categories(t)}) if sname == "keywords" else []
            shown = "; ".join(f"{t[:45]!r}" for t in top) + (f" ({', '.join(cats)})" if cats else "")
            flagged = int((p >= 0.5).sum())
            print(f"| {name} | {len(titles)} | {sname} | {flagged} | {flagged / len(titles):.4f} | {shown} |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["beauty", "games"])

"""`generec` console script: a thin dispatcher to the Hydra entry points.

generec train data=beauty model=sasrec seed=3
generec predict checkpoint=... data=ml-100k topk=20
generec train-generator data=beauty checkpoint=... generator=gen.pt
generec generate data=beauty checkpoint=... generator=gen.pt user=... instruction="..."
generec leaderboard results/
"""

from __future__ import annotations

import sys

USAGE = """usage: generec <command> [overrides...]

commands:
  train        train and test a recommender (Hydra overrides, -m for multirun)
  predict      write each user's top-K items from a checkpoint
  leaderboard  table of results records: generec leaderboard <dir> [<dir> ...] [--format md|csv|html]
  audit        trust audit + report: generec audit results=<record.json|folder>
  generate     GeneRec retrieve / repurpose / create for one user: writes output=<x>.json and <x>.html
               (Hydra overrides, conf/generate.yaml; html=false skips the page)
  train-generator
               train the GeneRec creator/editor from a recommender checkpoint: generator=<path.pt>
               (Hydra overrides, conf/generate.yaml; the same as `generec generate task=train`)
  check        fidelity checks on a generate result: generec check <result.json> --checkpoint ... --data ...
"""


def train_generator_overrides(rest: list[str]) -> list[str]:
    """``train-generator`` is ``generate`` with ``task=train`` forced; a contradicting ``task=`` is an error."""
    tasks = [a for a in rest if a.split("=", 1)[0].lstrip("+~") == "task"]
    if any(a.split("=", 1)[-1] != "train" for a in tasks):
        raise SystemExit(f"generec train-generator: always task=train, got {tasks}")
    return ["task=train", *[a for a in rest if a not in tasks]]


def main(argv: list[str] | None = None) -> int | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command in ("train", "predict"):
        module = __import__(f"generec.{command}", fromlist=["main"])
        sys.argv = [f"generec {command}", *rest]
        module.main()
        return 0
    if command == "audit":
        from generec.trust.cli import main as audit_main

        return audit_main(rest)
    if command in ("generate", "train-generator"):
        from generec.generative.run import main as generate_main

        if command == "train-generator":
            rest = train_generator_overrides(rest)
        sys.argv = [f"generec {command}", *rest]
        generate_main()
        return 0
    if command == "check":
        from generec.trust.check_cli import main as check_main

        return check_main(rest)
    if command == "leaderboard":
        from generec.leaderboard import main as leaderboard_main

        return leaderboard_main(rest)
    print(f"generec: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

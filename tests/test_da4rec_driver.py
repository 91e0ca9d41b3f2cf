"""The DA4Rec driver's summary: records under --out win, a committed summary fills in the rest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def _record(run_id: str, seed: int, ndcg: float) -> dict:
    test = {"hr@10": 2 * ndcg, "ndcg@10": ndcg, "hr@20": 3 * ndcg, "ndcg@20": 1.2 * ndcg}
    return {
        "run_id": run_id,
        "seed": seed,
        "metrics": {"test": test, "valid": {"ndcg@10": ndcg + 0.001}},
        "best_epoch": 1,
        "epochs_run": 3,
        "train_seconds_per_epoch": 2.0,
        "epoch_seconds": [1.0, 2.0, 3.0],
        "eval_seconds": 0.5,
        "peak_memory_mib": 100.0,
        "dataset": {"num_train_rows": 10, "fingerprint": "f"},
        "git_commit": "abc",
    }


def test_collect_prefers_records_and_keeps_earlier_entries(tmp_path: Path, script_module):
    d = script_module("reproduce_da4rec")
    tag1, tag2 = d.run_tag("toys", 1.0, "sasrec+crop", 1), d.run_tag("toys", 1.0, "sasrec+crop", 2)
    (tmp_path / "records" / tag1).mkdir(parents=True)
    (tmp_path / "records" / tag1 / "r1.json").write_text(json.dumps(_record("r1", 1, 0.03)))
    earlier = {
        tag1: d.run_entry(tag1, _record("old", 1, 0.01)),  # superseded by the record on disk
        tag2: d.run_entry(tag2, _record("r2", 2, 0.05)),  # its record is gone: the entry stays
    }
    entries = d.collect(tmp_path, ["sasrec+crop"], ["toys"], [1, 2], [1.0], earlier)

    assert entries[tag1]["run_id"] == "r1" and entries[tag2]["run_id"] == "r2"
    assert entries[tag1]["seconds_to_best"] == 3.0  # epochs 0 and 1

    d.popularity = lambda dataset, cold: dict.fromkeys(d.METRIC_KEYS, 0.0)  # no dataset needed here
    table = d.summarize(tmp_path, ["sasrec+crop"], ["toys"], [1, 2], [1.0], entries)
    row = next(line for line in table.splitlines() if line.startswith("| sasrec+crop |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2] == d.mean_std(np.array([0.03, 0.05]))  # test ndcg@10 over both seeds
    assert cells[5] == "2"  # seeds
    assert cells[9] == "3"  # s to best: mean of 3.0 and 3.0


def test_only_names_outside_the_grid_are_an_error(tmp_path: Path, script_module, monkeypatch, capsys):
    """``--only sasrec+mask`` under the default reduced grid used to print "0 runs" and exit 0."""
    d = script_module("reproduce_da4rec")
    argv = ["reproduce_da4rec.py", "--only", "sasrec+mask", "sasrec+typo", "--out", str(tmp_path)]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exc:
        d.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "sasrec+mask (in --grid full)" in err and "sasrec+typo" in err
    assert not list(tmp_path.iterdir())  # nothing started, nothing written

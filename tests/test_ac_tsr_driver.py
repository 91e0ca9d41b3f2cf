"""The AC-TSR driver's step-cost bench runs on real prefix batches (which carry a ``last_only`` flag)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch


def test_bench_measures_backbone_and_calibrated_model(
    shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch, script_module
):
    monkeypatch.setenv("GENEREC_DATA_DIR", str(shared_data_dir))
    args = argparse.Namespace(datasets=["toys"], variants=["sasrec", "ac_sasrec"], bench_steps=1)
    threads = torch.get_num_threads()
    try:
        table = script_module("reproduce_ac_tsr").bench(args)
    finally:
        torch.set_num_threads(threads)  # the bench pins one thread; later tests keep theirs
    rows = {
        line.split("|")[1].strip(): line.split("|") for line in table.splitlines() if line.startswith("| ")
    }
    assert {"sasrec", "ac_sasrec"} <= set(rows)
    assert float(rows["sasrec"][3]) > 0 and float(rows["ac_sasrec"][3]) > 0
    # the calibrated model saves strictly more activations than its backbone (order/distance terms)
    assert float(rows["ac_sasrec"][5]) > float(rows["sasrec"][5])
    assert rows["ac_sasrec"][4].strip().endswith("x")

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


def test_bench_full_pass_measures_what_the_fast_path_saves(
    shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch, script_module
):
    """Prefix rows without their ``last_only`` flag make both encoders compute every row of the final
    block, so they save more activations for backward than with it."""
    monkeypatch.setenv("GENEREC_DATA_DIR", str(shared_data_dir))
    args = argparse.Namespace(
        datasets=["toys"], variants=["sasrec", "ac_sasrec"], bench_steps=1, bench_full_pass=True
    )
    threads = torch.get_num_threads()
    try:
        table = script_module("reproduce_ac_tsr").bench(args)
    finally:
        torch.set_num_threads(threads)
    assert "full pass saved MiB" in table
    rows = {
        line.split("|")[1].strip(): line.split("|") for line in table.splitlines() if line.startswith("| ")
    }
    for variant in ("sasrec", "ac_sasrec"):
        fast_mib, full_s, full_mib = float(rows[variant][5]), float(rows[variant][7]), float(rows[variant][8])
        assert full_s > 0
        assert full_mib > fast_mib, variant
        assert rows[variant][9].strip().endswith("%")

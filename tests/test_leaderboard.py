"""Leaderboard on hand-made records whose statistics are known in closed form."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from generec.eval.metrics import PADDED_RANK, MetricAccumulator
from generec.leaderboard import (
    bootstrap_mean_diff,
    build_rows,
    main,
    paired_t_test,
    per_user_metric,
    render,
    student_t_two_sided_p,
)
from generec.results import read_records

DATASET = {
    "name": "ml-100k",
    "protocol": "all_positions",
    "split": "loo",
    "mask_history": False,
    "cold_start_ratio": None,
    "min_user_inter": 0,
    "min_item_inter": 0,
    "dedup": "all",
}


def make_record(
    folder: Path,
    model: str,
    seed: int,
    ndcg: float,
    *,
    sec: float = 1.0,
    lr: float = 1e-3,
    masked: bool = False,
    trust: float | None = None,
    ranks: np.ndarray | None = None,
    created: str = "2026-01-01T00:00:00Z",
    tag: str = "",
) -> dict:
    run_id = f"{model}-s{seed}-{lr}-{int(masked)}{tag}"
    record = {
        "run_id": run_id,
        "created": created,
        "model": model,
        "seed": seed,
        "dataset": {**DATASET, "mask_history": masked},
        "metrics": {"valid": {"ndcg@10": ndcg}, "test": {"ndcg@10": ndcg, "hr@10": 2 * ndcg}},
        "train_seconds_per_epoch": sec,
        "fit_seconds": 10 * sec,
        "peak_memory_mib": 100.0,
        "config": {"seed": seed, "model": {"_target_": f"x.{model}", "lr": lr}},
    }
    if trust is not None:
        record["trust"] = {"index": trust}
    if ranks is not None:
        np.savez(folder / f"{run_id}.ranks.npz", users=np.arange(len(ranks), dtype=np.int32), ranks=ranks)
        record["ranks_file"] = f"{run_id}.ranks.npz"
    (folder / f"{run_id}.json").write_text(json.dumps(record))
    return record


@pytest.fixture
def board(tmp_path: Path) -> Path:
    """sasrec: 0.10/0.12/0.14 (mean 0.12, std 0.02); bert4rec: +0.03/+0.04/+0.02 per seed."""
    for seed, v in zip((1, 2, 3), (0.10, 0.12, 0.14), strict=True):
        base = np.full(100, 50, dtype=np.int32)  # every user misses the top 10
        make_record(tmp_path, "sasrec", seed, v, sec=2.0, ranks=base)
    for seed, v in zip((1, 2, 3), (0.13, 0.16, 0.16), strict=True):
        better = np.where(np.arange(100) < 30, 0, 50).astype(np.int32)  # 30 users hit at rank 0
        make_record(tmp_path, "bert4rec", seed, v, sec=3.0, trust=0.5 + seed / 10, ranks=better)
    # Another protocol (history masked): a much larger number that must not enter the ranking above.
    make_record(tmp_path, "sasrec", 1, 0.90, masked=True)
    make_record(tmp_path, "gru4rec", 1, 0.50, masked=True)
    return tmp_path


def test_t_distribution_matches_closed_forms():
    for t in (0.3, 1.0, 2.5, 12.7062):
        assert student_t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), abs=1e-10)
        assert student_t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(t * t + 2), abs=1e-10)
    assert student_t_two_sided_p(2.228139, 10) == pytest.approx(0.05, abs=1e-6)  # table value
    assert student_t_two_sided_p(0.0, 5) == pytest.approx(1.0)


def test_paired_t_test_known_values():
    mean, p = paired_t_test([0.13, 0.16, 0.16], [0.10, 0.12, 0.14])
    t = 0.03 / (0.01 / math.sqrt(3))  # diffs 0.03, 0.04, 0.02: mean 0.03, sd 0.01
    assert mean == pytest.approx(0.03)
    assert p == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-6)
    assert math.isnan(paired_t_test([0.1], [0.2])[1])  # one pair: no test


@pytest.mark.parametrize("metric", ["hr@10", "ndcg@10", "mrr@5", "recall@20", "ndcg@50"])
@pytest.mark.parametrize("targets", [1, 3])
def test_per_user_metric_agrees_with_metric_accumulator(metric, targets):
    rng = np.random.default_rng(0)
    ranks = rng.integers(0, 60, size=(200, targets) if targets > 1 else 200)
    if targets > 1:
        ranks[rng.random(ranks.shape) < 0.3] = PADDED_RANK
        ranks[:, 0] = np.minimum(ranks[:, 0], 59)  # every user has at least one target
    acc = MetricAccumulator((5, 10, 20, 50))
    acc.update(torch.as_tensor(ranks))
    dumped = np.where(ranks >= PADDED_RANK, -1, ranks)  # the ranks-dump convention
    assert per_user_metric(dumped, metric).mean() == pytest.approx(acc.compute()[metric], abs=1e-12)


def test_bootstrap_interval_and_p():
    diffs = np.where(np.arange(400) < 120, 1.0, 0.0)  # mean 0.3, se = sqrt(0.21 / 400) ~ 0.023
    mean, lo, hi, p = bootstrap_mean_diff(diffs, n_boot=2000, seed=1)
    assert mean == pytest.approx(0.3)
    assert 0.3 - 0.07 < lo < 0.3 - 0.02 and 0.3 + 0.02 < hi < 0.3 + 0.07
    assert p < 0.001
    _, lo, hi, p = bootstrap_mean_diff(np.tile([-1.0, 1.0], 200), n_boot=2000, seed=1)
    assert lo < 0 < hi and p > 0.5


def test_groups_statistics_best_and_baseline(board):
    rows = build_rows(
        read_records(board), ["ndcg@10", "hr@10"], baseline="sasrec", metric="ndcg@10", n_boot=500
    )
    loo = [r for r in rows if r.protocol == "loo/all_positions"]
    masked = [r for r in rows if r.protocol == "loo/all_positions/masked"]
    assert [r.model for r in loo] == ["bert4rec", "sasrec"]  # sorted by ndcg@10
    assert sorted(r.model for r in masked) == ["gru4rec", "sasrec"]
    bert, sas = loo
    assert sas.stats["ndcg@10"].mean == pytest.approx(0.12) and sas.stats["ndcg@10"].std == pytest.approx(
        0.02
    )
    assert bert.stats["ndcg@10"].mean == pytest.approx(0.15) and bert.stats["ndcg@10"].n == 3
    assert bert.stats["trust"].mean == pytest.approx(0.7) and "trust" not in sas.stats
    # best per column inside the group: accuracy max, cost min; the masked 0.90 plays no part
    assert {"ndcg@10", "hr@10"} <= bert.best and "train_seconds_per_epoch" in sas.best
    assert "ndcg@10" not in sas.best
    assert sas.is_baseline and not bert.is_baseline
    t = 0.03 / (0.01 / math.sqrt(3))
    assert bert.delta == pytest.approx(0.03) and bert.p_paired == pytest.approx(1 - t / math.sqrt(t * t + 2))
    # per-user bootstrap on the dumped ranks: 30 of 100 users go from 0 to 1 (ndcg@10 at rank 0)
    delta, lo, hi, p = bert.boot
    assert delta == pytest.approx(0.3) and lo < 0.3 < hi and p < 0.01
    # masked group has a baseline (sasrec) too, but only one seed: no paired p-value, no ranks
    gru = next(r for r in masked if r.model == "gru4rec")
    assert gru.delta == pytest.approx(0.5 - 0.9) and math.isnan(gru.p_paired) and gru.boot is None


def test_variants_and_duplicate_seeds(tmp_path):
    make_record(tmp_path, "sasrec", 1, 0.10, lr=1e-3)
    make_record(tmp_path, "sasrec", 1, 0.20, lr=1e-2)
    make_record(tmp_path, "sasrec", 2, 0.30, lr=1e-2, created="2026-01-01T00:00:00Z", tag="a")
    make_record(tmp_path, "sasrec", 2, 0.40, lr=1e-2, created="2026-01-02T00:00:00Z", tag="b")  # newer wins
    rows = build_rows(read_records(tmp_path), ["ndcg@10"])
    by_name = {r.name: r for r in rows}
    assert set(by_name) == {"sasrec [lr=0.001]", "sasrec [lr=0.01]"}
    assert by_name["sasrec [lr=0.01]"].stats["ndcg@10"].by_seed == {1: 0.20, 2: 0.40}


def test_renderings(board, tmp_path, capsys):
    rows = build_rows(read_records(board), ["ndcg@10"], baseline="sasrec", n_boot=200)
    md = render(rows, "md", ["ndcg@10"], "sasrec")
    assert "| bert4rec | 3 | **0.1500 ± 0.0173** |" in md.replace("ml-100k | loo/all_positions | ", "")
    assert "baseline" in md and md.count("\n") == len(rows) + 2
    html = render(rows, "html", ["ndcg@10"], "sasrec")
    assert "<strong>0.1500 ± 0.0173</strong>" in html and html.count("<tr>") == len(rows) + 1
    table = list(csv.DictReader(io.StringIO(render(rows, "csv", ["ndcg@10"], "sasrec"))))
    bert = next(r for r in table if r["model"] == "bert4rec" and r["protocol"] == "loo/all_positions")
    assert float(bert["ndcg@10"]) == pytest.approx(0.15) and bert["ndcg@10_best"] == "1"
    assert bert["seeds"] == "1 2 3" and float(bert["delta"]) == pytest.approx(0.03)
    assert "bert4rec" in render(rows, "rich", ["ndcg@10"], "sasrec")
    out = tmp_path / "board.csv"
    assert main([str(board), "--format", "csv", "--baseline", "sasrec", "--out", str(out)]) == 0
    assert len(list(csv.DictReader(out.open()))) == len(rows)
    assert main([str(board), "--format", "md", "--metrics", "ndcg@10,hr@10"]) == 0
    assert "hr@10" in capsys.readouterr().out
    assert main([str(tmp_path / "empty")]) == 1

"""Bucketed metrics must partition the users and agree with the overall evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generec.data.datamodule import SeqDataModule
from generec.eval.breakdown import breakdown, bucket_names, bucket_of, train_item_counts
from generec.eval.metrics import MetricAccumulator
from generec.models.sasrec import SASRec


def test_bucket_edges():
    assert bucket_names((0, 50, 100, 150)) == ["0-50", "50-100", "100-150", "150+"]
    assert bucket_of(np.array([0, 49, 50, 149, 150, 10_000]), (0, 50, 100, 150)).tolist() == [
        0,
        0,
        1,
        2,
        3,
        3,
    ]


def _walks_and_model(tmp_path, lines: list[str], seed: int) -> tuple[SeqDataModule, SASRec]:
    """A small user-item pairs file as a datamodule, and a seeded one-layer SASRec over it."""
    path = tmp_path / "walks.txt"
    path.write_text("\n".join(lines) + "\n")
    dm = SeqDataModule(registry=None, path=str(path), format="pairs", max_len=8)
    dm.setup()
    torch.manual_seed(seed)
    return dm, SASRec(num_items=dm.num_items, max_len=8, hidden_size=8, inner_size=16, num_layers=1)


@pytest.mark.parametrize("by,edges", [("popularity", (0, 3, 6)), ("length", (0, 4, 8))])
def test_breakdown_partitions_users_and_matches_overall(tmp_path, by, edges):
    lines = [f"u{u}\ti{(u * 5 + t * (1 + u % 4)) % 20 + 1}" for u in range(40) for t in range(4 + u % 9)]
    dm, model = _walks_and_model(tmp_path, lines, seed=0)
    parts = breakdown(model, dm, "test", by=by, edges=edges, ks=(10,))
    assert sum(p["users"] for p in parts.values()) == len(dm.eval_rows["test"])
    overall = MetricAccumulator((10,))
    model.eval()
    with torch.no_grad():
        batch = dm.eval_rows["test"][torch.arange(len(dm.eval_rows["test"]))]
        from generec.eval.metrics import target_ranks
        from generec.eval.ranking import prepare_scores

        overall.update(target_ranks(prepare_scores(model.score(batch)), batch["targets"]))
    total = overall.compute()["hr@10"] * len(dm.eval_rows["test"])
    assert sum(p.get("hr@10", 0) * p["users"] for p in parts.values()) == pytest.approx(total)
    counts = train_item_counts(dm)
    assert counts[0] == 0 and counts.sum() == dm.split.train_end.sum()


def test_bucket_metrics_of_a_ranks_dump_match_breakdown(tmp_path):
    """The drivers' bucket tables read ``<run>.ranks.npz``; they must equal a fresh breakdown."""
    from generec.eval.breakdown import bucket_metrics, ranks_and_rows
    from generec.ranks_dump import user_facts, write_ranks

    lines = [f"u{u}\ti{(u * 7 + t * (1 + u % 5)) % 30 + 1}" for u in range(60) for t in range(3 + u % 11)]
    dm, model = _walks_and_model(tmp_path, lines, seed=1)
    ranks, _, _ = ranks_and_rows(model, dm, "test")
    users = dm.eval_rows["test"].tensors["users"].numpy()
    dump = write_ranks(tmp_path / "run.ranks.npz", users, ranks.numpy(), **user_facts(dm, users))
    z = np.load(dump)
    edges = (0, 4, 8)
    assert bucket_metrics(z["ranks"], z["target_pop"], edges) == breakdown(
        model, dm, "test", by="popularity", edges=edges
    )
    parts = bucket_metrics(z["ranks"], z["history_len"], edges)
    assert sum(p["users"] for p in parts.values()) == len(users)

"""Vectorised metrics against a slow, obviously-correct reference on random inputs."""

import math

import pytest
import torch

from generec.eval.metrics import PADDED_RANK, MetricAccumulator, rank_metric_sums, target_ranks
from generec.eval.ranking import prepare_scores


def reference_metrics(scores, targets, history, ks):
    """One user at a time, plain Python: count items strictly better or tied (excluding the target)."""
    totals = {f"{m}@{k}": 0.0 for k in ks for m in ("hr", "ndcg", "mrr", "recall")}
    for row, t, hist in zip(scores.tolist(), targets.tolist(), history.tolist(), strict=True):
        row = list(row)
        row[0] = -math.inf
        for h in hist:
            if h:
                row[h] = -math.inf
        ahead = sum(1 for i, s in enumerate(row) if i not in (0, t) and s >= row[t])
        for k in ks:
            if ahead < k:
                totals[f"hr@{k}"] += 1
                totals[f"recall@{k}"] += 1
                totals[f"ndcg@{k}"] += 1 / math.log2(ahead + 2)
                totals[f"mrr@{k}"] += 1 / (ahead + 1)
    return {k: v / len(targets) for k, v in totals.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_reference_with_ties_and_history(seed):
    g = torch.Generator().manual_seed(seed)
    B, n_items, ks = 64, 40, (1, 5, 10, 20)
    # Few distinct values -> many ties.
    scores = torch.randint(0, 6, (B, n_items + 1), generator=g).float()
    targets = torch.randint(1, n_items + 1, (B,), generator=g)
    history = torch.randint(0, n_items + 1, (B, 7), generator=g)
    acc = MetricAccumulator(ks)
    for chunk in range(0, B, 16):  # several batches, one compute
        s = prepare_scores(scores[chunk : chunk + 16], history[chunk : chunk + 16])
        acc.update(target_ranks(s, targets[chunk : chunk + 16]))
    got = acc.compute()
    want = reference_metrics(scores, targets, history, ks)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k


def test_constant_scores_give_near_zero_metrics():
    n_items = 1000
    scores = torch.zeros(8, n_items + 1)
    ranks = target_ranks(prepare_scores(scores), torch.arange(1, 9))
    assert (ranks == n_items - 1).all()  # every other real item is counted ahead
    sums = rank_metric_sums(ranks, (10,))
    assert sums["hr@10"] == 0 and sums["ndcg@10"] == 0


def test_padding_never_ranked_and_target_in_history_ranks_last():
    scores = torch.tensor([[100.0, 1.0, 2.0, 3.0]])  # padding column scores highest
    assert target_ranks(prepare_scores(scores), torch.tensor([3])).item() == 0
    masked = prepare_scores(scores, history=torch.tensor([[3, 0]]))
    assert target_ranks(masked, torch.tensor([3])).item() == 2  # ties with nothing better, but -inf


def reference_multi_target(scores, targets, ks):
    """Rank the whole catalogue explicitly (ties against targets), then read metrics off the list."""
    totals = {f"{m}@{k}": 0.0 for k in ks for m in ("hr", "ndcg", "mrr", "recall")}
    for row, tgt in zip(scores.tolist(), targets.tolist(), strict=True):
        tgt = [t for t in tgt if t]
        ranks = [sum(1 for i, s in enumerate(row) if i not in (0, t) and s >= row[t]) for t in tgt]
        for k in ks:
            hits = [r for r in ranks if r < k]
            ideal = sum(1 / math.log2(i + 2) for i in range(min(len(tgt), k)))
            totals[f"hr@{k}"] += bool(hits)
            totals[f"recall@{k}"] += len(hits) / len(tgt)
            totals[f"ndcg@{k}"] += sum(1 / math.log2(r + 2) for r in hits) / ideal
            totals[f"mrr@{k}"] += 1 / (min(hits) + 1) if hits else 0.0
    return {k: v / len(targets) for k, v in totals.items()}


@pytest.mark.parametrize("seed", [0, 1])
def test_multi_target_metrics_match_reference(seed):
    g = torch.Generator().manual_seed(seed)
    B, n_items, ks = 32, 50, (1, 5, 10, 20)
    scores = torch.randint(0, 8, (B, n_items + 1), generator=g).float()
    targets = torch.randint(1, n_items + 1, (B, 5), generator=g)
    targets[:, 3:] *= torch.randint(0, 2, (B, 2), generator=g)  # ragged: some padded slots
    acc = MetricAccumulator(ks)
    acc.update(target_ranks(prepare_scores(scores), targets))
    got, want = acc.compute(), reference_multi_target(scores, targets, ks)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k


def test_single_target_as_column_equals_1d():
    g = torch.Generator().manual_seed(3)
    scores = prepare_scores(torch.randn(16, 31, generator=g))
    targets = torch.randint(1, 31, (16,), generator=g)
    assert torch.equal(target_ranks(scores, targets), target_ranks(scores, targets[:, None])[:, 0])


@pytest.mark.parametrize("seed", range(4))
def test_multi_target_ranks_match_brute_force_with_ties_and_masked_items(seed):
    """The binned multi-target ranks equal a direct count, -inf (masked) items and targets included."""
    g = torch.Generator().manual_seed(seed)
    B, n_items, T = 12, 40, 6
    scores = torch.randint(0, 4, (B, n_items + 1), generator=g).float()
    scores[torch.rand(B, n_items + 1, generator=g) < 0.25] = -torch.inf
    scores[:, 0] = -torch.inf
    targets = torch.randint(0, n_items + 1, (B, T), generator=g)  # 0 = padded slot
    ranks = target_ranks(scores, targets)
    for b in range(B):
        for t in range(T):
            item = int(targets[b, t])
            if item == 0:
                assert ranks[b, t] == PADDED_RANK
            else:
                want = int((scores[b, 1:] >= scores[b, item]).sum()) - 1
                assert ranks[b, t] == want, (b, t)

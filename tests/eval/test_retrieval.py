"""Retrieval: faiss vs the exact torch fallback, multi-interest merging, diversity."""

from __future__ import annotations

import math

import pytest
import torch

from generec.eval.retrieval import (
    ItemIndex,
    category_coverage,
    item_categories,
    merge_interest_results,
    pairwise_diversity,
    retrieve,
)


def table(n: int = 3000, d: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(n + 1, d, generator=g)
    t[0] = 100.0  # padding row: would win every query if it were indexed
    return t


def test_faiss_flat_and_torch_fallback_return_the_same_topk():
    items = table()
    queries = torch.randn(64, 32, generator=torch.Generator().manual_seed(1))
    s_f, i_f = ItemIndex(items, backend="faiss").search(queries, 50)
    s_t, i_t = ItemIndex(items, backend="torch").search(queries, 50)
    assert torch.equal(i_f, i_t)
    assert torch.allclose(s_f, s_t, atol=1e-4)
    assert (i_t >= 1).all()  # padding never returned
    # exact: the returned scores are the true (float64) scores and nothing better was left out
    exact = queries.double() @ items[1:].double().T  # [Q, I]
    assert torch.allclose(exact.gather(1, i_t - 1), s_t.double(), atol=1e-4)
    assert (s_t[:, -1].double() >= exact.topk(50, dim=1).values[:, -1] - 1e-4).all()


def test_multi_interest_merge_equals_max_over_interests_topn():
    items = table(2000, 16)
    interests = torch.randn(20, 4, 16, generator=torch.Generator().manual_seed(2))
    for backend in ("faiss", "torch"):
        scores, ids = retrieve(ItemIndex(items, backend=backend), interests, 30)
        full = torch.einsum("bkd,nd->bkn", interests, items[1:]).amax(1)  # [B, I]
        ref = full.topk(30, dim=1)
        assert torch.equal(ids, ref.indices + 1), backend
        assert torch.allclose(scores, ref.values, atol=1e-4)
        assert all(len(set(r.tolist())) == 30 for r in ids)  # de-duplicated


def test_merge_deduplicates_keeps_best_score_and_pads():
    scores = torch.tensor([[[5.0, 3.0, 1.0], [4.0, 3.5, -1.0]]])
    ids = torch.tensor([[[7, 2, 9], [2, 7, 0]]])  # item 7 and 2 found twice; 0 = unfilled slot
    s, i = merge_interest_results(scores, ids, 5)
    assert i.tolist() == [[7, 2, 9, 0, 0]]
    assert s[0, :3].tolist() == [5.0, 4.0, 1.0] and torch.isinf(s[0, 3:]).all()


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_recover_most_of_the_exact_topk(kind):
    items = table(5000, 16)
    queries = torch.randn(32, 16, generator=torch.Generator().manual_seed(3))
    _, approx = ItemIndex(items, backend="faiss", index_type=kind, nlist=64, nprobe=16).search(queries, 20)
    _, exact = ItemIndex(items, backend="torch").search(queries, 20)
    overlap = (
        sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact, strict=True))
        / exact.numel()
    )
    assert overlap > 0.8, overlap


def test_torch_backend_is_exact_only():
    with pytest.raises(ValueError, match="exact"):
        ItemIndex(table(10, 4), backend="torch", index_type="hnsw")


def test_diversity_and_coverage():
    cats = item_categories({"attributes": ["", "3 9", "3", "4 1", "", "5"]})
    assert cats.tolist() == [0, 1, 1, 2, 0, 3]
    cats = torch.from_numpy(cats)
    ids = torch.tensor([[1, 2, 3, 5], [1, 2, 0, 0]])
    # row 0: categories 1,1,2,3 -> 5 of 6 pairs differ; 3 distinct over 4 items
    assert pairwise_diversity(ids, cats).tolist() == pytest.approx([5 / 6, 0.0])
    assert category_coverage(ids, cats).tolist() == pytest.approx([0.75, 0.5])


def test_comirec_hit_normalised_ndcg_differs_from_the_default_only_in_its_normaliser():
    from generec.eval.metrics import PADDED_RANK, rank_metric_sums
    from generec.eval.retrieval import comirec_hit_normalised_ndcg

    ranks = torch.tensor([[0, 30, PADDED_RANK], [3, 1, 2]])  # user 0: 1 hit of 2 targets in the top 20
    ours = comirec_hit_normalised_ndcg(ranks, 20)
    assert ours[0].item() == pytest.approx(1.0)  # normalised by one hit
    ideal3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    got1 = (1 / math.log2(5) + 1 / math.log2(3) + 1 / math.log2(4)) / ideal3
    assert ours[1].item() == pytest.approx(got1)
    default = rank_metric_sums(ranks[:1], (20,))["ndcg@20"].item()
    assert default == pytest.approx(1.0 / (1 + 1 / math.log2(3)))  # ideal DCG of min(T, k) = 2 targets

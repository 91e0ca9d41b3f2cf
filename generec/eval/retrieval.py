"""Candidate retrieval for multi-interest models: faiss (flat IP, IVF, HNSW) or an exact torch fallback.

Each of a user's K interests queries the top-N items; the K lists are merged by score,
de-duplicated (an item keeps its best score) and cut to N. With exact search this equals the top-N
of ``max_k <v_k, e_i>``, which is what ``SeqRecModule.score`` ranks during training-time evaluation.
Row 0 of the item table (padding) is never indexed. faiss is optional: without it, or with
``backend="torch"``, the exact torch search gives the same top-N (ties broken toward the lower id).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

BACKENDS = ("faiss", "torch")
INDEX_TYPES = ("flat", "ivf", "hnsw")

try:  # faiss-cpu here; faiss-gpu builds expose the same module
    import faiss
except ImportError:  # pragma: no cover - exercised only where faiss is missing
    faiss = None


def faiss_available() -> bool:
    return faiss is not None


class ItemIndex:
    """Inner-product index over items 1..I of an item table [I + 1, d].

    ``index_type``: "flat" (exact), "ivf" (``nlist`` cells, ``nprobe`` probed) or "hnsw" (``hnsw_m``
    links, ``ef_search``). The approximate types need faiss. On CUDA tables faiss moves the index to
    the GPU when the installed faiss has GPU support (flat and IVF; HNSW stays on the CPU).
    """

    max_scores_elements = 1 << 26  # torch fallback: at most 256 MB of float32 scores at once

    def __init__(
        self,
        item_table: Tensor,
        backend: str = "faiss",
        index_type: str = "flat",
        nlist: int = 1024,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 128,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if index_type not in INDEX_TYPES:
            raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {index_type!r}")
        if backend == "faiss" and faiss is None:
            raise ImportError(
                "backend='faiss' needs the faiss package (pip install faiss-cpu); or use 'torch'"
            )
        if backend == "torch" and index_type != "flat":
            raise ValueError("the torch fallback is exact: index_type must be 'flat'")
        self.backend, self.index_type = backend, index_type
        self.device = item_table.device
        self.items = item_table[1:].detach().float().contiguous()  # [I, d]
        self.num_items, self.dim = self.items.shape
        self.index = None
        if backend == "faiss":
            self.index = self._build_faiss(nlist, nprobe, hnsw_m, ef_search)

    def _build_faiss(self, nlist: int, nprobe: int, hnsw_m: int, ef_search: int):
        x = self.items.cpu().numpy()
        if self.index_type == "flat":
            index = faiss.IndexFlatIP(self.dim)
        elif self.index_type == "ivf":
            nlist = max(1, min(nlist, self.num_items // 39 or 1))  # faiss wants >= 39 points per cell
            index = faiss.IndexIVFFlat(
                faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT
            )
            index.train(x)
            index.nprobe = min(nprobe, nlist)
        else:
            index = faiss.IndexHNSWFlat(self.dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = ef_search
        index.add(x)
        if (
            self.device.type == "cuda"
            and self.index_type != "hnsw"
            and hasattr(faiss, "StandardGpuResources")
        ):
            if faiss.get_num_gpus() > 0:
                self._gpu_res = faiss.StandardGpuResources()
                index = faiss.index_cpu_to_gpu(self._gpu_res, self.device.index or 0, index)
        return index

    def search(self, queries: Tensor, n: int) -> tuple[Tensor, Tensor]:
        """Top-``n`` items per query: queries [Q, d] -> (scores [Q, n], item ids [Q, n], ids >= 1).

        Sorted by score, ties toward the lower id. Slots faiss could not fill (approximate indexes)
        get id 0 and score -inf.
        """
        n = min(n, self.num_items)
        q = queries.detach().float()
        if self.backend == "torch":
            q = q.to(self.device)
            chunk = max(1, self.max_scores_elements // self.num_items)  # bounds the [chunk, I] score block
            parts = [torch.topk(q[i : i + chunk] @ self.items.T, n, dim=1) for i in range(0, len(q), chunk)]
            values = torch.cat([p.values for p in parts])
            idx = torch.cat([p.indices for p in parts])
            return _sort_ties_by_id(values, idx + 1)
        values, idx = self.index.search(np.ascontiguousarray(q.cpu().numpy()), n)
        values = torch.from_numpy(values).to(queries.device)
        idx = torch.from_numpy(idx).to(queries.device)
        missing = idx < 0
        values = values.masked_fill(missing, float("-inf"))
        return _sort_ties_by_id(values, (idx + 1).masked_fill(missing, 0))


def _sort_ties_by_id(values: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
    """Re-orders each row by (score desc, id asc), so both backends break exact ties the same way."""
    by_id = ids.argsort(dim=1, stable=True)
    values, ids = values.gather(1, by_id), ids.gather(1, by_id)
    order = values.argsort(dim=1, descending=True, stable=True)
    return values.gather(1, order), ids.gather(1, order)


def merge_interest_results(scores: Tensor, ids: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Merges per-interest top lists: scores/ids [B, K, N'] -> [B, n] by score, de-duplicated.

    An item found by several interests keeps its best score; ids 0 (unfilled) are dropped.
    Rows with fewer than n distinct items are padded with id 0, score -inf.
    """
    B = scores.shape[0]
    values, items = _sort_ties_by_id(scores.reshape(B, -1), ids.reshape(B, -1))  # [B, M] best first
    # a later (worse) copy of an item is a duplicate: stable sort by id keeps the score order
    by_id = items.argsort(dim=1, stable=True)
    sorted_ids = items.gather(1, by_id)
    dup_sorted = torch.zeros_like(sorted_ids, dtype=torch.bool)
    dup_sorted[:, 1:] = sorted_ids[:, 1:] == sorted_ids[:, :-1]
    dup = torch.zeros_like(dup_sorted).scatter(1, by_id, dup_sorted)
    drop = dup | (items == 0)
    values = values.masked_fill(drop, float("-inf"))
    items = items.masked_fill(drop, 0)
    values, items = _sort_ties_by_id(values, items)
    # dropped slots (-inf) sort last; ties among them by id put the 0s first, which is harmless
    keep = min(n, values.shape[1])
    values, items = values[:, :keep], items[:, :keep]
    if keep < n:
        pad = n - keep
        values = torch.cat([values, values.new_full((B, pad), float("-inf"))], 1)
        items = torch.cat([items, items.new_zeros((B, pad))], 1)
    return values, items.masked_fill(torch.isinf(values) & (values < 0), 0)


def retrieve(index: ItemIndex, interests: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Multi-interest top-N: interests [B, K, d] (or [B, d]) -> (scores [B, n], item ids [B, n])."""
    if interests.dim() == 2:
        interests = interests[:, None]
    B, K, d = interests.shape
    scores, ids = index.search(interests.reshape(B * K, d), n)  # [B*K, n]
    return merge_interest_results(scores.reshape(B, K, -1), ids.reshape(B, K, -1), n)


# ----------------------------------------------------------------------------- diversity


def item_categories(item_side: dict[str, list[str]], column: str = "attributes") -> np.ndarray:
    """Primary category per item from a side column: the first space-separated token; [I + 1] int64.

    Category ids are 1-based in order of first appearance; 0 = unknown (and the padding row).
    """
    if column not in item_side:
        raise KeyError(f"no item side column {column!r}; available: {sorted(item_side)}")
    firsts = [v.split()[0] if v and v.split() else "" for v in item_side[column]]
    codes: dict[str, int] = {}
    out = np.zeros(len(firsts), dtype=np.int64)
    for i, tok in enumerate(firsts):
        if tok and i > 0:
            out[i] = codes.setdefault(tok, len(codes) + 1)
    return out


def category_coverage(ids: Tensor, categories: Tensor) -> Tensor:
    """Distinct known categories in each list over the list length: ids [B, N], categories [I + 1] -> [B]."""
    cats = categories.to(ids.device)[ids]  # [B, N]
    cats_sorted = cats.sort(dim=1).values
    new = torch.ones_like(cats_sorted, dtype=torch.bool)
    new[:, 1:] = cats_sorted[:, 1:] != cats_sorted[:, :-1]
    distinct = (new & (cats_sorted > 0)).sum(1)
    return distinct.float() / (ids > 0).sum(1).clamp(min=1).float()


def pairwise_diversity(ids: Tensor, categories: Tensor) -> Tensor:
    """ComiRec's diversity: share of item pairs in the list with different categories: [B, N] -> [B]."""
    cats = categories.to(ids.device)[ids]  # [B, N]
    real = ids > 0
    diff = (cats[:, :, None] != cats[:, None, :]) & real[:, :, None] & real[:, None, :]  # [B, N, N]
    n = real.sum(1).float()
    pairs = (n * (n - 1)).clamp(min=1)  # ordered pairs; diff counts each unordered pair twice
    return diff.sum((1, 2)).float() / pairs


def recall_at(ids: Tensor, targets: Tensor, ks: Sequence[int] = (20, 50)) -> dict[str, Tensor]:
    """Per-user Recall@k of retrieved lists against several targets (0-padded): [B, N], [B, T]."""
    out = {}
    n_t = (targets > 0).sum(1).clamp(min=1).float()
    for k in ks:
        hit = (ids[:, :k, None] == targets[:, None, :]) & (targets[:, None, :] > 0)  # [B, k, T]
        out[f"recall@{k}"] = hit.any(1).sum(1).float() / n_t
    return out


def comirec_hit_normalised_ndcg(ranks: Tensor, k: int) -> Tensor:
    """ComiRec's NDCG variant, offered only as a named option: per user [B] from ranks [B, T].

    DCG of the hit targets over the ideal DCG of *the number of hits* (not of min(T, k)), so a user
    with one hit at rank 0 scores 1.0 however many targets were missed. ComiRec's code also takes the
    hit positions from iterating a Python set (order lost); here the true ranks are used. The default
    metric (``generec.eval.metrics``) normalises by min(T, k) and is rank-faithful.
    """
    ranks = ranks.to(torch.float64)
    hit = ranks < k  # [B, T]
    dcg = torch.where(hit, 1.0 / torch.log2(ranks + 2.0), 0.0).sum(1)
    n_hit = hit.sum(1)
    ideal = torch.cumsum(1.0 / torch.log2(torch.arange(k, dtype=torch.float64, device=ranks.device) + 2.0), 0)
    idcg = ideal[(n_hit - 1).clamp(min=0)]
    return torch.where(n_hit > 0, dcg / idcg, 0.0)

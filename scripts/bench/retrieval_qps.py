"""Queries per second of exact inner-product top-N search: faiss IndexFlatIP vs the torch fallback.

Random Gaussian item tables (10^4, 10^5, 10^6 items, d = 64) and queries; both backends return the same
top-N (checked on the first queries). Threads are pinned (default 1) so that numbers taken on a shared
machine mean something; GPU rows are added when CUDA is available.

    python scripts/bench/retrieval_qps.py --sizes 10000 100000 1000000 --queries 1024 --topn 50
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from generec.eval.retrieval import ItemIndex, faiss  # noqa: E402


def timed(index: ItemIndex, queries: torch.Tensor, n: int, batch: int, repeats: int) -> float:
    """Best-of-``repeats`` seconds to answer all queries in batches of ``batch``."""
    index.search(queries[:batch], n)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if queries.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(0, len(queries), batch):
            index.search(queries[i : i + batch], n)
        if queries.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--queries", type=int, default=1024)
    p.add_argument("--batch", type=int, default=256, help="queries per search call")
    p.add_argument("--topn", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if faiss is not None:
        faiss.omp_set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    g = torch.Generator().manual_seed(0)
    for n_items in args.sizes:
        items = torch.randn(n_items + 1, args.dim, generator=g)
        queries = torch.randn(args.queries, args.dim, generator=g)
        for device in devices:
            it, qs = items.to(device), queries.to(device)
            backends = ["torch"] + (["faiss"] if faiss is not None else [])
            ids = {}
            for backend in backends:
                index = ItemIndex(it, backend=backend)
                ids[backend] = index.search(qs[:64], args.topn)[1].cpu()
                seconds = timed(index, qs, args.topn, args.batch, args.repeats)
                row = {"items": n_items, "device": device, "backend": backend, "qps": args.queries / seconds,
                       "seconds": seconds}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
            if len(ids) == 2:
                same = float((ids["torch"] == ids["faiss"]).float().mean())
                print(f"# {n_items} items on {device}: top-{args.topn} ids identical in {same:.2%} of slots")
    meta = {"dim": args.dim, "queries": args.queries, "batch": args.batch, "topn": args.topn,
            "threads": args.threads, "torch": torch.__version__,
            "faiss": getattr(faiss, "__version__", None), "cpu": platform.processor() or platform.machine()}  # fmt: skip
    print("| items | device | torch QPS | faiss QPS |")
    print("|---:|---|---:|---:|")
    for n_items in args.sizes:
        for device in devices:
            q = {r["backend"]: r["qps"] for r in rows if r["items"] == n_items and r["device"] == device}
            print(f"| {n_items:,} | {device} | {q.get('torch', 0):,.0f} | {q.get('faiss', 0):,.0f} |")
    if args.out:
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

"""Category names for items, for the instruction simulator's least specific level.

Beauty and Games have no named categories (Beauty's S3Rec attribute ids have lost their names), so a
category is derived from the catalogue itself: k-means over the items' sentence embeddings, each cluster
named by the words that are most over-represented in its titles. The name is shared by every item of the
cluster, so a category instruction says what *kind* of item the user wants, not which one. A dataset
with a real category column (ml-100k's genres) uses it instead.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

# Words that never name a kind of product: function words, sizes, packaging, colour-neutral filler.
_STOP = frozenset(
    """a an and or the of for with in on to by from at as is it its this that new pack packs set sets
    count ct oz fl ounce ounces ml mg g kg lb lbs inch inches piece pieces size sizes value bonus free
    edition version vol volume x w plus pro ultra mini large small total one two three four""".split()
)
_WORD = re.compile(r"[a-z][a-z'\-]+")


def title_words(text: str) -> list[str]:
    """Lower-case content words of ``text`` (no digits, sizes, packaging or function words)."""
    return [w.strip("'-") for w in _WORD.findall(text.lower()) if w.strip("'-") not in _STOP and len(w) > 2]


def cluster_names(
    titles: Sequence[str], labels: np.ndarray, n_clusters: int, words_per_name: int = 2, min_count: int = 3
) -> list[str]:
    """A name per cluster: its ``words_per_name`` words with the highest tf-idf (share of the cluster's
    titles holding the word x log(titles / titles holding it anywhere)), among words seen in at least
    ``min_count`` of its titles: frequent in the cluster and rare elsewhere."""
    docs = [set(title_words(t)) for t in titles]
    overall = Counter(w for d in docs for w in d)
    n_docs = max(1, sum(1 for d in docs if d))
    per_cluster: list[Counter] = [Counter() for _ in range(n_clusters)]
    sizes = np.zeros(n_clusters, dtype=np.int64)
    for doc, c in zip(docs, labels, strict=True):
        if doc:
            per_cluster[c].update(doc)
            sizes[c] += 1
    names = []
    for c in range(n_clusters):
        counts = per_cluster[c]
        floor = min(min_count, max(1, int(sizes[c])))
        ranked = sorted(
            (w for w, k in counts.items() if k >= floor),
            key=lambda w: (-(counts[w] / sizes[c]) * np.log(n_docs / overall[w]), w),
        )
        names.append(" ".join(ranked[:words_per_name]))
    return names


def item_categories(
    titles: Sequence[str],
    embeddings: torch.Tensor | None,
    n_clusters: int = 100,
    seed: int = 0,
    category_column: Sequence[str] | None = None,
) -> list[str]:
    """Category text per item id (row 0 and items without text: ""), from ``category_column`` when the
    dataset has one, else from seeded k-means (faiss) over ``embeddings`` [I+1, e] of the titles."""
    if category_column is not None:
        return [
            "" if i == 0 or not titles[i] else str(c).replace("|", " ") for i, c in enumerate(category_column)
        ]
    if embeddings is None:
        raise ValueError("item_categories needs the items' embeddings when there is no category_column")
    import faiss

    has_text = np.array([bool(t.strip()) for t in titles])
    has_text[0] = False
    idx = np.flatnonzero(has_text)
    if len(idx) < n_clusters:
        raise ValueError(f"{len(idx)} items with text, fewer than n_clusters={n_clusters}")
    x = np.ascontiguousarray(embeddings[idx].float().numpy())
    km = faiss.Kmeans(x.shape[1], n_clusters, niter=25, seed=seed, spherical=True, verbose=False)
    km.train(x)
    _, assign = km.index.search(x, 1)
    labels = assign[:, 0]
    names = cluster_names([titles[i] for i in idx], labels, n_clusters)
    out = [""] * len(titles)
    for i, c in zip(idx, labels, strict=True):
        out[i] = names[c]
    return out

"""Synthetic training sequences for train-on-synthetic, test-on-real (TSTR) utility.

Every training item after a user's first is replaced by a generator's item for the *real* prefix
before it (teacher forcing), so the synthetic set has the real users, lengths and held-out items and
differs only where the generator decides. A recommender trained on it and tested on the real
held-out items, against the same recommender trained on the real sequences, measures how much of
the real signal the generator carries. Generators:

* ``creator``: the GeneRec AI creator conditioned on the recommender's state after the prefix, its
  vector mapped to the nearest catalogue item (``generec.generative.creator.nearest_items``);
* ``random``: uniform catalogue items (the floor); ``popularity``: items drawn by training
  popularity; ``copy``: the real item (the ceiling, and a memorising generator).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from generec.data.batching import left_padded_windows, prefix_targets
from generec.data.types import SequenceData
from generec.results import atomic_write_text
from generec.trust.bias import item_counts

GENERATORS = ("creator", "random", "popularity", "copy")


@torch.inference_mode()
def creator_items(
    model,
    creator,
    prefixes: np.ndarray,
    batch_size: int = 4096,
    seed: int = 0,
    guidance_scale: float | None = None,
    steps: int | None = None,
) -> np.ndarray:
    """The creator's item [N] after each left-padded real prefix [N, L] (nearest catalogue item)."""
    from generec.generative.creator import nearest_items
    from generec.generative.evaluate import encode_rows

    table = model.item_embeddings().detach().float().cpu()
    out = np.zeros(len(prefixes), dtype=np.int64)
    for b, start in enumerate(range(0, len(prefixes), batch_size)):
        rows = torch.from_numpy(prefixes[start : start + batch_size])
        states = encode_rows(model, rows)
        vectors = creator.sample(states, None, guidance_scale=guidance_scale, steps=steps, seed=seed + b)
        out[start : start + len(rows)] = nearest_items(vectors, table, 1)[0][:, 0].numpy()
    return out


def synthetic_items(
    data: SequenceData,
    train_end: np.ndarray,
    generator: str,
    model=None,
    creator=None,
    max_len: int = 50,
    seed: int = 0,
    **sample_kwargs,
) -> np.ndarray:
    """A copy of ``data.items`` whose training targets (positions 1..train_end-1) come from ``generator``."""
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {GENERATORS}, got {generator!r}")
    items = data.items.copy()
    users, pos = prefix_targets(data.offsets, train_end)
    rng = np.random.default_rng(seed)
    if generator == "random":
        items[pos] = rng.integers(1, data.num_items + 1, size=len(pos))
    elif generator == "popularity":
        counts = item_counts(data.items, data.offsets, train_end, data.num_items).astype(np.float64)
        items[pos] = rng.choice(len(counts), size=len(pos), p=counts / counts.sum())
    elif generator == "creator":
        if model is None or creator is None:
            raise ValueError("generator='creator' needs the recommender (model) and the creator")
        prefixes = left_padded_windows(data.items, data.offsets[users], pos, max_len)
        items[pos] = creator_items(model, creator, prefixes, seed=seed, **sample_kwargs)
    return items


def write_sequences(path: str | Path, data: SequenceData, items: np.ndarray) -> Path:
    """One line per user, ``<user> <item> ...`` in original ids (generec's ``sequences`` format), atomically."""
    tokens = np.asarray(data.item_tokens, dtype=object)
    bad = [t for t in (*tokens[1:], *data.user_tokens) if any(c.isspace() for c in str(t))]
    if bad:
        raise ValueError(f"ids with whitespace cannot be written as sequences: {bad[:3]}")
    lines = [
        " ".join([str(data.user_tokens[u]), *map(str, tokens[items[data.offsets[u] : data.offsets[u + 1]]])])
        for u in range(data.num_users)
    ]
    return atomic_write_text(path, "\n".join(lines) + "\n")

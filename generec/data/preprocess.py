"""From raw interactions to chronological per-user sequences, splits, and a processed-data cache.

Everything is vectorised numpy (``np.unique`` / ``np.lexsort`` / ``np.bincount``); the only Python
loops run over items or users (side-table alignment), never over interactions.

Determinism: users are numbered by first appearance in the file, each user's interactions are
sorted by timestamp with ties broken by file order, and items get ids 1..I by first appearance
while walking users in that order. For the S3-Rec files this reproduces the published ids exactly.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from generec.data import formats, registry
from generec.data.splits import comirec_user_split
from generec.data.types import RawInteractions, SequenceData, SideTable

logger = logging.getLogger(__name__)

DEDUP_POLICIES = ("all", "first", "last")
CACHE_VERSION = 1  # bump when build_sequences' output changes for the same inputs
PAD_TOKEN = "[PAD]"


# ----------------------------------------------------------------------------- build


def _first_appearance_codes(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes 0..K-1 numbered by first appearance, and the token of each code."""
    # fixed-width unicode sorts in C; object arrays would compare Python strings (4x slower)
    uniq, first, inv = np.unique(np.asarray(tokens).astype(str), return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # [K] unique index sorted by first appearance
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    return rank[inv.reshape(-1)], uniq[order].astype(object)


def _kcore(ucode: np.ndarray, icode: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
    """Boolean keep-mask after iterative k-core: repeat until no user/item is below its threshold."""
    keep = np.ones(len(ucode), dtype=bool)  # [N]
    if min_user <= 1 and min_item <= 1:
        return keep
    n_u, n_i = int(ucode.max()) + 1, int(icode.max()) + 1
    rounds = 0
    while True:
        uc = np.bincount(ucode[keep], minlength=n_u)  # [U]
        ic = np.bincount(icode[keep], minlength=n_i)  # [I]
        bad_u = (uc > 0) & (uc < min_user)
        bad_i = (ic > 0) & (ic < min_item)
        if not bad_u.any() and not bad_i.any():
            break
        keep &= ~bad_u[ucode] & ~bad_i[icode]
        rounds += 1
    logger.info("k-core (user>=%d, item>=%d) converged after %d round(s)", min_user, min_item, rounds)
    return keep


def _align_side(table: SideTable | None, tokens: np.ndarray, offset: int) -> dict[str, list[str]]:
    """Side columns as lists aligned with ``tokens`` (with ``offset`` leading "" entries for padding)."""
    if table is None:
        return {}
    out = {}
    toks = tokens.tolist()
    for col, mapping in table.columns.items():
        out[col] = [""] * offset + [mapping.get(t, "") for t in toks]
    if table.columns:
        first = next(iter(table.columns.values()))
        covered = sum(t in first for t in toks)
        logger.info("side info %s covers %d/%d ids", table.source or "<table>", covered, len(toks))
    return out


def build_sequences(
    raw: RawInteractions,
    *,
    name: str,
    min_user_inter: int = 0,
    min_item_inter: int = 0,
    dedup: str = "all",
    item_side: SideTable | None = None,
    user_side: SideTable | None = None,
) -> SequenceData:
    """Dedup -> iterative k-core -> chronological sort -> remap ids (see module docstring).

    ``dedup``: "all" keeps repeated (user, item) pairs (repeat consumption, as in the papers);
    "first"/"last" keep the chronologically first/last one.
    """
    if dedup not in DEDUP_POLICIES:
        raise ValueError(f"dedup must be one of {DEDUP_POLICIES}, got {dedup!r}")
    n_raw = len(raw.users)
    if n_raw == 0:
        raise ValueError(f"{raw.source}: no interactions")
    ucode, u_tok_all = _first_appearance_codes(raw.users)  # [N], [U0]
    icode, i_tok_all = _first_appearance_codes(raw.items)  # [N], [I0]
    ts = raw.timestamps if raw.timestamps is not None else np.zeros(n_raw)  # [N]
    # chronological per user; ties -> file row, then position in the file (lexsort is stable)
    order = np.lexsort((np.arange(n_raw), raw.rows, ts, ucode))  # [N]
    ucode, icode = ucode[order], icode[order]

    keep = np.ones(n_raw, dtype=bool)
    if dedup != "all":
        pair = ucode * (int(icode.max()) + 1) + icode  # [N]
        if dedup == "first":
            _, idx = np.unique(pair, return_index=True)
        else:
            _, ridx = np.unique(pair[::-1], return_index=True)
            idx = n_raw - 1 - ridx
        keep[:] = False
        keep[idx] = True
    n_dup = int(n_raw - keep.sum())
    if n_dup:
        logger.info("%s: dropped %d duplicate (user, item) interactions (dedup=%s)", name, n_dup, dedup)
    ucode, icode = ucode[keep], icode[keep]
    users_before, items_before = len(np.unique(ucode)), len(np.unique(icode))

    kmask = _kcore(ucode, icode, min_user_inter, min_item_inter)
    ucode, icode = ucode[kmask], icode[kmask]
    if len(ucode) == 0:
        raise ValueError(
            f"{name}: k-core filtering (min_user_inter={min_user_inter}, min_item_inter={min_item_inter}) "
            "removed every interaction"
        )

    # final ids: users by first appearance (codes already are), items by first appearance in the walk
    user_codes, new_user = np.unique(ucode, return_inverse=True)  # ascending code == file order
    item_codes, first_pos, inv_item = np.unique(icode, return_index=True, return_inverse=True)
    item_rank = np.empty(len(item_codes), dtype=np.int64)
    item_rank[np.argsort(first_pos, kind="stable")] = np.arange(len(item_codes))
    items = item_rank[inv_item.reshape(-1)] + 1  # [N'] remapped ids 1..I

    user_tokens = u_tok_all[user_codes].astype(object)  # [U]
    item_tokens = np.empty(len(item_codes) + 1, dtype=object)  # [I + 1]
    item_tokens[0] = PAD_TOKEN
    item_tokens[item_rank + 1] = i_tok_all[item_codes]

    counts = np.bincount(new_user.reshape(-1), minlength=len(user_codes))  # [U]
    offsets = np.zeros(len(user_codes) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])

    stats = {
        "raw_interactions": n_raw,
        "users": len(user_codes),
        "items": len(item_codes),
        "interactions": len(items),
        "dropped_duplicates": n_dup,
        "kcore_removed_users": users_before - len(user_codes),
        "kcore_removed_items": items_before - len(item_codes),
    }
    if stats["kcore_removed_users"] or stats["kcore_removed_items"]:
        logger.info(
            "%s: k-core removed %d users, %d items, %d interactions",
            name,
            stats["kcore_removed_users"],
            stats["kcore_removed_items"],
            int((~kmask).sum()),
        )
    logger.info(
        "%s: %d users, %d items, %d interactions", name, stats["users"], stats["items"], stats["interactions"]
    )
    return SequenceData(
        name=name,
        items=items.astype(np.int64),
        offsets=offsets,
        user_tokens=user_tokens,
        item_tokens=item_tokens,
        item_side=_align_side(item_side, item_tokens[1:], 1),
        user_side=_align_side(user_side, user_tokens, 0),
        stats=stats,
    )


# ----------------------------------------------------------------------------- splits


@dataclass
class LeaveOneOutSplit:
    """Leave-one-out: last item = test target, second to last = valid target, the rest = train.

    Users shorter than ``min_len`` are kept for training with all their items and never evaluated.
    """

    data: SequenceData = field(repr=False)
    train_end: np.ndarray  # int64 [U], exclusive end of the training prefix of each user's sequence
    eval_users: np.ndarray  # int64 [E], users with len >= min_len
    short_users: np.ndarray  # int64 [S], users with len < min_len (train only)
    min_len: int = 3


def leave_one_out_split(data: SequenceData, min_len: int = 3) -> LeaveOneOutSplit:
    """Standard SASRec/S3-Rec protocol; ``min_len >= 3`` so every evaluated user keeps a train item."""
    if min_len < 3:
        raise ValueError(f"min_len must be >= 3 (train + valid + test), got {min_len}")
    lens = data.lengths  # [U]
    ok = lens >= min_len
    train_end = np.where(ok, lens - 2, lens).astype(np.int64)
    short = np.flatnonzero(~ok).astype(np.int64)
    if len(short):
        logger.info(
            "%s: %d users shorter than %d are train-only (not evaluated)", data.name, len(short), min_len
        )
    return LeaveOneOutSplit(data, train_end, np.flatnonzero(ok).astype(np.int64), short, min_len)


def examples(split: LeaveOneOutSplit, which: str = "valid") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluation examples as ``(users [E], history_end [E], target [E])``.

    The history of example k is ``data.sequence(users[k])[:history_end[k]]``; valid uses
    ``len - 2`` items, test ``len - 1`` (so the valid target is part of the test history).
    """
    if which not in ("valid", "test"):
        raise ValueError(f"which must be 'valid' or 'test', got {which!r}")
    data, users = split.data, split.eval_users
    lens = data.lengths[users]  # [E]
    history_end = lens - (2 if which == "valid" else 1)  # [E]
    target = data.items[data.offsets[users] + history_end]  # [E]
    return users, history_end.astype(np.int64), target


SPLITTERS = {"loo": leave_one_out_split, "comirec": comirec_user_split}


# ----------------------------------------------------------------------------- load + cache


def _merge_tables(*tables: SideTable | None) -> SideTable | None:
    tables = [t for t in tables if t is not None]
    if not tables:
        return None
    out = SideTable(source=" + ".join(t.source for t in tables))
    for t in tables:
        for col, mapping in t.columns.items():
            out.columns.setdefault(col, mapping)
    return out


def _save_cache(path: Path, data: SequenceData) -> None:
    """One .npz holding arrays + JSON metadata, written to a temp file and renamed (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "version": CACHE_VERSION,
        "name": data.name,
        "fingerprint": data.fingerprint,
        "stats": data.stats,
        "item_side": data.item_side,
        "user_side": data.user_side,
    }
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                items=data.items,
                offsets=data.offsets,
                user_tokens=np.asarray(data.user_tokens.tolist(), dtype=str),
                item_tokens=np.asarray(data.item_tokens.tolist(), dtype=str),
                meta=np.asarray(json.dumps(meta)),
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load_cache(path: Path) -> SequenceData:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta.get("version") != CACHE_VERSION:
            raise ValueError(f"cache version {meta.get('version')} != {CACHE_VERSION}")
        return SequenceData(
            name=meta["name"],
            items=z["items"].astype(np.int64),
            offsets=z["offsets"].astype(np.int64),
            user_tokens=np.array(z["user_tokens"].tolist(), dtype=object),
            item_tokens=np.array(z["item_tokens"].tolist(), dtype=object),
            item_side=meta["item_side"],
            user_side=meta["user_side"],
            fingerprint=meta["fingerprint"],
            stats=meta["stats"],
        )


def load_dataset(
    name: str | None = None,
    path: str | os.PathLike[str] | None = None,
    format: str | None = None,
    min_user_inter: int | None = None,
    min_item_inter: int | None = None,
    dedup: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    base_url: str | None = None,
    use_cache: bool = True,
) -> SequenceData:
    """Resolve, read and preprocess a dataset, reusing ``<cache_dir>/processed`` when inputs match.

    Unset preprocessing options fall back to the registry's per-dataset defaults. The cache key
    covers the bytes of every input file and the preprocessing config.
    """
    res = registry.resolve_dataset(
        name, path, data_dir=data_dir, cache_dir=cache_dir, download=download, base_url=base_url
    )
    defaults = {
        "min_user_inter": 0,
        "min_item_inter": 0,
        "dedup": "all",
        **(res.spec.defaults if res.spec else {}),
    }
    cfg = {
        "name": res.name,
        "format": format or res.format,
        "min_user_inter": int(defaults["min_user_inter"] if min_user_inter is None else min_user_inter),
        "min_item_inter": int(defaults["min_item_inter"] if min_item_inter is None else min_item_inter),
        "dedup": defaults["dedup"] if dedup is None else dedup,
        "version": CACHE_VERSION,
    }
    if cfg["dedup"] not in DEDUP_POLICIES:
        raise ValueError(f"dedup must be one of {DEDUP_POLICIES}, got {cfg['dedup']!r}")
    fp = registry.fingerprint_files(res.files, cfg)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", res.name)
    cache_file = registry.default_cache_dir(cache_dir) / "processed" / f"{safe}-{fp[:16]}.npz"
    if use_cache and cache_file.is_file():
        try:
            data = _load_cache(cache_file)
            logger.info("%s: loaded from cache %s", res.name, cache_file)
            return data
        except (OSError, ValueError, KeyError) as e:
            logger.warning("%s: ignoring unreadable cache %s (%s); rebuilding", res.name, cache_file, e)

    raw = formats.read_interactions(res.interactions, format=cfg["format"])
    item_side = _merge_tables(
        formats.read_item_table(res.item_file) if res.item_file else None,
        formats.read_item_attributes_json(res.attributes_file) if res.attributes_file else None,
    )
    user_side = formats.read_user_table(res.user_file) if res.user_file else None
    data = build_sequences(
        raw,
        name=res.name,
        min_user_inter=cfg["min_user_inter"],
        min_item_inter=cfg["min_item_inter"],
        dedup=cfg["dedup"],
        item_side=item_side,
        user_side=user_side,
    )
    data.fingerprint = fp
    if use_cache:
        try:
            _save_cache(cache_file, data)
            logger.info("%s: cached processed data at %s", res.name, cache_file)
        except OSError as e:  # a read-only cache must not stop training
            logger.warning("%s: could not write cache %s (%s)", res.name, cache_file, e)
    return data

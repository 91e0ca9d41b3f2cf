"""Sequence-level data augmentation (DA4Rec's eight operators), vectorised over a left-padded batch.

Every operator maps ``(seqs [B, W], lengths [B])`` to ``(seqs' [B, W'], lengths' [B])``: rows are
LEFT-padded with 0 (the real items of row b sit in the last ``lengths[b]`` columns), so padding is
never read as an item and stays 0. Randomness comes only from the ``generator`` argument (a
``torch.Generator``; ``None`` = torch's global RNG, which ``EpochSeed`` re-seeds each epoch), so a
seeded call is reproducible. Counts follow DA4Rec: an operator touches ``max(n, floor(ratio * len))``
items (``n`` fixed, ``ratio`` relative), clipped to what the row has.

Two ways to use them (``augment.mode``):

* ``offline``: each user's *training part* yields ``copies`` augmented sequences that join the
  training pool before rows are built (the dataset grows; what DA4Rec did). ``slide_window`` then
  means "train on every prefix window" (the ``prefixes`` row builder) of the whole pool.
* ``online``: a fresh augmentation of every training row at every batch, seeded by (seed, epoch, batch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from generec.data.batching import all_positions_rows, left_padded_windows, prefix_rows

# sampler(anchor_items [K], generator) -> new items [K] (ids in 1..num_items)
ItemSampler = Callable[[Tensor, "torch.Generator | None"], Tensor]


# ----------------------------------------------------------------------------- helpers
def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Uniform [0, 1) drawn on the generator's device, moved to ``device``."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


def _randint(high: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform integers in ``[0, high)`` elementwise (``high >= 1``)."""
    u = _rand(tuple(high.shape), generator, high.device)
    return torch.minimum((u * high).long(), high - 1)


def real_mask(lengths: Tensor, width: int) -> Tensor:
    """[B, W] True on the real (non-padding) columns of left-padded rows."""
    cols = torch.arange(width, device=lengths.device)
    return cols[None, :] >= (width - lengths)[:, None]


def real_index(lengths: Tensor, width: int) -> Tensor:
    """[B, W] index of each column inside its row's real part (negative on padding)."""
    cols = torch.arange(width, device=lengths.device)
    return cols[None, :] - (width - lengths)[:, None]


def lengths_of(seqs: Tensor) -> Tensor:
    """Row lengths of a left-padded batch: everything from the first non-zero column on.

    Masked items (0 inside the sequence) count as part of it; only leading zeros are padding.
    """
    W = seqs.shape[1]
    nonzero = seqs != 0
    first = torch.where(nonzero.any(1), nonzero.float().argmax(1), torch.full_like(seqs[:, 0], W))
    return W - first


def pack(values: Tensor, keep: Tensor, width: int | None = None) -> tuple[Tensor, Tensor]:
    """Left-pack the kept entries of each row (order preserved) into ``width`` columns: [B, width]."""
    B, W = values.shape
    width = W if width is None else width
    new_len = keep.sum(1)  # [B]
    dest = width - new_len[:, None] + keep.long().cumsum(1) - 1  # [B, W] target column of kept entries
    out = torch.zeros(B, width + 1, dtype=values.dtype, device=values.device)
    dest = torch.where(keep, dest, torch.full_like(dest, width))  # dropped entries go to a spare column
    out.scatter_(1, dest, torch.where(keep, values, torch.zeros_like(values)))
    return out[:, :width], new_len


def fit_width(seqs: Tensor, lengths: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """Keep the most recent ``width`` items (cut on the left) or left-pad up to ``width``."""
    W = seqs.shape[1]
    if W >= width:
        return seqs[:, W - width :], lengths.clamp(max=width)
    return torch.nn.functional.pad(seqs, (width - W, 0)), lengths


def _counts(lengths: Tensor, n: int, ratio: float) -> Tensor:
    """Per-row number of touched items: ``max(n, floor(ratio * len))``."""
    return torch.maximum(torch.full_like(lengths, n), (lengths.double() * ratio).floor().long())


def _choose(lengths: Tensor, width: int, k: Tensor, generator: torch.Generator | None) -> Tensor:
    """[B, W] marks ``min(k, len)`` distinct real columns per row, uniformly at random."""
    real = real_mask(lengths, width)
    keys = torch.where(
        real,
        _rand((len(lengths), width), generator, lengths.device),
        torch.full_like(real, 2.0, dtype=torch.float),
    )
    ordered = keys.sort(1).values  # [B, W]
    kk = k.clamp(min=0, max=width)
    thr = ordered.gather(1, (kk - 1).clamp(min=0)[:, None])  # [B, 1]
    return real & (keys <= thr) & (kk > 0)[:, None]


def uniform_items(num_items: int) -> ItemSampler:
    """Random item sampling (DA4Rec's default): uniform over 1..num_items, ignoring the anchor."""

    def sample(anchor: Tensor, generator: torch.Generator | None) -> Tensor:
        return _randint(torch.full_like(anchor, num_items), generator) + 1

    return sample


# ----------------------------------------------------------------------------- operators
class Augmentation:
    """Base: a callable on a left-padded batch; ``name`` is the config name."""

    name = "identity"

    def __call__(
        self, seqs: Tensor, lengths: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        return seqs, lengths

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in vars(self).items() if not callable(v))
        return f"{type(self).__name__}({params})"


class Insert(Augmentation):
    """Insert ``n`` sampled items at uniformly chosen gaps (including both ends); width grows by n."""

    name = "insert"

    def __init__(self, num_items: int, n: int = 1, ratio: float = 0.0, sampler: ItemSampler | None = None):
        self.num_items, self.n, self.ratio = num_items, n, ratio
        self.sampler = sampler or uniform_items(num_items)

    def __call__(self, seqs, lengths, generator=None):
        B, W = seqs.shape
        k = _counts(lengths, self.n, self.ratio)  # [B]
        kmax = int(k.max()) if B else 0
        if kmax == 0:
            return seqs, lengths
        active = torch.arange(kmax, device=seqs.device)[None, :] < k[:, None]  # [B, K]
        gaps = _randint((lengths + 1)[:, None].expand(B, kmax), generator)  # [B, K] in 0..len
        # anchor = the item just before the gap (the first item for gap 0)
        anchor_col = (W - lengths)[:, None] + (gaps - 1).clamp(min=0)
        anchor = seqs.gather(1, anchor_col.clamp(max=W - 1))
        new_items = self.sampler(anchor.reshape(-1), generator).reshape(B, kmax)
        new_items = torch.where(active & (lengths > 0)[:, None], new_items, torch.zeros_like(new_items))
        idx = real_index(lengths, W).double()  # [B, W]
        old_keys = torch.where(idx >= 0, idx, torch.full_like(idx, -1e9))
        jitter = _rand((B, kmax), generator, seqs.device).double() * 0.5
        new_keys = torch.where(new_items > 0, gaps.double() - 0.75 + jitter, torch.full_like(jitter, -1e9))
        keys = torch.cat([old_keys, new_keys], 1)  # [B, W + K]
        values = torch.cat([seqs, new_items], 1)
        order = keys.argsort(dim=1, stable=True)
        return values.gather(1, order), lengths + (new_items > 0).sum(1)


class Delete(Augmentation):
    """Delete ``n`` uniformly chosen items; rows that would keep fewer than one item are unchanged."""

    name = "delete"

    def __init__(self, n: int = 1, ratio: float = 0.0):
        self.n, self.ratio = n, ratio

    def __call__(self, seqs, lengths, generator=None):
        k = _counts(lengths, self.n, self.ratio)
        k = torch.where(lengths - k >= 1, k, torch.zeros_like(k))
        chosen = _choose(lengths, seqs.shape[1], k, generator)
        return pack(seqs, real_mask(lengths, seqs.shape[1]) & ~chosen)


class Replace(Augmentation):
    """Replace ``n`` uniformly chosen items by sampled ones (CoSeRec's "substitute")."""

    name = "replace"

    def __init__(self, num_items: int, n: int = 1, ratio: float = 0.0, sampler: ItemSampler | None = None):
        self.num_items, self.n, self.ratio = num_items, n, ratio
        self.sampler = sampler or uniform_items(num_items)

    def __call__(self, seqs, lengths, generator=None):
        chosen = _choose(lengths, seqs.shape[1], _counts(lengths, self.n, self.ratio), generator)
        out = seqs.clone()
        out[chosen] = self.sampler(seqs[chosen], generator)
        return out, lengths


class Mask(Augmentation):
    """Overwrite ``n`` uniformly chosen items with ``value`` (0 = DA4Rec/CL4SRec: attention ignores it)."""

    name = "mask"

    def __init__(self, n: int = 1, ratio: float = 0.0, value: int = 0):
        self.n, self.ratio, self.value = n, ratio, value

    def __call__(self, seqs, lengths, generator=None):
        chosen = _choose(lengths, seqs.shape[1], _counts(lengths, self.n, self.ratio), generator)
        return seqs.masked_fill(chosen, self.value), lengths


class Crop(Augmentation):
    """Keep one contiguous window of ``max(n, floor(ratio * len))`` items at a uniform start."""

    name = "crop"

    def __init__(self, n: int = 2, ratio: float = 0.0):
        self.n, self.ratio = n, ratio

    def __call__(self, seqs, lengths, generator=None):
        W = seqs.shape[1]
        m = torch.minimum(_counts(lengths, self.n, self.ratio).clamp(min=1), lengths)
        start = _randint((lengths - m + 1).clamp(min=1), generator)  # [B]
        idx = real_index(lengths, W)
        keep = (idx >= start[:, None]) & (idx < (start + m)[:, None])
        return pack(seqs, keep)


class Reorder(Augmentation):
    """Shuffle one contiguous window of ``max(n, floor(ratio * len))`` items at a uniform start."""

    name = "reorder"

    def __init__(self, n: int = 2, ratio: float = 0.0):
        self.n, self.ratio = n, ratio

    def __call__(self, seqs, lengths, generator=None):
        B, W = seqs.shape
        m = torch.minimum(_counts(lengths, self.n, self.ratio), lengths)
        start = _randint((lengths - m + 1).clamp(min=1), generator)
        idx = real_index(lengths, W)
        inside = (idx >= start[:, None]) & (idx < (start + m)[:, None])  # [B, W]
        cols = torch.arange(W, device=seqs.device).double()[None, :].expand(B, W)
        # inside keys are random within the window's column span, so only the window is permuted
        lo = (W - lengths + start).double()[:, None]
        rand_keys = lo - 0.5 + _rand((B, W), generator, seqs.device).double() * m.double()[:, None]
        keys = torch.where(inside, rand_keys, cols)
        return seqs.gather(1, keys.argsort(1)), lengths


class SubsetSplit(Augmentation):
    """Keep each item independently with probability ``1 - p``; a row losing everything is unchanged."""

    name = "subset_split"

    def __init__(self, p: float = 0.25):
        self.p = p

    def __call__(self, seqs, lengths, generator=None):
        real = real_mask(lengths, seqs.shape[1])
        keep = real & (_rand(tuple(seqs.shape), generator, seqs.device) >= self.p)
        keep = torch.where(keep.any(1, keepdim=True), keep, real)
        return pack(seqs, keep)


class SlideWindow(Augmentation):
    """Every prefix window of at most ``length`` items, target included (DA4Rec/RecBole slide-window).

    Offline it is a row builder (``prefixes`` with ``length - 1`` input items); ``expand`` lists the
    windows explicitly; online (``__call__``) it keeps one random prefix window per row.
    """

    name = "slide_window"

    def __init__(self, length: int = 50):
        self.length = length

    def __call__(self, seqs, lengths, generator=None):
        end = _randint(lengths.clamp(min=1), generator) + 1  # prefix end in 1..len
        idx = real_index(lengths, seqs.shape[1])
        keep = (idx < end[:, None]) & (idx >= (end - self.length)[:, None]) & (idx >= 0)
        return pack(seqs, keep)

    def expand(self, seqs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """All prefixes of >= 2 items, cut to ``length``: ([R, length], lengths [R], source row [R])."""
        W = seqs.shape[1]
        items, offsets = to_csr(seqs, lengths)
        n = (lengths - 1).clamp(min=0).cpu().numpy()  # prefixes of length 2..len
        rows = np.repeat(np.arange(len(n)), n)
        plen = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + 2
        starts = offsets[rows]
        out = left_padded_windows(items, starts, starts + plen, min(self.length, W))
        return torch.from_numpy(out), torch.from_numpy(np.minimum(plen, self.length)), torch.from_numpy(rows)


class Compose(Augmentation):
    """Apply operators in order (e.g. subset_split then mask)."""

    name = "compose"

    def __init__(self, ops: Sequence[Augmentation]):
        self.ops = list(ops)

    def __call__(self, seqs, lengths, generator=None):
        for op in self.ops:
            seqs, lengths = op(seqs, lengths, generator)
        return seqs, lengths

    def __repr__(self) -> str:
        return f"Compose({self.ops})"


class RandomChoice(Augmentation):
    """Per row, one operator drawn uniformly (CL4SRec/CoSeRec views); all run batched, rows pick one."""

    name = "random_choice"

    def __init__(self, ops: Sequence[Augmentation]):
        self.ops = list(ops)

    def __call__(self, seqs, lengths, generator=None):
        outs = [op(seqs, lengths, generator) for op in self.ops]
        width = max(s.shape[1] for s, _ in outs)
        outs = [fit_width(s, n, width) for s, n in outs]
        pick = _randint(torch.full_like(lengths, len(self.ops)), generator)  # [B]
        stacked = torch.stack([s for s, _ in outs])  # [O, B, W']
        lens = torch.stack([n for _, n in outs])  # [O, B]
        rows = torch.arange(len(lengths), device=seqs.device)
        return stacked[pick, rows], lens[pick, rows]

    def __repr__(self) -> str:
        return f"RandomChoice({self.ops})"


OPERATORS: dict[str, type[Augmentation]] = {
    cls.name: cls for cls in (Insert, Delete, Replace, Mask, Crop, Reorder, SubsetSplit, SlideWindow)
}
ALIASES = {"substitute": "replace", "subset-split": "subset_split", "slide-window": "slide_window"}
NEEDS_ITEMS = ("insert", "replace")


def make_op(name: str, num_items: int, sampler: ItemSampler | None = None, **params) -> Augmentation:
    """One operator from its config name and parameters (DA4Rec defaults when omitted)."""
    name = ALIASES.get(name, name)
    if name not in OPERATORS:
        raise ValueError(f"unknown augmentation {name!r}; choose from {sorted(OPERATORS)}")
    if name in NEEDS_ITEMS:
        return OPERATORS[name](num_items=num_items, sampler=sampler, **params)
    return OPERATORS[name](**params)


def ops_from_config(ops: Mapping | Sequence | None, num_items: int) -> list[Augmentation]:
    """``{name: {params}}`` (Hydra-mergeable) or ``[name, ...]`` -> operator objects, in order."""
    if not ops:
        return []
    if isinstance(ops, Mapping):
        items = [(k, dict(v or {})) for k, v in ops.items()]
    else:
        items = [
            (o, {}) if isinstance(o, str) else (o["name"], {k: v for k, v in o.items() if k != "name"})
            for o in ops
        ]
    return [make_op(name, num_items, **params) for name, params in items]


# ----------------------------------------------------------------------------- CSR <-> padded
def to_padded(items: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[Tensor, Tensor]:
    """CSR slices -> left-padded [R, max len] tensor and lengths [R]."""
    width = max(int(lengths.max()) if len(lengths) else 1, 1)
    out = left_padded_windows(items, starts, starts + lengths, width)
    return torch.from_numpy(out), torch.from_numpy(lengths.astype(np.int64))


def to_csr(seqs: Tensor, lengths: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded rows -> (items [N], offsets [R + 1]) keeping masked zeros inside sequences."""
    real = real_mask(lengths, seqs.shape[1])
    items = seqs[real].cpu().numpy().astype(np.int64)  # row-major = each row's items in order
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths.cpu().numpy(), out=offsets[1:])
    return items, offsets


# ----------------------------------------------------------------------------- offline / online
def last_item_rows(items: np.ndarray, offsets: np.ndarray, ends: np.ndarray, max_len: int):
    """One row per sequence: predict its last item from the rest (DA4Rec "no slide-window")."""
    starts = offsets[: len(ends)]
    ok = ends - 1 >= 1  # at least one input item
    starts, ends = starts[ok], ends[ok]
    inputs = left_padded_windows(items, starts, starts + ends - 1, max_len)
    targets = np.zeros_like(inputs)
    targets[:, -1] = items[starts + ends - 1]
    keep = targets[:, -1] > 0  # a masked (0) last item has nothing to predict
    return inputs[keep], targets[keep]


ROW_BUILDERS = {"all_positions": all_positions_rows, "prefixes": prefix_rows, "last": last_item_rows}


def split_ops(ops: list[Augmentation]) -> tuple[SlideWindow | None, list[Augmentation]]:
    """Separates slide_window (a row builder offline) from the sequence-rewriting operators."""
    windows = [op for op in ops if isinstance(op, SlideWindow)]
    if len(windows) > 1:
        raise ValueError("slide_window given twice")
    return (windows[0] if windows else None), [op for op in ops if not isinstance(op, SlideWindow)]


def offline_pool(
    items: np.ndarray,
    offsets: np.ndarray,
    train_end: np.ndarray,
    ops: list[Augmentation],
    copies: int = 2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training parts plus ``copies`` augmented versions of each (the rewriting ops composed in order).

    Only ``items[offsets[u]:offsets[u] + train_end[u]]`` is read, so validation/test items never enter.
    Augmented sequences shorter than 2 (nothing to predict) are dropped.
    Returns (items, offsets, lengths, source user) of the pool; originals come first, in user order.
    """
    starts = offsets[:-1]
    seqs, lengths = to_padded(items, starts, train_end)
    out_seqs, out_lens, sources = [seqs], [lengths], [torch.arange(len(lengths))]
    _, rewrite = split_ops(ops)
    if rewrite:
        aug = Compose(rewrite)
        g = torch.Generator().manual_seed(int(seed) * 7919 + 17)
        for _ in range(copies):
            s, n = aug(seqs, lengths, g)
            ok = n >= 2
            out_seqs.append(s[ok])
            out_lens.append(n[ok])
            sources.append(torch.arange(len(lengths))[ok])
    width = max(s.shape[1] for s in out_seqs)
    padded = torch.cat([fit_width(s, n, width)[0] for s, n in zip(out_seqs, out_lens, strict=True)])
    lens = torch.cat(out_lens)
    pool_items, pool_offsets = to_csr(padded, lens)
    return pool_items, pool_offsets, lens.numpy(), torch.cat(sources).numpy()


def offline_rows(
    items: np.ndarray,
    offsets: np.ndarray,
    train_end: np.ndarray,
    protocol: str,
    max_len: int,
    ops: list[Augmentation],
    copies: int = 2,
    seed: int = 0,
    stride: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Training (inputs, targets) after offline augmentation; slide_window switches to every prefix.

    ``stride``: overlapping all_positions windows (see ``all_positions_rows``).
    """
    pool_items, pool_offsets, lens, _ = offline_pool(items, offsets, train_end, ops, copies, seed)
    window, _ = split_ops(ops)
    if window is None:
        extra = {"stride": stride} if stride is not None else {}
        return ROW_BUILDERS[protocol](pool_items, pool_offsets, lens, max_len, **extra)
    width = min(window.length - 1, max_len)  # DA4Rec's window length counts the target too
    inputs, targets = prefix_rows(pool_items, pool_offsets, lens, width)
    pad = max_len - width
    return np.pad(inputs, ((0, 0), (pad, 0))), np.pad(targets, ((0, 0), (pad, 0)))


class OnlineAugment:
    """Per-batch transform of training rows, seeded by (seed, epoch, batch index).

    The row's full sequence (inputs plus the last target) is augmented and the row rebuilt for
    ``protocol``: ``all_positions`` supervises every next item, ``prefixes``/``last`` only the last.
    """

    def __init__(self, ops: list[Augmentation], protocol: str, seed: int = 0, max_len: int = 50) -> None:
        if protocol not in ROW_BUILDERS:
            raise ValueError(f"unknown protocol {protocol!r}")
        self.op = Compose(ops)
        self.protocol, self.seed, self.max_len = protocol, seed, max_len

    def __call__(self, batch: dict[str, Tensor], epoch: int, index: int) -> dict[str, Tensor]:
        inputs, targets = batch["input_ids"], batch["targets"]  # [B, L] each
        B, L = inputs.shape
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 1_000_003 + index)
        full = torch.cat([inputs, targets[:, -1:]], 1)  # [B, L + 1]: every row's last column is a target
        lengths = lengths_of(full)
        seqs, lengths = self.op(full, lengths, g)
        # batches may arrive trimmed below max_len; inserted items may widen them up to max_len
        L = max(min(seqs.shape[1] - 1, self.max_len), L)
        seqs, lengths = fit_width(seqs, lengths, L + 1)
        new_inputs = seqs[:, :-1].clone()
        if self.protocol == "all_positions":
            new_targets = seqs[:, 1:].clone()
            in_seq = real_mask(lengths - 1, L)  # columns whose input is a real item
            new_targets[~in_seq] = 0
            new_inputs[~in_seq] = 0
        else:
            new_targets = torch.zeros_like(new_inputs)
            new_targets[:, -1] = seqs[:, -1]
            new_inputs[~real_mask(lengths - 1, L)] = 0
        return {**batch, "input_ids": new_inputs, "targets": new_targets}


def parse_augment(cfg: Mapping | None) -> dict:
    """Normalises the ``augment`` config: ``{mode: none|offline|online, ops: {...}, copies: int}``."""
    cfg = dict(cfg or {})
    mode = cfg.get("mode") or "none"
    if mode not in ("none", "offline", "online"):
        raise ValueError(f"augment.mode must be none, offline or online, got {mode!r}")
    ops = cfg.get("ops") or {}
    if mode != "none" and not ops:
        raise ValueError(f"augment.mode={mode} needs at least one operator in augment.ops")
    return {"mode": mode, "ops": ops, "copies": int(cfg.get("copies", 2))}

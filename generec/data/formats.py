"""Readers for the interaction and side-information files generec understands.

Pure Python + numpy (no pandas) so the data layer imports fast and runs anywhere. Each reader
reads the whole file once and splits it into lines; per-row Python work is limited to a
``str.split`` per line, and the slow, line-by-line diagnostics only run once a fast check failed,
to name the exact line and field in the error.

Formats:
* ``atomic``    RecBole atomic TSV with a typed header (``user_id:token\\titem_id:token...``),
                including the sequence-style ``item_id_list:token_seq`` benchmark files.
* ``sequences`` one line per user: ``<user> <item_1> ... <item_n>`` (S3Rec / SASRec files).
* ``pairs``     ``<user> <item> [<timestamp>]`` per line (whitespace, tab or comma separated).
"""

from __future__ import annotations

import json
import logging
from itertools import chain
from pathlib import Path

import numpy as np

from generec.data.errors import DataFormatError
from generec.data.types import RawInteractions, SideTable

logger = logging.getLogger(__name__)

FORMATS = ("atomic", "sequences", "pairs")
_ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
_SEQ_EXPECTED = "'<user> <item> [<item> ...]'"
_PAIRS_NAMES = {
    2: ["user", "item"],
    3: ["user", "item", "timestamp"],
    4: ["user", "item", "rating", "timestamp"],
}
_HEADER_WORDS = {"user", "user_id", "userid", "uid", "u", "user:token", "user_id:token"}


# ----------------------------------------------------------------------------- low-level helpers


def _read_text(path: Path) -> str:
    """Whole file as text, with a line-numbered error for bad encodings."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataFormatError(path, line, None, f"UTF-8 text (invalid byte {data[e.start]:#x})") from None
    if text.startswith("\ufeff"):  # BOM from spreadsheet exports
        text = text[1:]
    return text.replace("\r\n", "\n") if "\r" in text else text


def _nonblank_lines(path: Path) -> tuple[list[str], np.ndarray]:
    """Non-blank lines and their 1-based line numbers; blank lines are counted and logged."""
    lines = _read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # final newline
    keep = [i for i, line in enumerate(lines) if line.strip()]
    n_blank = len(lines) - len(keep)
    if not keep:
        raise DataFormatError(path, None, None, "at least one non-blank line (the file is empty)")
    if n_blank:
        logger.warning("%s: skipped %d blank line(s)", path, n_blank)
        lines = [lines[i] for i in keep]
    linenos = np.asarray(keep, dtype=np.int64) + 1  # [L]
    return lines, linenos


def _split_rows(lines: list[str], sep: str | None) -> tuple[list[list[str]], np.ndarray]:
    rows = [line.split(sep) for line in lines]
    lens = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))  # [L]
    return rows, lens


def _check_columns(
    path: Path, lines: list[str], lens: np.ndarray, linenos: np.ndarray, names: list[str], sep_name: str
) -> None:
    """Every row must have exactly ``len(names)`` columns; names the first missing/extra one."""
    bad = np.flatnonzero(lens != len(names))
    if not len(bad):
        return
    i = int(bad[0])
    n = int(lens[i])
    field = names[n] if n < len(names) else f"column {len(names) + 1} (extra)"
    expected = f"{len(names)} {sep_name}-separated columns ({', '.join(names)}), found {n}"
    raise DataFormatError(path, int(linenos[i]), field, expected, got=lines[i])


def _ids(path: Path, col: tuple[str, ...] | list[str], linenos: np.ndarray, field: str) -> np.ndarray:
    """Id tokens as an object array; empty tokens are an error naming the line."""
    arr = np.array(col, dtype=object)  # [n]
    stripped = np.char.strip(arr.astype(str))
    empty = np.flatnonzero(stripped == "")
    if len(empty):
        raise DataFormatError(path, int(linenos[empty[0]]), field, "a non-empty id", got=str(arr[empty[0]]))
    return arr


def _floats(path: Path, col: tuple[str, ...] | list[str], linenos: np.ndarray, field: str) -> np.ndarray:
    """Column parsed as float64; non-numeric or non-finite values name their line."""
    try:
        out = np.array(col, dtype=np.float64)  # [n]
    except ValueError:
        out = None
    if out is not None:
        bad = np.flatnonzero(~np.isfinite(out))
        if not len(bad):
            return out
        i = int(bad[0])
        raise DataFormatError(path, int(linenos[i]), field, "a finite number", got=col[i])
    for i, v in enumerate(col):
        try:
            float(v)
        except ValueError:
            raise DataFormatError(path, int(linenos[i]), field, "a number", got=v) from None
    raise AssertionError("unreachable")  # pragma: no cover


# ----------------------------------------------------------------------------- detection


def _parse_typed_header(line: str, sep: str) -> list[tuple[str, str]] | None:
    """``[(name, type)]`` when every field looks like ``name:type`` with a RecBole type, else None."""
    out = []
    for f in line.split(sep):
        name, colon, typ = f.strip().rpartition(":")
        if not colon or not name or typ not in _ATOMIC_TYPES:
            return None
        out.append((name, typ))
    return out


def detect_format(path: str | Path, sample_bytes: int = 1 << 16) -> str:
    """Guess the format from the extension and the first lines (the ``format=`` argument overrides).

    ``.inter`` or a typed header -> atomic; tab/comma separated -> pairs; whitespace separated with
    2-3 columns and repeated users -> pairs; otherwise one line per user -> sequences.
    """
    path = Path(path)
    if path.suffix == ".inter":
        return "atomic"
    if path.suffix == ".csv":
        return "pairs"
    with path.open("rb") as fh:
        head = fh.read(sample_bytes)
    lines = head.decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")
    if len(head) == sample_bytes:
        lines = lines[:-1]  # possibly cut mid-line
    lines = [line for line in lines if line.strip()][:200]
    if not lines:
        return "sequences"  # the reader raises the empty-file error with the path
    if _parse_typed_header(lines[0], "\t") is not None:
        return "atomic"
    if "\t" in lines[0] or "," in lines[0]:
        return "pairs"
    toks = [line.split() for line in lines]
    if toks[0] and toks[0][0].lower() in _HEADER_WORDS:
        return "pairs"
    counts = {len(t) for t in toks}
    if counts <= {2, 3} and len(counts) == 1 and len({t[0] for t in toks}) < len(toks):
        return "pairs"
    return "sequences"


# ----------------------------------------------------------------------------- interactions


def read_interactions(path: str | Path, format: str | None = None, sep: str | None = None) -> RawInteractions:
    """Read an interaction file into :class:`RawInteractions` (original id tokens, no filtering)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"interaction file not found: {path}")
    fmt = format or detect_format(path)
    if fmt == "atomic":
        raw = _read_atomic(path, sep or "\t")
    elif fmt == "sequences":
        raw = _read_sequences(path, sep)
    elif fmt == "pairs":
        raw = _read_pairs(path, sep)
    else:
        raise ValueError(f"unknown interaction format {fmt!r}; expected one of {FORMATS}")
    logger.info(
        "read %d interactions from %s (format=%s, timestamps=%s)",
        len(raw.users),
        path,
        fmt,
        "yes" if raw.timestamps is not None else "file order",
    )
    return raw


def _read_atomic(path: Path, sep: str) -> RawInteractions:
    lines, linenos = _nonblank_lines(path)
    header = _parse_typed_header(lines[0], sep)
    if header is None:
        bad = next(
            (f for f in lines[0].split(sep) if f.strip().rpartition(":")[2] not in _ATOMIC_TYPES), lines[0]
        )
        raise DataFormatError(
            path,
            int(linenos[0]),
            "header",
            f"a typed RecBole header 'name:type' with type in {_ATOMIC_TYPES}",
            got=bad,
        )
    names = [n for n, _ in header]
    full = [f"{n}:{t}" for n, t in header]
    if "user_id" not in names:
        raise DataFormatError(path, None, "user_id", "a header field 'user_id:<type>'", got=lines[0])
    if "item_id" not in names and "item_id_list" not in names:
        raise DataFormatError(path, None, "item_id", "a header field 'item_id:<type>'", got=lines[0])
    body, body_ln = lines[1:], linenos[1:]
    if not body:
        raise DataFormatError(path, None, None, "at least one data row after the header")
    rows, lens = _split_rows(body, sep)
    _check_columns(path, body, lens, body_ln, full, "tab" if sep == "\t" else repr(sep))
    cols = dict(zip(names, zip(*rows, strict=True), strict=True))
    users = _ids(path, cols["user_id"], body_ln, full[names.index("user_id")])
    if "item_id_list" in names:
        return _expand_item_lists(path, cols, names, full, users, body_ln)
    items = _ids(path, cols["item_id"], body_ln, full[names.index("item_id")])
    ts = (
        _floats(path, cols["timestamp"], body_ln, full[names.index("timestamp")])
        if "timestamp" in cols
        else None
    )
    ratings = (
        _floats(path, cols["rating"], body_ln, full[names.index("rating")]) if "rating" in cols else None
    )
    return RawInteractions(users, items, ts, body_ln.copy(), str(path), ratings)


def _expand_item_lists(
    path: Path, cols: dict, names: list[str], full: list[str], users: np.ndarray, linenos: np.ndarray
) -> RawInteractions:
    """RecBole benchmark rows (history list [+ target]) -> one interaction per item, in order.

    Timestamps are the position in the row, so the history order is kept by the sort downstream.
    """
    hist = [h.split() for h in cols["item_id_list"]]
    if "item_id" in cols:
        targets = _ids(path, cols["item_id"], linenos, full[names.index("item_id")])
        seqs = [h + [t] for h, t in zip(hist, targets, strict=True)]
    else:
        seqs = hist
    lens = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))  # [R]
    if (lens == 0).any():
        i = int(np.flatnonzero(lens == 0)[0])
        raise DataFormatError(
            path, int(linenos[i]), full[names.index("item_id_list")], "at least one item", got=""
        )
    items = np.array(list(chain.from_iterable(seqs)), dtype=object)  # [N]
    starts = np.repeat(np.cumsum(lens) - lens, lens)  # [N]
    pos = (np.arange(len(items)) - starts).astype(np.float64)  # [N] position within its row
    return RawInteractions(np.repeat(users, lens), items, pos, np.repeat(linenos, lens), str(path), None)


def _read_sequences(path: Path, sep: str | None) -> RawInteractions:
    lines, linenos = _nonblank_lines(path)
    rows, lens = _split_rows(lines, sep)
    short = np.flatnonzero(lens < 2)
    if len(short):
        if len(short) == len(rows):
            raise DataFormatError(
                path,
                None,
                "items",
                f"{_SEQ_EXPECTED} on each line, but every line has a single token: the file looks like "
                "one token per line (a list of ids?), not one sequence per user",
            )
        i = int(short[0])
        raise DataFormatError(
            path, int(linenos[i]), "items", f"{_SEQ_EXPECTED} (a user with no items)", got=lines[i]
        )
    flat = np.array(list(chain.from_iterable(rows)), dtype=object)  # [N + L]
    starts = np.cumsum(lens) - lens  # [L] position of each line's user token
    is_item = np.ones(len(flat), dtype=bool)
    is_item[starts] = False
    n_items = lens - 1  # [L]
    flat_lines = np.repeat(linenos, lens)  # [N + L]
    if sep is not None:  # explicit separators can produce empty tokens ("1,,2")
        _ids(path, flat, flat_lines, "user/item")
    users = np.repeat(flat[starts], n_items)  # [N]
    return RawInteractions(users, flat[is_item], None, flat_lines[is_item], str(path), None)


def _read_pairs(path: Path, sep: str | None) -> RawInteractions:
    lines, linenos = _nonblank_lines(path)
    if sep is None:
        sep = "," if "," in lines[0] else "\t" if "\t" in lines[0] else None
    first = lines[0].split(sep)
    if first and first[0].strip().lower() in _HEADER_WORDS:  # optional header row
        lines, linenos = lines[1:], linenos[1:]
        if not lines:
            raise DataFormatError(path, None, None, "at least one data row after the header")
    rows, lens = _split_rows(lines, sep)
    ncol = int(lens[0])
    if ncol not in _PAIRS_NAMES:
        raise DataFormatError(path, int(linenos[0]), "columns", "'<user> <item> [<timestamp>]'", got=lines[0])
    names = _PAIRS_NAMES[ncol]
    sep_name = {None: "whitespace", "\t": "tab", ",": "comma"}.get(sep, repr(sep))
    _check_columns(path, lines, lens, linenos, names, sep_name)
    cols = dict(zip(names, zip(*rows, strict=True), strict=True))
    users = _ids(path, [u.strip() for u in cols["user"]], linenos, "user")
    items = _ids(path, [i.strip() for i in cols["item"]], linenos, "item")
    ts = _floats(path, cols["timestamp"], linenos, "timestamp") if "timestamp" in cols else None
    ratings = _floats(path, cols["rating"], linenos, "rating") if "rating" in cols else None
    return RawInteractions(users, items, ts, linenos.copy(), str(path), ratings)


# ----------------------------------------------------------------------------- side tables


def _read_table(path: str | Path, key: str, sep: str = "\t") -> SideTable:
    """Header + rows TSV keyed by ``key`` (RecBole ``.item``/``.user`` or plain ``*_items.tsv``)."""
    path = Path(path)
    lines, linenos = _nonblank_lines(path)
    names = [
        f.strip().rpartition(":")[0] if _parse_typed_header(f, sep) else f.strip()
        for f in lines[0].split(sep)
    ]
    k = names.index(key) if key in names else 0
    rows, lens = _split_rows(lines[1:], sep)
    body_ln = linenos[1:]
    too_many = np.flatnonzero(lens > len(names))
    if len(too_many):
        i = int(too_many[0])
        raise DataFormatError(
            path,
            int(body_ln[i]),
            f"column {len(names) + 1} (extra)",
            f"at most {len(names)} columns ({', '.join(names)})",
            got=lines[1 + i],
        )
    if (lens < len(names)).any():  # trailing empty fields may be stripped by editors: pad them
        rows = [r + [""] * (len(names) - len(r)) for r in rows]
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    keys = _ids(path, [s.strip() for s in cols[k]], body_ln, names[k]).tolist()
    table = SideTable(source=str(path))
    for j, name in enumerate(names):
        if j != k:
            table.columns[name] = dict(zip(keys, cols[j], strict=True))
    if "title" not in table.columns:
        for alias in ("movie_title", "name", "product_title"):
            if alias in table.columns:
                table.columns["title"] = table.columns[alias]
                break
    logger.info("read %d rows x %d columns of side info from %s", len(keys), len(table.columns), path)
    return table


def read_item_table(path: str | Path) -> SideTable:
    """Item side info keyed by original item token; ``movie_title`` is also exposed as ``title``."""
    return _read_table(path, "item_id")


def read_user_table(path: str | Path) -> SideTable:
    """User side info keyed by original user token."""
    return _read_table(path, "user_id")


def read_item_attributes_json(path: str | Path) -> SideTable:
    """S3Rec ``*_item2attributes.json`` -> column ``attributes`` (space-joined attribute ids)."""
    path = Path(path)
    try:
        obj = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, None, f"valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise DataFormatError(
            path, None, None, "a JSON object {item_id: [attr_id, ...]}", got=type(obj).__name__
        )
    attrs = {}
    for k, v in obj.items():
        if not isinstance(v, list):
            raise DataFormatError(path, None, f"item {k}", "a list of attribute ids", got=type(v).__name__)
        attrs[str(k)] = " ".join(map(str, v))
    return SideTable(columns={"attributes": attrs}, source=str(path))

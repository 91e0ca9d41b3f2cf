"""Dataset registry: where each known dataset's files live, how to fetch them, how to check them.

Resolution order (first hit wins) is explicit ``path`` -> ``$GENEREC_DATA_DIR/<folder>`` -> cache dir
(``$GENEREC_CACHE_DIR`` or ``./data``) -> download into the cache. Downloads are resumable,
sha256-verified and land atomically, so an interrupted run never leaves a truncated file that a
later run would silently trust.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from generec.data.errors import ChecksumError, DatasetNotFoundError, DownloadError
from generec.data.formats import detect_format

logger = logging.getLogger(__name__)

ENV_DATA_DIR = "GENEREC_DATA_DIR"
ENV_CACHE_DIR = "GENEREC_CACHE_DIR"
ENV_MIRROR = "GENEREC_DATA_MIRROR"

_S3REC = (
    "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/2a81540ae18615d88ef88227b0c066e5b74781e5/data"
)
_RECBOLE = (
    "https://raw.githubusercontent.com/RUCAIBox/RecBole/7b02be5ec80a88310f2d04a27a82adfcbb5dc211/dataset"
)
_LLMRANK = "https://raw.githubusercontent.com/RUCAIBox/LLMRank/5ec1154cb74cbf68ed5721212f1d7e79336c39c7/llmrank/dataset"


@dataclass
class DatasetSpec:
    """One registered dataset. Paths are relative to the dataset's folder.

    ``urls`` maps a relative path to its upstream URL; a path ending in ``.zip`` is an archive whose
    members (matched by file name) provide the other files. ``sha256`` values of None mean the
    source cannot be pinned offline: downloads then warn that they are unverified. Files in
    ``item_file``/``user_file``/``attributes_file`` are optional: used when present, never required.
    """

    name: str
    interactions: str
    format: str
    urls: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str | None] = field(default_factory=dict)
    item_file: str | None = None
    user_file: str | None = None
    defaults: dict = field(default_factory=dict)
    description: str = ""
    folder: str = ""
    attributes_file: str | None = None

    def __post_init__(self) -> None:
        if not self.folder:
            self.folder = self.name

    @property
    def side_files(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (
                ("item", self.item_file),
                ("user", self.user_file),
                ("attributes", self.attributes_file),
            )
            if v
        }


@dataclass
class ResolvedDataset:
    """Concrete local files for one dataset, ready for the readers."""

    name: str
    interactions: Path
    item_file: Path | None
    user_file: Path | None
    format: str
    attributes_file: Path | None = None
    spec: DatasetSpec | None = None

    @property
    def files(self) -> list[Path]:
        return [p for p in (self.interactions, self.item_file, self.user_file, self.attributes_file) if p]


_RAW_DEFAULTS = {"min_user_inter": 0, "min_item_inter": 0, "dedup": "all"}
# No k-core by default: the counts match RecBole and the papers that use the raw ml-100k.
_ML_DEFAULTS = {"min_user_inter": 0, "min_item_inter": 0, "dedup": "first"}


def _s3rec(
    name: str, folder: str, stem: str, sha_txt: str, sha_json: str, sha_tsv: str | None
) -> DatasetSpec:
    """S3-Rec set: sequences + attribute JSON upstream; ``<stem>_items.tsv`` is derived (local only)."""
    txt, attrs, tsv = f"{stem}.txt", f"{stem}_item2attributes.json", f"{stem}_items.tsv"
    sha = {txt: sha_txt, attrs: sha_json}
    if sha_tsv:
        sha[tsv] = sha_tsv
    return DatasetSpec(
        name=name,
        interactions=txt,
        format="sequences",
        urls={txt: f"{_S3REC}/{txt}", attrs: f"{_S3REC}/{attrs}"},
        sha256=sha,
        item_file=tsv if sha_tsv else None,
        defaults=dict(_RAW_DEFAULTS),  # already 5-core; kept as published (S3-Rec counts)
        description=f"S3-Rec {stem} (one line per user, chronological, ids 1-based)",
        folder=folder,
        attributes_file=attrs,
    )


REGISTRY: dict[str, DatasetSpec] = {
    "ml-100k": DatasetSpec(
        name="ml-100k",
        interactions="ml-100k.inter",
        format="atomic",
        urls={f"ml-100k.{ext}": f"{_RECBOLE}/ml-100k/ml-100k.{ext}" for ext in ("inter", "item", "user")},
        sha256={
            "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
            "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
            "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
        },
        item_file="ml-100k.item",
        user_file="ml-100k.user",
        defaults=dict(_ML_DEFAULTS),
        description="MovieLens-100K, RecBole atomic files (explicit ratings, many timestamp ties)",
    ),
    "ml-1m": DatasetSpec(
        name="ml-1m",
        interactions="ml-1m.inter",
        format="atomic",
        urls={
            "ml-1m.zip": "https://recbole.s3-accelerate.amazonaws.com/ProcessedDatasets/MovieLens/ml-1m.zip"
        },
        sha256={"ml-1m.zip": None},  # not verifiable offline: download warns it is unverified
        item_file="ml-1m.item",
        user_file="ml-1m.user",
        defaults=dict(_ML_DEFAULTS),
        description="MovieLens-1M, RecBole atomic files (zip from RecBole's dataset mirror)",
    ),
    # sha256 of (<stem>.txt, <stem>_item2attributes.json, <stem>_items.tsv or None)
    "beauty": _s3rec(
        "beauty",
        "beauty",
        "Beauty",
        "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
        "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4",
        "9262b787f81973a815c727a5f49b8f8c3d5dcac28128e9b1cd5ef9fd4fd1e89e",
    ),  # fmt: skip
    "sports": _s3rec(
        "sports",
        "sports_and_outdoors",
        "Sports_and_Outdoors",
        "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
        "7fb10733ac4f1811384a52144cdefa7fcc7536fa80a7232c5da9bd789155c34b",
        "fec101e74a154df999546bc0b429955cc9674a40c5476a234f0c8da8b3f2ec9a",
    ),  # fmt: skip
    "toys": _s3rec(
        "toys",
        "toys_and_games",
        "Toys_and_Games",
        "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
        "d371acd25101eedac04afc727626464b7acec770c4eda708705d51eb76eb1ad0",
        "798047ccf16a564f267876f08f50989b23e8c897053844d49c68f5f4c50e8f93",
    ),  # fmt: skip
    "yelp": _s3rec(
        "yelp",
        "yelp",
        "Yelp",
        "724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed",
        "f25acd5e1e680e0b22fd4e3f4fb6be4b2a7461e9222610616e3e1ee6702dd58d",
        "48d676be1528e88c3120197c77e8c4885d72c8f8b0356403fd298146eec24b5d",
    ),  # fmt: skip
    "lastfm": _s3rec(
        "lastfm",
        "lastfm",
        "LastFM",
        "9ded486adb5b0fe9dc761950afa0a9a05e93ff018992e0c52bf11afec529f802",
        "a4ccd678dc9ff6d43fe5073f491db5c9b02eb98dfa4f8c0382913a784be217ef",
        None,  # no item table for LastFM
    ),  # fmt: skip
    "games": DatasetSpec(
        name="games",
        interactions="Games.txt",  # derived from Games-6k.test.inter (see "games-6k"), no upstream URL
        format="sequences",
        urls={"Games.item": f"{_LLMRANK}/Games/Games.item"},
        sha256={
            "Games.txt": "b0e9bc680243864a887e9329a857c37abab8d283426667af5a8ce165b75fbe04",
            "Games.item": "be9cea58a8de4f940a20b0ad6b58bad46b22fd6f9dbc82d1a1902e1c62e96ade",
        },
        item_file="Games.item",
        defaults=dict(_RAW_DEFAULTS),
        description=(
            "Amazon Video Games 2018 (LLMRank), last <=50 per user, 0-based ids (remapped), titles; "
            "Games.txt is derived: without a local copy use 'games-6k' (downloadable)"
        ),
        folder="amazon_games_llmrank",
    ),
    "games-6k": DatasetSpec(
        name="games-6k",
        interactions="Games-6k.test.inter",  # same sequences as "games", in RecBole's benchmark format
        format="atomic",
        urls={
            "Games-6k.test.inter": f"{_LLMRANK}/Games-6k/Games-6k.test.inter",
            "Games.item": f"{_LLMRANK}/Games/Games.item",
        },
        sha256={
            "Games-6k.test.inter": "b241e4c8a52d2d41530fd073296e8bced4b61753e86ed6c51467c657704bab19",
            "Games.item": "be9cea58a8de4f940a20b0ad6b58bad46b22fd6f9dbc82d1a1902e1c62e96ade",
        },
        item_file="Games.item",
        defaults=dict(_RAW_DEFAULTS),
        description="Same as 'games' but read from the upstream LLMRank file (downloadable)",
        folder="amazon_games_llmrank",
    ),
    # Multi-interest (ComiRec / REMI) benchmarks. Not in the offline data; ComiRec keeps users and items with
    # >= 5 interactions. Only Books has a directly downloadable file the readers parse; the others need a
    # one-off conversion of the upstream file to RecBole atomic format (user_id, item_id, timestamp).
    "books": DatasetSpec(
        name="books",
        interactions="ratings_Books.csv",  # user,item,rating,timestamp (no header) -> pairs reader
        format="pairs",
        urls={
            "ratings_Books.csv": "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/ratings_Books.csv"
        },
        sha256={"ratings_Books.csv": None},  # not verifiable offline: download warns it is unverified
        defaults={"min_user_inter": 5, "min_item_inter": 5, "dedup": "first"},
        description="Amazon Books 2014 ratings (McAuley et al.), the ComiRec/REMI 'Book' set (about 0.9 GB)",
    ),
    "gowalla": DatasetSpec(
        name="gowalla",
        interactions="gowalla.inter",
        format="atomic",
        defaults={"min_user_inter": 5, "min_item_inter": 5, "dedup": "first"},
        description=(
            "Gowalla check-ins: download https://snap.stanford.edu/data/loc-gowalla_totalCheckins.txt.gz "
            "(user, time, lat, lon, location) and write gowalla.inter (user_id, item_id=location, timestamp)"
        ),
    ),
    "retailrocket": DatasetSpec(
        name="retailrocket",
        interactions="retailrocket.inter",
        format="atomic",
        defaults={"min_user_inter": 5, "min_item_inter": 5, "dedup": "first"},
        description=(
            "RetailRocket events (Kaggle, login needed): https://www.kaggle.com/datasets/retailrocket/"
            "ecommerce-dataset ; write retailrocket.inter (user_id=visitorid, item_id=itemid, timestamp)"
        ),
    ),
    "taobao": DatasetSpec(
        name="taobao",
        interactions="taobao.inter",
        format="atomic",
        defaults={"min_user_inter": 5, "min_item_inter": 5, "dedup": "first"},
        description=(
            "Taobao UserBehavior (Tianchi, login needed): https://tianchi.aliyun.com/dataset/649 ; write "
            "taobao.inter (user_id, item_id, timestamp; category in a taobao.item file for diversity)"
        ),
    ),
}


def get_spec(name: str) -> DatasetSpec:
    """Registry lookup with a helpful error (names are case-insensitive)."""
    spec = REGISTRY.get(name) or REGISTRY.get(name.lower())
    if spec is None:
        raise KeyError(
            f"unknown dataset {name!r}; registered: {', '.join(sorted(REGISTRY))}. "
            "For your own files pass data.path=/path/to/file_or_folder."
        )
    return spec


def default_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir`` or ``$GENEREC_CACHE_DIR`` or ``./data`` (git-ignored in the repo)."""
    return Path(cache_dir or os.environ.get(ENV_CACHE_DIR) or Path.cwd() / "data").expanduser()


# ----------------------------------------------------------------------------- hashing


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint_files(paths: Iterable[str | os.PathLike[str] | None], extra: dict) -> str:
    """Cache key: sha256 over each file's name and bytes plus the JSON of the preprocessing config.

    Content (not mtime) so that touching or re-copying a file keeps the cache valid, and editing it
    invalidates it; the files are a few MB, hashing costs milliseconds.
    """
    h = hashlib.sha256()
    for p in paths:
        if p is None:
            h.update(b"<none>\0")
            continue
        p = Path(p)
        h.update(p.name.encode() + b"\0")
        h.update(sha256_file(p).encode() + b"\0")
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- download


def download_file(
    url: str, dest: str | os.PathLike[str], sha256: str | None = None, timeout: float = 30.0
) -> Path:
    """Fetch ``url`` to ``dest`` atomically, resuming a previous ``.part`` and checking ``sha256``.

    Raises :class:`DownloadError` on network failure (the ``.part`` is kept for a later resume) and
    :class:`ChecksumError` on a hash mismatch (the ``.part`` is deleted).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "generec-data"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing past our .part: it is complete, or garbage
            if sha256 and sha256_file(part) == sha256.lower():
                os.replace(part, dest)
                return dest
            part.unlink()
            return download_file(url, dest, sha256, timeout)
        raise DownloadError(url, f"HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(url, str(getattr(e, "reason", e))) from e

    h = hashlib.sha256()
    with resp:
        resumed = have > 0 and resp.status == 206 and _content_range_start(resp) == have
        if have and not resumed:
            logger.info(
                "%s: server did not resume from byte %d (HTTP %s); restarting", url, have, resp.status
            )
        if resumed:
            logger.info("%s: resuming at byte %d", url, have)
            with open(part, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
        try:
            with open(part, "ab" if resumed else "wb") as out:
                while block := resp.read(1 << 16):
                    out.write(block)
                    h.update(block)
        except OSError as e:
            raise DownloadError(url, f"interrupted ({e}); the partial file {part} will be resumed") from e

    digest = h.hexdigest()
    if sha256:
        if digest != sha256.lower():
            part.unlink(missing_ok=True)
            raise ChecksumError(url, sha256.lower(), digest)
    else:
        logger.warning("%s: no sha256 registered; downloaded file is UNVERIFIED (sha256=%s)", url, digest)
    os.replace(part, dest)
    logger.info("downloaded %s -> %s", url, dest)
    return dest


def _content_range_start(resp) -> int | None:
    """Start byte of a 206 answer (``Content-Range: bytes N-M/T``), None if absent or malformed."""
    value = resp.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _extract_members(archive: Path, dest_dir: Path, wanted: Iterable[str]) -> None:
    """Extract the files named in ``wanted`` (matched by base name, so no path traversal) atomically."""
    wanted = {Path(w).name for w in wanted}
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            base = Path(info.filename).name
            if info.is_dir() or base not in wanted:
                continue
            tmp = dest_dir / (base + ".part")
            with zf.open(info) as src, open(tmp, "wb") as out:
                while block := src.read(1 << 20):
                    out.write(block)
            os.replace(tmp, dest_dir / base)


def _file_url(spec: DatasetSpec, rel: str, base_url: str | None) -> str | None:
    """Mirror URL when a mirror is set (it may also carry derived files), else the upstream URL."""
    if base_url:
        return f"{base_url.rstrip('/')}/{spec.folder}/{rel}"
    return spec.urls.get(rel)


def _fetch(spec: DatasetSpec, rel: str, folder: Path, base_url: str | None) -> Path:
    """Download one spec file (or the archive holding it) into ``folder``; returns the local file."""
    archive = next((a for a in spec.urls if a.endswith(".zip")), None)
    if rel not in spec.urls and archive is not None:
        url = _file_url(spec, archive, base_url)
        zpath = download_file(url, folder / archive, spec.sha256.get(archive))
        _extract_members(zpath, folder, [spec.interactions, *spec.side_files.values()])
        if not (folder / rel).is_file():
            raise DownloadError(url, f"archive has no member named {Path(rel).name!r}")
        return folder / rel
    url = _file_url(spec, rel, base_url)
    if url is None:
        raise DownloadError(
            f"<{spec.name}:{rel}>", f"no upstream URL for this file (derived locally). {spec.description}"
        )
    return download_file(url, folder / rel, spec.sha256.get(rel))


# ----------------------------------------------------------------------------- resolution


def _side_files(spec: DatasetSpec, folder: Path, fetch: bool, base_url: str | None) -> dict[str, Path | None]:
    out: dict[str, Path | None] = {}
    for kind, rel in spec.side_files.items():
        p = folder / rel
        if (
            not p.is_file()
            and fetch
            and (base_url or rel in spec.urls or any(u.endswith(".zip") for u in spec.urls))
        ):
            try:
                p = _fetch(spec, rel, folder, base_url)
            except (DownloadError, ChecksumError) as e:
                logger.warning("optional %s file for %s unavailable: %s", kind, spec.name, e)
        out[kind] = p if p.is_file() else None
    return out


def _resolved(spec: DatasetSpec, name: str, inter: Path, side: dict[str, Path | None]) -> ResolvedDataset:
    fmt = spec.format if inter.name == Path(spec.interactions).name else detect_format(inter)
    return ResolvedDataset(
        name=name,
        interactions=inter,
        item_file=side.get("item"),
        user_file=side.get("user"),
        format=fmt,
        attributes_file=side.get("attributes"),
        spec=spec,
    )


def _spec_for_file(p: Path) -> DatasetSpec | None:
    return next((s for s in REGISTRY.values() if Path(s.interactions).name == p.name), None)


def _guess_side_files(p: Path) -> dict[str, Path | None]:
    """Side files next to an unregistered interaction file, by naming convention."""
    stem = p.stem

    def first(*names: str) -> Path | None:
        return next((p.parent / n for n in names if (p.parent / n).is_file()), None)

    return {
        "item": first(f"{stem}.item", f"{stem}_items.tsv"),
        "user": first(f"{stem}.user", f"{stem}_users.tsv"),
        "attributes": first(f"{stem}_item2attributes.json"),
    }


def _from_path(name: str | None, p: Path, spec: DatasetSpec | None) -> ResolvedDataset | None:
    if p.is_file():
        spec = spec or _spec_for_file(p)
        if spec is not None:
            return _resolved(spec, name or spec.name, p, _side_files(spec, p.parent, False, None))
        side = _guess_side_files(p)
        return ResolvedDataset(
            name or p.stem, p, side["item"], side["user"], detect_format(p), side["attributes"]
        )
    if not p.is_dir():
        return None
    spec = spec or next((s for s in REGISTRY.values() if s.folder == p.name), None)
    if spec is not None:
        for base in (p, p / spec.folder):
            if (base / spec.interactions).is_file():
                side = _side_files(spec, base, False, None)
                return _resolved(spec, name or spec.name, base / spec.interactions, side)
        return None
    cands = sorted(p.glob("*.inter")) or sorted(
        f
        for f in p.glob("*.txt")
        if not f.name.endswith("_sample.txt") and not f.name.lower().startswith("readme")
    )
    if len(cands) == 1:
        return _from_path(name, cands[0], None)
    if len(cands) > 1:
        raise ValueError(
            f"{p} holds several interaction files ({', '.join(c.name for c in cands)}); pass the file itself "
            "as data.path=..."
        )
    return None


def resolve_dataset(
    name_or_none: str | None,
    path: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    base_url: str | None = None,
) -> ResolvedDataset:
    """Find (or fetch) a dataset's files; see the module docstring for the search order.

    An explicit ``path`` that does not hold the data is an error (never silently replaced by
    another copy). A name alone walks data dir -> cache -> download.
    """
    spec = None
    if name_or_none:
        spec = REGISTRY.get(name_or_none) or REGISTRY.get(name_or_none.lower())
        if spec is None and path is None:
            get_spec(name_or_none)  # raises with the list of registered names
    if path is not None:
        p = Path(path).expanduser()
        found = _from_path(name_or_none, p, spec)
        if found is None:
            want = f" (expected {spec.interactions} in it)" if spec and p.is_dir() else ""
            raise DatasetNotFoundError(name_or_none or p.name, [f"{p} (data.path){want}"])
        logger.info("dataset %s: using %s", found.name, found.interactions)
        return found
    if spec is None:
        raise ValueError(
            "no dataset given: set data.name=<registered name> or data.path=/path/to/file_or_folder"
        )

    looked: list[str] = []
    data_dir = data_dir or os.environ.get(ENV_DATA_DIR)
    if data_dir:
        base = Path(data_dir).expanduser() / spec.folder
        looked.append(f"{base / spec.interactions} (${ENV_DATA_DIR})")
        if (base / spec.interactions).is_file():
            return _resolved(spec, spec.name, base / spec.interactions, _side_files(spec, base, False, None))
    else:
        looked.append(f"${ENV_DATA_DIR} (not set)")
    cache = default_cache_dir(cache_dir) / spec.folder
    looked.append(f"{cache / spec.interactions} (cache dir)")
    base_url = base_url or os.environ.get(ENV_MIRROR) or None
    if (cache / spec.interactions).is_file():
        return _resolved(
            spec, spec.name, cache / spec.interactions, _side_files(spec, cache, download, base_url)
        )
    if not download:
        raise DatasetNotFoundError(spec.name, looked, "downloads disabled (data.download=false)")
    archive = next((a for a in spec.urls if a.endswith(".zip")), None)
    src = _file_url(
        spec, spec.interactions if spec.interactions in spec.urls or not archive else archive, base_url
    )
    looked.append(f"download from {src}" if src else f"download: no upstream URL for {spec.interactions}")
    try:
        inter = _fetch(spec, spec.interactions, cache, base_url)
    except DownloadError as e:
        raise DatasetNotFoundError(spec.name, looked, str(e)) from e
    return _resolved(spec, spec.name, inter, _side_files(spec, cache, True, base_url))

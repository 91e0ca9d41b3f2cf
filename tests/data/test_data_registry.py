"""Registry resolution and downloads, against a real HTTP server on 127.0.0.1.

The server serves the shared data folder, so the download path (mirror URLs, sha256, resume,
atomic rename) is exercised end to end without the internet.
"""

from __future__ import annotations

import hashlib
import http.server
import logging
import os
import re
import socket
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest

from generec.data import registry
from generec.data.errors import ChecksumError, DatasetNotFoundError, DownloadError
from generec.data.registry import (
    REGISTRY,
    DatasetSpec,
    download_file,
    fingerprint_files,
    get_spec,
    resolve_dataset,
)

LASTFM_SHA = "9ded486adb5b0fe9dc761950afa0a9a05e93ff018992e0c52bf11afec529f802"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("GENEREC_CACHE_DIR", str(tmp_path / "env-cache"))
    monkeypatch.delenv("GENEREC_DATA_MIRROR", raising=False)
    monkeypatch.delenv("GENEREC_DATA_DIR", raising=False)


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler ignores Range; this one answers ``Range: bytes=N-`` with 206."""

    honour_range = True
    seen_ranges: list[str] = []

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        rng = self.headers.get("Range")
        if rng:
            type(self).seen_ranges.append(rng)
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        path = Path(self.translate_path(self.path))
        if not (m and self.honour_range and path.is_file()):
            return super().do_GET()
        data = path.read_bytes()
        start = int(m.group(1))
        if start >= len(data):
            self.send_error(416)
            return
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


def _serve(directory: Path, honour_range: bool):
    handler_cls = type("H", (RangeHandler,), {"honour_range": honour_range, "seen_ranges": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler_cls, directory=str(directory)))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, handler_cls


@pytest.fixture(scope="module")
def mirror(shared_data_dir):
    server, handler = _serve(shared_data_dir, honour_range=True)
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def no_range_mirror(shared_data_dir):
    server, handler = _serve(shared_data_dir, honour_range=False)
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def _dead_url() -> str:
    """A localhost port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- registry content


def test_registry_has_the_expected_datasets():
    for name in ("ml-100k", "ml-1m", "beauty", "sports", "toys", "yelp", "lastfm", "games"):
        spec = REGISTRY[name]
        assert spec.interactions and spec.format in ("atomic", "sequences", "pairs")
    assert REGISTRY["beauty"].sha256["Beauty.txt"] == (
        "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8"
    )
    assert REGISTRY["ml-1m"].urls["ml-1m.zip"].endswith("ml-1m.zip")
    assert "Beauty_items.tsv" not in REGISTRY["beauty"].urls  # derived: optional, no upstream URL
    with pytest.raises(KeyError, match="registered: .*beauty"):
        get_spec("netflix-prize")


def test_registry_sha256_match_the_shared_copies(shared_data_dir):
    for spec in REGISTRY.values():
        for rel, digest in spec.sha256.items():
            local = shared_data_dir / spec.folder / rel
            if digest and local.is_file():
                assert _sha(local) == digest, f"{spec.name}: {rel}"


# ----------------------------------------------------------------------------- resolution order


def test_resolve_from_data_dir(shared_data_dir, tmp_path):
    res = resolve_dataset("ml-100k", data_dir=shared_data_dir, cache_dir=tmp_path, download=False)
    assert res.interactions == shared_data_dir / "ml-100k" / "ml-100k.inter"
    assert res.item_file.name == "ml-100k.item" and res.user_file.name == "ml-100k.user"
    assert res.format == "atomic"


def test_resolve_env_data_dir_then_cache(shared_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GENEREC_DATA_DIR", str(shared_data_dir))
    assert resolve_dataset("lastfm", cache_dir=tmp_path).interactions.parent == shared_data_dir / "lastfm"
    monkeypatch.setenv("GENEREC_DATA_DIR", str(tmp_path / "empty"))
    (tmp_path / "c" / "lastfm").mkdir(parents=True)
    (tmp_path / "c" / "lastfm" / "LastFM.txt").write_text("1 2 3\n")
    res = resolve_dataset("lastfm", cache_dir=tmp_path / "c", download=False)
    assert res.interactions == tmp_path / "c" / "lastfm" / "LastFM.txt"
    assert res.attributes_file is None  # optional and absent: fine


def test_explicit_path_file_and_folder(shared_data_dir, tmp_path):
    res = resolve_dataset(None, path=shared_data_dir / "beauty" / "Beauty.txt")
    assert res.name == "beauty" and res.format == "sequences"  # recognised by file name
    assert res.item_file.name == "Beauty_items.tsv" and res.attributes_file is not None
    res = resolve_dataset(None, path=shared_data_dir / "beauty")  # a registered folder
    assert res.interactions.name == "Beauty.txt"
    res = resolve_dataset("games", path=shared_data_dir)  # the parent of all dataset folders
    assert res.interactions == shared_data_dir / "amazon_games_llmrank" / "Games.txt"
    own = tmp_path / "mine.txt"
    own.write_text("u1 i1 i2\nu2 i2 i3\n")
    (tmp_path / "mine_items.tsv").write_text("item_id\ttitle\ni1\tOne\n")
    res = resolve_dataset(None, path=own)
    assert (res.name, res.format, res.item_file) == ("mine", "sequences", tmp_path / "mine_items.tsv")
    assert resolve_dataset(None, path=tmp_path).interactions == own  # single candidate in a folder


def test_explicit_path_missing_is_an_error(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset("beauty", path=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value) and "data.path" in str(info.value)
    with pytest.raises(ValueError, match="no dataset given"):
        resolve_dataset(None)


# ----------------------------------------------------------------------------- downloads


def test_download_through_mirror_verifies_sha256(mirror, tmp_path, caplog):
    url, _ = mirror
    with caplog.at_level(logging.INFO, logger="generec.data.registry"):
        res = resolve_dataset("lastfm", data_dir=tmp_path / "empty", cache_dir=tmp_path / "c", base_url=url)
    assert res.interactions == tmp_path / "c" / "lastfm" / "LastFM.txt"
    assert _sha(res.interactions) == LASTFM_SHA
    assert res.attributes_file is not None and res.attributes_file.is_file()
    assert not list((tmp_path / "c").rglob("*.part"))
    assert "downloaded" in caplog.text
    # next time it is found in the cache, no network needed
    again = resolve_dataset("lastfm", data_dir=tmp_path / "empty", cache_dir=tmp_path / "c", download=False)
    assert again.interactions == res.interactions


def test_mirror_env_var_and_optional_derived_file(mirror, tmp_path, monkeypatch):
    url, _ = mirror
    monkeypatch.setenv("GENEREC_DATA_MIRROR", url)
    res = resolve_dataset("beauty", data_dir=tmp_path / "empty", cache_dir=tmp_path / "c")
    assert _sha(res.interactions) == REGISTRY["beauty"].sha256["Beauty.txt"]
    assert res.item_file is not None and _sha(res.item_file) == REGISTRY["beauty"].sha256["Beauty_items.tsv"]


def test_bad_checksum_deletes_part_and_names_both_hashes(mirror, tmp_path):
    url, _ = mirror
    dest = tmp_path / "LastFM.txt"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        download_file(f"{url}/lastfm/LastFM.txt", dest, sha256=wrong)
    msg = str(info.value)
    assert f"{url}/lastfm/LastFM.txt" in msg and wrong in msg and LASTFM_SHA in msg
    assert not dest.exists() and not dest.with_suffix(".txt.part").exists()


def test_bad_checksum_through_resolve(mirror, tmp_path, monkeypatch):
    url, _ = mirror
    spec = DatasetSpec(**{**vars(REGISTRY["lastfm"]), "sha256": {"LastFM.txt": "f" * 64}})
    monkeypatch.setitem(REGISTRY, "lastfm", spec)
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        resolve_dataset("lastfm", data_dir=tmp_path / "empty", cache_dir=tmp_path / "c", base_url=url)
    assert not (tmp_path / "c" / "lastfm" / "LastFM.txt").exists()


def test_resume_partial_download(mirror, shared_data_dir, tmp_path):
    url, handler = mirror
    src = (shared_data_dir / "lastfm" / "LastFM.txt").read_bytes()
    dest = tmp_path / "LastFM.txt"
    part = dest.with_suffix(".txt.part")
    part.write_bytes(src[: len(src) // 2])
    handler.seen_ranges.clear()
    download_file(f"{url}/lastfm/LastFM.txt", dest, sha256=LASTFM_SHA)
    assert handler.seen_ranges == [f"bytes={len(src) // 2}-"]
    assert dest.read_bytes() == src and not part.exists()


def test_resume_with_complete_part_gets_416(mirror, shared_data_dir, tmp_path):
    url, _ = mirror
    dest = tmp_path / "LastFM.txt"
    dest.with_suffix(".txt.part").write_bytes((shared_data_dir / "lastfm" / "LastFM.txt").read_bytes())
    download_file(f"{url}/lastfm/LastFM.txt", dest, sha256=LASTFM_SHA)
    assert _sha(dest) == LASTFM_SHA


def test_server_without_range_support_restarts(no_range_mirror, shared_data_dir, tmp_path):
    url, handler = no_range_mirror
    dest = tmp_path / "LastFM.txt"
    dest.with_suffix(".txt.part").write_bytes(b"garbage that must not be kept")
    download_file(f"{url}/lastfm/LastFM.txt", dest, sha256=LASTFM_SHA)
    assert handler.seen_ranges  # we asked to resume; the server answered 200 with the whole file
    assert dest.read_bytes() == (shared_data_dir / "lastfm" / "LastFM.txt").read_bytes()


def test_offline_error_lists_every_place(tmp_path):
    dead = _dead_url()
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset("lastfm", data_dir=tmp_path / "empty", cache_dir=tmp_path / "c", base_url=dead)
    msg = str(info.value)
    assert str(tmp_path / "empty" / "lastfm" / "LastFM.txt") in msg  # $GENEREC_DATA_DIR
    assert str(tmp_path / "c" / "lastfm" / "LastFM.txt") in msg  # cache dir
    assert dead in msg and "Download failed" in msg
    assert "data.path=" in msg and "GENEREC_DATA_DIR=" in msg
    with pytest.raises(DownloadError):
        download_file(f"{dead}/x.txt", tmp_path / "x.txt", timeout=5)


def test_download_disabled_error(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="downloads disabled") as info:
        resolve_dataset("beauty", cache_dir=tmp_path / "c", download=False)
    assert "$GENEREC_DATA_DIR (not set)" in str(info.value)


def test_zip_archive_is_extracted_and_unverified_warns(tmp_path, monkeypatch, caplog):
    """ml-1m style: one zip upstream, files taken from it by name (file:// URL, no sha256)."""
    archive = tmp_path / "src" / "toy.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("toy/toy.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t5\t10\n1\t6\t11\n")
        zf.writestr("toy/toy.item", "item_id:token\tmovie_title:token_seq\n5\tFive\n")
        zf.writestr("../evil.inter", "should never be written outside the folder")
    spec = DatasetSpec(
        name="toy", interactions="toy.inter", format="atomic",
        urls={"toy.zip": archive.as_uri()}, sha256={"toy.zip": None}, item_file="toy.item",
    )  # fmt: skip
    monkeypatch.setitem(REGISTRY, "toy", spec)
    with caplog.at_level(logging.WARNING, logger="generec.data.registry"):
        res = resolve_dataset("toy", data_dir=tmp_path / "empty", cache_dir=tmp_path / "c")
    assert "UNVERIFIED" in caplog.text
    assert res.interactions == tmp_path / "c" / "toy" / "toy.inter" and res.item_file.is_file()
    assert not (tmp_path / "c" / "evil.inter").exists() and not (tmp_path / "evil.inter").exists()


# ----------------------------------------------------------------------------- fingerprint


def test_fingerprint_tracks_content_and_config(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("1 2 3\n")
    fp = fingerprint_files([a], {"min_user_inter": 0})
    assert fp == fingerprint_files([a], {"min_user_inter": 0}) and len(fp) == 64
    os.utime(a, (1, 1))  # mtime alone does not matter
    assert fp == fingerprint_files([a], {"min_user_inter": 0})
    assert fp != fingerprint_files([a], {"min_user_inter": 5})
    a.write_text("1 2 4\n")
    assert fp != fingerprint_files([a], {"min_user_inter": 0})


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("GENEREC_CACHE_DIR")
    monkeypatch.chdir(tmp_path)
    assert registry.default_cache_dir() == tmp_path / "data"
    monkeypatch.setenv("GENEREC_CACHE_DIR", str(tmp_path / "x"))
    assert registry.default_cache_dir() == tmp_path / "x"

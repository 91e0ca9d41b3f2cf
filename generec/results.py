"""Results records: one JSON per run, written atomically, read back by the leaderboard."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import uuid
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

PACKAGES = ("generec", "torch", "lightning", "hydra-core", "numpy", "faiss-cpu", "wandb")


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write via a temp file in the same folder + os.replace: a reader sees all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def git_commit(cwd: str | Path | None = None) -> str | None:
    """HEAD of the generec checkout (with '-dirty' when the tree has changes), or None."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def new_run_id(model: str, dataset: str, seed: int) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{model}-{dataset}-s{seed}-{uuid.uuid4().hex[:6]}"


def environment() -> dict:
    return {"python": platform.python_version(), "platform": platform.platform(), "host": platform.node()}


def write_record(record: dict, results_dir: str | Path) -> Path:
    """Writes ``<results_dir>/<run_id>.json`` atomically and returns its path."""
    return atomic_write_text(
        Path(results_dir) / f"{record['run_id']}.json", json.dumps(record, indent=2, sort_keys=False)
    )


def read_records(*folders: str | Path) -> list[dict]:
    """All complete records under the folders (recursively); unreadable files are reported, not skipped."""
    records = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.json")):
            if path.name.startswith("."):
                continue
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{e.lineno}: not a valid results record ({e.msg})") from e
            if isinstance(rec, dict) and "run_id" in rec and "metrics" in rec:
                rec["_path"] = str(path)
                records.append(rec)
    return records

"""Shared pytest fixtures."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# The README runs `GENEREC_DATA_DIR=../shared/data pytest`; some tests start the CLI from another
# directory, where that relative path would point nowhere. Resolve it once, against pytest's cwd.
if os.environ.get("GENEREC_DATA_DIR"):
    os.environ["GENEREC_DATA_DIR"] = str(Path(os.environ["GENEREC_DATA_DIR"]).resolve())


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The read-only real datasets: ``$GENEREC_DATA_DIR`` or ``<repo>/../shared/data``.

    Fails (never skips) when missing, so a misconfigured machine cannot pass by testing nothing.
    """
    root = Path(os.environ.get("GENEREC_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")
    if not (root / "beauty" / "Beauty.txt").is_file():
        pytest.fail(
            f"shared datasets not found at {root} (expected beauty/Beauty.txt there). "
            "Set GENEREC_DATA_DIR=/path/to/shared/data to run the data tests.",
            pytrace=False,
        )
    return root


@pytest.fixture(scope="session")
def script_module():
    """Imports ``scripts/<name>.py`` as a module (the drivers are scripts, not package modules)."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load

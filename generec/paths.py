"""Where generec's Hydra configs live, as an absolute path.

Hydra resolves a relative ``config_path`` against the calling *module* when the entry point is
imported (the ``generec`` console script) rather than run as ``__main__``; that turns ``../conf``
into ``pkg://conf``, which is not a package. An absolute directory works in both cases.

The configs live in the top-level ``conf/`` of a checkout; ``generec/conf`` is a symlink to it, so
a built wheel carries them inside the package (package data) and an editable install reads them
in place.
"""

from __future__ import annotations

from pathlib import Path

CONF_DIR = (Path(__file__).resolve().parent / "conf").resolve()

if not (CONF_DIR / "train.yaml").is_file():  # pragma: no cover - broken install
    raise ImportError(
        f"generec's configs are missing: expected {CONF_DIR}/train.yaml. Install generec from a source "
        "checkout (`pip install -e .`) or from a wheel built from one (the configs are package data)."
    )

#!/usr/bin/env bash
# Create (or refresh) the separate virtual environment that runs the RecBole benchmark peer.
#
# RecBole 1.2.1's pins conflict with generec's stack, so it lives in its own venv:
#   * recbole pins ray<=2.6.3, which imports pkg_resources (removed in setuptools>=81)
#   * RecBole uses np.float_ / np.unicode_ (removed in NumPy 2); pandas 3 needs NumPy 2
#   * torch is installed FIRST and pinned, or pip pulls a multi-GB CUDA build
#
# Idempotent: re-running only installs what is missing/mismatched.
# Usage:  scripts/bench/setup_recbole_venv.sh            (venv at <repo>/.venv-recbole)
#         RECBOLE_VENV=/some/path scripts/bench/setup_recbole_venv.sh
#         PYTHON=python3.11 scripts/bench/setup_recbole_venv.sh
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${RECBOLE_VENV:-$REPO_ROOT/.venv-recbole}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${RECBOLE_TORCH_VERSION:-2.13.0}"
RECBOLE_VERSION="1.2.1"

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "[setup_recbole_venv] creating venv at $VENV"
    "$PYTHON" -m venv "$VENV"
else
    echo "[setup_recbole_venv] venv exists at $VENV"
fi

PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

have() {  # have <dist> <version>: true if that exact version is installed in the venv
    local got
    got="$("$VENV/bin/python" - "$1" <<'EOF' 2>/dev/null || true
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    print(version(sys.argv[1]))
except PackageNotFoundError:
    pass
EOF
)"
    [[ "${got%%+*}" == "$2" ]]
}

# 1. torch first, pinned (never unpinned: an unpinned torch drags in the CUDA wheels/deps).
if have torch "$TORCH_VERSION"; then
    echo "[setup_recbole_venv] torch $TORCH_VERSION already installed"
else
    "${PIP[@]}" install "torch==$TORCH_VERSION"
fi

# 2. recbole itself. Keep torch pinned in the same command so pip cannot swap it.
if have recbole "$RECBOLE_VERSION"; then
    echo "[setup_recbole_venv] recbole $RECBOLE_VERSION already installed"
else
    "${PIP[@]}" install "recbole==$RECBOLE_VERSION" "torch==$TORCH_VERSION"
fi

# 3. Downgrades RecBole needs (cheap no-op when already satisfied).
"${PIP[@]}" install "setuptools<81" "numpy<2" "pandas<3" "torch==$TORCH_VERSION"

# 4. Smoke import (ray/pkg_resources and np.float_ breakages show up here).
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 "$VENV/bin/python" - <<'EOF'
import numpy, pandas, torch, recbole
from recbole.quick_start import run_recbole  # noqa: F401  (pulls in ray, pkg_resources)
from recbole.model.sequential_recommender import SASRec  # noqa: F401
print(f"[setup_recbole_venv] OK recbole {recbole.__version__} torch {torch.__version__} "
      f"numpy {numpy.__version__} pandas {pandas.__version__}")
EOF
echo "[setup_recbole_venv] python: $VENV/bin/python"

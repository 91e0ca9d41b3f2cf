"""notebooks/leaderboard.ipynb executes against results of a short real run (scripts/ci_notebook.sh)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # 4 short trainings + a kernel: ~90 s of CPU; .ci/run runs scripts/ci_notebook.sh itself
def test_leaderboard_notebook_executes_on_a_real_run(tmp_path, shared_data_dir):
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "ci_notebook.sh"), str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable, "GENEREC_DATA_DIR": str(shared_data_dir)},
        timeout=1200,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    nb = nbformat.read(tmp_path / "leaderboard.executed.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "<table" in html and "sasrec" in html and "gru4rec" in html and "baseline" in html
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # cost, popularity buckets, length buckets, seed spread
    assert len(list((tmp_path / "figures").glob("*.png"))) >= 4

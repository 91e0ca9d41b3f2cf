#!/usr/bin/env bash
# Executes notebooks/leaderboard.ipynb against results of a short real run made here and now,
# so the notebook can never rot.  Usage: scripts/ci_notebook.sh [OUT_DIR]
# Needs the notebook extra (pip install "torch==2.13.0" -e ".[cpu,dev,notebook]") and the shared data.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
OUT="${1:-$(mktemp -d)}"
export GENEREC_DATA_DIR="${GENEREC_DATA_DIR:-$(cd .. && pwd)/shared/data}"
mkdir -p "$OUT"

# 2 models x 2 seeds, one short epoch each: enough for every table column and plot.
"$PY" -m generec.train -m model=sasrec,gru4rec seed=1,2 data=ml-100k \
  trainer.max_epochs=1 +trainer.limit_train_batches=3 trainer.enable_progress_bar=false \
  logger=csv "hydra.sweep.dir=$OUT/sweep" "results_dir=$OUT/results" > "$OUT/train.log" 2>&1 \
  || { tail -50 "$OUT/train.log"; exit 1; }

GENEREC_LEADERBOARD_DIRS="$OUT/results" GENEREC_LEADERBOARD_FIGS="$OUT/figures" MPLBACKEND=Agg \
  "$PY" - "$OUT" <<'PYEOF'
import sys

import nbformat
from nbclient import NotebookClient

out = sys.argv[1]
nb = nbformat.read("notebooks/leaderboard.ipynb", as_version=4)
NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()
nbformat.write(nb, f"{out}/leaderboard.executed.ipynb")
print(f"executed notebook: {out}/leaderboard.executed.ipynb")
PYEOF

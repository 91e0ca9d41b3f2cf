#!/usr/bin/env bash
# Issue 8 evidence: one converged run of every model family on ml-100k, then one audit that ranks
# them together (ECDF index across all models and their compressed copies).
#
#   GENEREC_DATA_DIR=../shared/data bash scripts/trust_zoo_ml100k.sh [results_dir] [seed]
#
# Each training is single-threaded and stops early on valid NDCG@10 (patience 10). The runs differ in
# their training loaders (batch size, bucketing, window stride); the audit ranks them together because
# they share the evaluation data (generec.trust.cli.audit_data_key).
# One model per family (transformer, RNN, attention calibration, contrastive, multi-interest); add e.g.
# `train duorec data=ml-100k model=duorec ...` or `train bert4rec ...` the same way.
set -euo pipefail
R="${1:-results/trust_ml100k_models}"
SEED="${2:-1}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
common=(seed="$SEED" results_dir="$R" trainer.enable_progress_bar=false)
train() { local name=$1; shift; echo "== $name"; generec train "$@" "${common[@]}" hydra.run.dir="outputs/trust_ml100k/$name-s$SEED"; }

train sasrec experiment=sasrec_ml100k data.length_bucketing=true
train gru4rec experiment=gru4rec_ml100k
train ac_sasrec data=ml-100k model=ac_sasrec trainer.max_epochs=100
train cl4srec data=ml-100k model=cl4srec data.length_bucketing=true trainer.max_epochs=100
train comirec_sa data=ml-100k model=comirec_sa model.ihn_beta=1 model.rr_lambda=100 \
    data.batch_size=128 data.window_stride=10 trainer.max_epochs=100

generec audit results="$R" audit.max_users=null audit.injection_users=20 'audit.compression=[int8,prune50]'

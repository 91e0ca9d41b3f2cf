#!/usr/bin/env python
"""Benchmark peer: train/evaluate RecBole 1.2.1 SASRec / BERT4Rec / GRU4Rec (--model) on a shared dataset and write timing + metrics JSON.

Runs INSIDE the RecBole venv (see setup_recbole_venv.sh); uses only the stdlib and recbole (+ its deps).

    .venv-recbole/bin/python scripts/bench/recbole_runner.py \
        --dataset ml-100k --data-dir /work/shared/data --work-dir /tmp/rb_ml100k \
        --epochs 1 --seed 2020 --out /tmp/recbole_smoke.json

Protocol (RecBole's own, see /work/shared/recbole-peer.md): leave-one-out split by time
(``eval_args: {split: {LS: valid_and_test}, order: TO, mode: full}``), every prefix is a training
sample (max length 50), CE loss over all items (padding id 0 included in the training softmax),
full ranking, seen items not masked, no k-core filtering, no de-duplication.

Timing is taken with ``time.perf_counter`` by wrapping ``Trainer._train_epoch``,
``Trainer._valid_epoch`` and ``Trainer._save_checkpoint`` (called exactly when a new best
validation score is reached), so RecBole's own training loop and early stopping run unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time

# Must be set before torch is imported: torch>=2.6 loads checkpoints weights-only by default and
# RecBole's checkpoint (it pickles its Config) then cannot be reloaded for the test pass.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

# CLI name -> (folder, file, format) under --data-dir.
DATASETS = {
    "ml-100k": ("ml-100k", "ml-100k.inter", "atomic"),
    "beauty": ("beauty", "Beauty.txt", "s3rec"),
    "sports": ("sports_and_outdoors", "Sports_and_Outdoors.txt", "s3rec"),
    "toys": ("toys_and_games", "Toys_and_Games.txt", "s3rec"),
    "yelp": ("yelp", "Yelp.txt", "s3rec"),
    "lastfm": ("lastfm", "LastFM.txt", "s3rec"),
}
# Name RecBole sees. Not "ml-100k": for that exact name RecBole 1.2.1 ignores data_path and reads its
# bundled copy (plus properties/dataset/ml-100k.yaml, which turns on normalize_all).
RECBOLE_NAME = {"ml-100k": "ml100k"}

MODEL_OVERRIDES = {
    "SASRec": {
        "n_layers": 2,
        "n_heads": 2,
        "hidden_size": 64,
        "inner_size": 256,
        "hidden_dropout_prob": 0.5,
        "attn_dropout_prob": 0.5,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        "loss_type": "CE",
    },
}

TOPK = [10, 20]
METRICS = ["Recall", "NDCG", "MRR", "Hit"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    p.add_argument("--data-dir", default="/work/shared/data")
    p.add_argument("--work-dir", required=True, help="scratch dir: atomic files, checkpoints, RecBole logs")
    p.add_argument("--epochs", type=int, required=True, help="max epochs (early stopping may end sooner)")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--out", required=True, help="result JSON path (written atomically)")
    p.add_argument("--model", default="SASRec", choices=["SASRec", "BERT4Rec", "GRU4Rec"])
    p.add_argument("--eval-every", type=int, default=1, help="RecBole eval_step")
    p.add_argument("--stopping-step", type=int, default=10)
    p.add_argument("--train-batch-size", type=int, default=2048)
    p.add_argument("--eval-batch-size", type=int, default=4096)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)"
    )
    p.add_argument(
        "--metric-decimal-place",
        type=int,
        default=4,
        help="RecBole rounds metrics (and hence the early-stopping score) to this many decimals; "
        "4 is RecBole's default",
    )
    return p.parse_args(argv)


# --------------------------------------------------------------------------- data conversion


def _atomic_write_text(path, text):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def prepare_atomic(dataset, data_dir, work_dir):
    """Write <work_dir>/data/<name>/<name>.inter; return (recbole_name, data_path, source stats)."""
    folder, fname, fmt = DATASETS[dataset]
    src = os.path.join(data_dir, folder, fname)
    name = RECBOLE_NAME.get(dataset, dataset)
    data_path = os.path.join(work_dir, "data")
    dst = os.path.join(data_path, name, f"{name}.inter")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    users, items, n_inter = set(), set(), 0
    if fmt == "atomic":
        # Original RecBole atomic file, used as is (load_col picks user_id, item_id, timestamp).
        with open(src, encoding="utf-8") as f:
            header = f.readline().rstrip("\n").split("\t")
            ui = header.index("user_id:token"), header.index("item_id:token")
            for line in f:
                if line.strip():
                    parts = line.rstrip("\n").split("\t")
                    users.add(parts[ui[0]])
                    items.add(parts[ui[1]])
                    n_inter += 1
        tmp = dst + ".tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    else:
        # S3Rec line file "user i1 i2 ..." (chronological) -> .inter with timestamp = position.
        out = ["user_id:token\titem_id:token\ttimestamp:float"]
        with open(src, encoding="utf-8") as f:
            for line in f:
                toks = line.split()
                if not toks:
                    continue
                u, seq = toks[0], toks[1:]
                users.add(u)
                for pos, it in enumerate(seq):
                    items.add(it)
                    out.append(f"{u}\t{it}\t{pos}")
                n_inter += len(seq)
        _atomic_write_text(dst, "\n".join(out) + "\n")
    return (
        name,
        data_path,
        {"source_file": src, "users": len(users), "items": len(items), "interactions": n_inter},
    )


# --------------------------------------------------------------------------- timing trainer


def make_timed_trainer(base_cls, sync):
    class TimedTrainer(base_cls):
        """RecBole trainer with perf_counter timing around each train epoch / valid pass."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.bench_epoch_seconds = []
            self.bench_eval_seconds = []
            self.bench_train_loss = []  # summed batch losses per epoch, as RecBole logs them
            self.bench_eval_epochs = []
            self.bench_valid_results = []
            self.bench_best = None  # (epoch, cumulative train+eval s, wall s since fit start)
            self.bench_fit_start = None
            self._bench_epoch = -1

        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            if self.bench_fit_start is None:
                self.bench_fit_start = time.perf_counter()
            sync()
            t0 = time.perf_counter()
            loss = super()._train_epoch(
                train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress
            )
            sync()
            self.bench_epoch_seconds.append(time.perf_counter() - t0)
            self._bench_epoch = epoch_idx
            self.bench_train_loss.append(float(sum(loss) if isinstance(loss, tuple) else loss))
            return loss

        def _valid_epoch(self, valid_data, show_progress=False):
            sync()
            t0 = time.perf_counter()
            score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
            sync()
            self.bench_eval_seconds.append(time.perf_counter() - t0)
            self.bench_eval_epochs.append(self._bench_epoch)
            self.bench_valid_results.append({_metric_key(k): float(v) for k, v in result.items()})
            return score, result

        def _save_checkpoint(self, epoch, verbose=True, **kwargs):
            # fit() calls this exactly when early_stopping() reports a new best (value >= best).
            cum = sum(self.bench_epoch_seconds) + sum(self.bench_eval_seconds)
            wall = time.perf_counter() - self.bench_fit_start if self.bench_fit_start else 0.0
            self.bench_best = (epoch, cum, wall)
            return super()._save_checkpoint(epoch, verbose=verbose, **kwargs)

    return TimedTrainer


def _metric_key(k):
    k = k.lower()
    return "hr" + k[3:] if k.startswith("hit@") else k


def _atomic_write_json(path, obj):
    _atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# --------------------------------------------------------------------------- main


def main(argv=None):
    args = parse_args(argv)
    out_path = os.path.abspath(args.out)
    work_dir = os.path.abspath(args.work_dir)
    data_dir = os.path.abspath(args.data_dir)
    os.makedirs(work_dir, exist_ok=True)

    t_prog = time.perf_counter()
    name, data_path, src_stats = prepare_atomic(args.dataset, data_dir, work_dir)
    convert_seconds = time.perf_counter() - t_prog

    # RecBole parses "--key=value" from sys.argv and lets it override config_dict: hide our CLI.
    sys.argv = sys.argv[:1]
    # RecBole writes ./log, ./log_tensorboard relative to the cwd.
    os.chdir(work_dir)

    from logging import getLogger

    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("--device cuda requested but torch.cuda.is_available() is False")
        gpu_id = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
        sync = torch.cuda.synchronize
    else:
        gpu_id = ""  # RecBole 1.2.1: use_gpu=False does not force CPU; an empty gpu_id does.
        sync = lambda: None  # noqa: E731

    config_dict = {
        # environment
        "gpu_id": gpu_id,
        "use_gpu": args.device == "cuda",
        "seed": args.seed,
        "reproducibility": True,
        "data_path": data_path,
        "checkpoint_dir": os.path.join(work_dir, "saved"),
        "show_progress": False,
        "worker": 0,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
        # data: load only these columns, keep everything (no k-core, no dedup, no value filter)
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "rm_dup_inter": None,
        "val_interval": None,
        "filter_inter_by_user_or_item": False,
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "normalize_all": False,
        "normalize_field": None,
        "threshold": None,
        "MAX_ITEM_LIST_LENGTH": 50,
        # training
        "epochs": args.epochs,
        "train_batch_size": args.train_batch_size,
        "learner": "adam",
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
        "train_neg_sample_args": None,  # CE over all items
        "eval_step": args.eval_every,
        "stopping_step": args.stopping_step,
        # evaluation
        "eval_args": {"split": {"LS": "valid_and_test"}, "group_by": "user", "order": "TO", "mode": "full"},
        "repeatable": True,  # required for sequential models; means seen items are NOT masked
        "metrics": METRICS,
        "topk": TOPK,
        "valid_metric": "NDCG@10",
        "valid_metric_bigger": True,
        "eval_batch_size": args.eval_batch_size,
        "metric_decimal_place": args.metric_decimal_place,
    }

    # Model hyper-parameters: RecBole's own defaults for the model, spelled out for SASRec (the
    # foundation target); BERT4Rec / GRU4Rec read theirs from RecBole's properties/model/*.yaml.
    config_dict.update(MODEL_OVERRIDES.get(args.model, {}))
    config = Config(model=args.model, dataset=name, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(config)

    t0 = time.perf_counter()
    dataset = create_dataset(config)
    logger.info(dataset)
    # RecBole counts include the [PAD] token (id 0). Read them before data_preparation: the sequential
    # dataset replaces its inter_feat with the augmented prefixes while building.
    rb_users, rb_items, rb_inter = dataset.user_num, dataset.item_num, dataset.inter_num
    train_data, valid_data, test_data = data_preparation(config, dataset)
    data_seconds = time.perf_counter() - t0

    if (rb_users - 1, rb_items - 1, rb_inter) != (
        src_stats["users"],
        src_stats["items"],
        src_stats["interactions"],
    ):
        sys.exit(
            f"RecBole changed the data: users/items/inter {rb_users - 1}/{rb_items - 1}/{rb_inter} "
            f"vs source {src_stats['users']}/{src_stats['items']}/{src_stats['interactions']}"
        )

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model)
    n_params = sum(p.numel() for p in model.parameters())

    trainer_cls = make_timed_trainer(get_trainer(config["MODEL_TYPE"], config["model"]), sync)
    trainer = trainer_cls(config, model)

    t_fit = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    sync()
    fit_seconds = time.perf_counter() - t_fit

    t0 = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    sync()
    test_seconds = time.perf_counter() - t0
    logger.info(f"best valid: {best_valid_result}")
    logger.info(f"test result: {test_result}")

    best = trainer.bench_best or (None, None, None)
    valid_ndcg = [r.get("ndcg@10") for r in trainer.bench_valid_results]
    peak_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = {
        "system": "recbole",
        "version": recbole.__version__,
        "torch": torch.__version__,
        "dataset": args.dataset,
        "model": args.model,
        "device": str(config["device"]),
        "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
        "allocator_env": {
            k: os.environ[k]
            for k in (
                "LD_PRELOAD",
                "MALLOC_CONF",
                "JEMALLOC_CONF",
                "MALLOC_ARENA_MAX",
                "MALLOC_TRIM_THRESHOLD_",
            )
            if k in os.environ
        },
        "max_epochs": args.epochs,
        "epochs_run": len(trainer.bench_epoch_seconds),
        "epoch_seconds": trainer.bench_epoch_seconds,
        "eval_seconds": trainer.bench_eval_seconds,
        "train_loss_per_epoch": trainer.bench_train_loss,
        "eval_epochs": trainer.bench_eval_epochs,
        "valid_ndcg@10_per_epoch": valid_ndcg,
        "valid_per_eval": trainer.bench_valid_results,
        "best_epoch": best[0],
        "best_valid": {_metric_key(k): float(v) for k, v in (best_valid_result or {}).items()},
        "seconds_to_best": best[1],
        "seconds_to_best_wall": best[2],
        "fit_seconds": fit_seconds,
        "test_seconds": test_seconds,
        "data_seconds": data_seconds,
        "convert_seconds": convert_seconds,
        "total_seconds": time.perf_counter() - t_prog,
        "test": {_metric_key(k): float(v) for k, v in (test_result or {}).items()},
        "peak_rss_mib": peak_rss_kib / 1024.0,
        "num_users": rb_users - 1,
        "num_items": rb_items - 1,
        "recbole_user_num": rb_users,
        "recbole_item_num": rb_items,
        "num_interactions": rb_inter,
        "num_train_samples": len(train_data._dataset),
        "num_valid_users": len(valid_data._dataset),
        "num_test_users": len(test_data._dataset),
        "num_params": n_params,
        "hyperparams": {
            k: config[k]
            for k in (
                "hidden_size",
                "n_layers",
                "n_heads",
                "inner_size",
                "hidden_dropout_prob",
                "attn_dropout_prob",
                "embedding_size",
                "num_layers",
                "dropout_prob",
                "mask_ratio",
                "ft_ratio",
                "loss_type",
                "learning_rate",
                "train_batch_size",
                "eval_batch_size",
                "MAX_ITEM_LIST_LENGTH",
                "eval_step",
                "stopping_step",
                "valid_metric",
                "metric_decimal_place",
            )
            if config[k] is not None
        },
        "eval_args": config_dict["eval_args"],
        "source": src_stats,
        "python": platform.python_version(),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
    }
    _atomic_write_json(out_path, result)
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "dataset",
                    "epochs_run",
                    "epoch_seconds",
                    "eval_seconds",
                    "best_epoch",
                    "seconds_to_best",
                    "fit_seconds",
                    "test",
                    "peak_rss_mib",
                    "num_users",
                    "num_items",
                    "num_train_samples",
                )
            }
        )
    )
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()

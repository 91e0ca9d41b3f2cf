"""Top-K recommendations from a checkpoint, with original user/item ids and titles.

generec predict checkpoint=outputs/.../checkpoints/best.ckpt data=ml-100k topk=20
"""

from __future__ import annotations

import csv
import importlib
import inspect
import io
import json
import logging
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from generec.eval.ranking import prepare_scores, topk_items
from generec.paths import CONF_DIR
from generec.results import atomic_write_text

log = logging.getLogger(__name__)


def constructor_kwargs(cls, hparams: dict) -> dict:
    """The saved hyper-parameters that ``cls.__init__`` takes.

    A subclass that calls its parent's ``__init__`` and then ``save_hyperparameters()`` again keeps the
    parent's arguments in ``hparams`` too (Lightning merges both calls), e.g. AC-SASRec inherits
    SASRec's ``ce_chunk_size`` without taking it. Those were fixed by the subclass, so they are dropped.
    """
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(hparams)
    dropped = sorted(set(hparams) - set(params))
    if dropped:
        log.debug("%s takes no %s: saved by a parent class, not passed", cls.__name__, dropped)
    return {k: v for k, v in hparams.items() if k in params}


def load_model(checkpoint: str | Path, map_location: str = "cpu"):
    """Rebuilds the model class named in the checkpoint and loads its weights."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint={checkpoint}: no such file")
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    target = ckpt.get("generec_model_class")
    if target is None:
        raise ValueError(f"{path}: not a generec checkpoint (no 'generec_model_class' entry)")
    module_name, cls_name = target.rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), cls_name)
    model = cls(**constructor_kwargs(cls, ckpt["hyper_parameters"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt.get("generec_dataset")


def recommend(
    model,
    datamodule,
    topk: int,
    users: np.ndarray | None = None,
    mask_history: bool = True,
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users [U], items [U, K] remapped ids, scores [U, K]) of the next items after each whole history."""
    rows = datamodule.user_rows(users, with_history=mask_history)
    rows.trim = model.accepts_trimmed_batches
    loader = datamodule.loader(rows, batch_size, shuffle=False)
    all_items, all_scores = [], []
    with torch.inference_mode():
        for batch in loader:
            batch = {k: v.to(model.device) for k, v in batch.items()}
            scores = prepare_scores(model.score(batch), batch.get("history"))
            items, values = topk_items(scores, topk)
            all_items.append(items.cpu())
            all_scores.append(values.cpu())
    return rows.tensors["users"].numpy(), torch.cat(all_items).numpy(), torch.cat(all_scores).numpy()


def format_rows(datamodule, users, items, scores) -> list[dict]:
    data = datamodule.data
    titles = data.item_side.get("title")
    out = []
    for u, item_row, score_row in zip(users, items, scores, strict=True):
        for rank, (i, s) in enumerate(zip(item_row, score_row, strict=True), start=1):
            row = {
                "user_id": str(data.user_tokens[u]),
                "rank": rank,
                "item_id": str(data.item_tokens[i]),
                "score": round(float(s), 6),
            }
            if titles is not None:
                row["title"] = titles[i]
            out.append(row)
    return out


def write_predictions(rows: list[dict], output: str | Path) -> Path:
    output = Path(output)
    if output.suffix == ".json":
        return atomic_write_text(output, json.dumps(rows, indent=1, ensure_ascii=False))
    if output.suffix not in (".csv", ".tsv"):
        raise ValueError(f"output={output}: use a .csv, .tsv or .json file name")
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf,
        fieldnames=list(rows[0]) if rows else ["user_id", "rank", "item_id", "score"],
        delimiter="\t" if output.suffix == ".tsv" else ",",
    )
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(output, buf.getvalue())


def run(cfg: DictConfig) -> Path:
    model, trained_on = load_model(cfg.checkpoint)
    datamodule = instantiate(cfg.data)
    datamodule.setup("predict")
    if trained_on and trained_on.get("fingerprint") != datamodule.data.fingerprint:
        raise ValueError(
            f"checkpoint={cfg.checkpoint} was trained on dataset {trained_on.get('name')!r} "
            f"(fingerprint {trained_on.get('fingerprint')}), but data={datamodule.name!r} has fingerprint "
            f"{datamodule.data.fingerprint}: item ids would not line up. Use the same data and preprocessing."
        )
    users = None
    if cfg.users is not None:
        index = {str(t): i for i, t in enumerate(datamodule.data.user_tokens)}
        missing = [str(u) for u in cfg.users if str(u) not in index]
        if missing:
            raise ValueError(f"users={missing[:5]}: unknown user ids in dataset {datamodule.name!r}")
        users = np.array([index[str(u)] for u in cfg.users])
    result = recommend(model, datamodule, cfg.topk, users, cfg.mask_history, cfg.batch_size)
    path = write_predictions(format_rows(datamodule, *result), cfg.output)
    print(f"wrote top-{cfg.topk} for {len(result[0])} users to {path}")
    return path


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="predict")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()

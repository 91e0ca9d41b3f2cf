"""How far IHN's importance weights are from uniform in a trained multi-interest checkpoint.

IHN weights a row's sampled negatives by ``softmax_j(beta s_j)``, so what beta does depends on the
spread of the raw scores ``s_j`` the model has learnt. For one training batch of the checkpoint's
dataset this prints the spread of ``s_j`` over 1280 uniform negatives (under the interest the target
selects) and, for several beta, the effective number of negatives ``1 / sum_j w_j^2`` (1280 = uniform
weights, 1 = a single negative carries the loss). Medians over the batch's rows.

    python scripts/remi_ihn_weights.py --dataset beauty results/remi_beauty_beta01/runs/comirec_sa-ihn-s1/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from generec.data.datamodule import SeqDataModule
from generec.predict import load_model


@torch.no_grad()
def weight_spread(model, batch: dict[str, torch.Tensor], betas: list[float], negatives: int) -> dict:
    history, target = model.training_examples(batch)
    interests, _ = model.interests(history)
    items = model.item_embeddings()
    selected = model.hard_readout(interests, items[target])  # [R, d]
    neg = torch.randint(1, items.shape[0], (negatives,))
    scores = selected @ items[neg].T  # [R, n]
    out = {
        "rows": len(target),
        "score_std": float(scores.std(1).median()),
        "score_range": float((scores.max(1).values - scores.min(1).values).median()),
    }
    for beta in betas:
        w = torch.softmax(beta * scores, dim=1)
        out[f"effective_negatives@beta={beta:g}"] = float((1.0 / (w**2).sum(1)).median())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--betas", nargs="+", type=float, default=[0.1, 1.0, 10.0])
    p.add_argument("--negatives", type=int, default=1280)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    dm = SeqDataModule(registry=args.dataset, split="comirec", max_len=50, batch_size=args.batch_size)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    for path in args.checkpoints:
        model, _ = load_model(path)
        row = {"checkpoint": str(path), **weight_spread(model, batch, args.betas, args.negatives)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

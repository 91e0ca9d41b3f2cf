"""How far IHN's importance weights are from uniform in a trained multi-interest checkpoint.

IHN weights a row's sampled negatives by ``softmax_j(beta s_j)``, so what beta does depends on the
spread of the raw scores ``s_j`` the model has learnt. For one training batch of the checkpoint's
dataset this prints the spread of ``s_j`` over the model's own sampled negatives (under the interest
the target selects; accidental hits excluded, as in the loss) and, for several beta, the effective number of negatives ``1 / sum_j w_j^2`` (1280 = uniform
weights, 1 = a single negative carries the loss). Medians over the batch's rows.

    python scripts/remi_ihn_weights.py --dataset beauty results/remi_beauty_beta01/runs/comirec_sa-ihn-s1/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from generec.data.datamodule import SeqDataModule
from generec.models.multi_interest.losses import InterestAwareHardNegatives
from generec.predict import load_model


@torch.no_grad()
def weight_spread(model, batch: dict[str, torch.Tensor], betas: list[float]) -> dict:
    """The model's own sampler, logits and IHN weights (accidental hits excluded), on one batch."""
    history, target = model.training_examples(batch)
    interests, _ = model.interests(history)
    items = model.item_embeddings()
    selected = model.hard_readout(interests, items[target])  # [R, d]
    loss = model.sampled_loss
    _, scores, _, neg_logit = loss.logits(selected, target, items, loss.sample(selected.device))  # [R, n]
    kept = torch.isfinite(neg_logit)
    n = kept.sum(1)
    mean = (scores * kept).sum(1) / n
    std = ((((scores - mean[:, None]) * kept) ** 2).sum(1) / (n - 1)).sqrt()
    high = scores.masked_fill(~kept, float("-inf")).amax(1)
    low = scores.masked_fill(~kept, float("inf")).amin(1)
    out = {
        "rows": len(target),
        "negatives": loss.num_negatives,
        "score_std": float(std.median()),
        "score_range": float((high - low).median()),
    }
    for beta in betas:
        ihn = InterestAwareHardNegatives(loss.num_items, beta=beta, num_negatives=loss.num_negatives)
        w = ihn.negative_log_weights(scores, neg_logit).exp()  # mean 1 over the kept negatives
        w = w / w.sum(1, keepdim=True)
        out[f"effective_negatives@beta={beta:g}"] = float((1.0 / (w**2).sum(1)).median())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--betas", nargs="+", type=float, default=[0.1, 1.0, 10.0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    dm = SeqDataModule(registry=args.dataset, split="comirec", max_len=50, batch_size=args.batch_size)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    for path in args.checkpoints:
        model, _ = load_model(path)
        row = {"checkpoint": str(path), **weight_spread(model, batch, args.betas)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

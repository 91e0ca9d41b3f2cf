"""Train the small SASRec + creator pair that ``scripts/reproduce_fidelity.py`` checks (CPU, toy scale).

SASRec is trained for one epoch over at most ``--train-batches`` batches (the shared 2-core box cannot
afford full epochs on 50k users), then the creator on (state after a training prefix -> next item) pairs
with simulated keyword/title instructions, exactly as ``scripts/generate_beauty_eval.py`` does.

GENEREC_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/fidelity_prepare.py \
    --data games --out outputs/fidelity_games --train-batches 450 --creator-steps 2000 --max-pairs 30000
(Beauty reuses the 1-epoch SASRec of docs/reproductions/generec.md: --checkpoint /tmp/gen/smoke/sasrec.ckpt)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L
import torch

from generec.data.datamodule import SeqDataModule
from generec.generative.creator import Creator, CreatorConfig
from generec.generative.evaluate import prefix_pairs
from generec.generative.instructor import SentenceEncoder
from generec.generative.run import cached_text_embeddings, instruction_table
from generec.models.sasrec import SASRec


def train_sasrec(dm: SeqDataModule, batches: int, out: Path) -> tuple[SASRec, dict]:
    """One epoch capped at ``batches`` batches; the checkpoint goes to ``out/sasrec.ckpt``."""
    L.seed_everything(0, workers=True)
    model = SASRec(num_items=dm.num_items, max_len=dm.max_len)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=batches,
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    t0 = time.perf_counter()
    trainer.fit(model, dm)
    trainer.save_checkpoint(out / "sasrec.ckpt")
    return model, {"sasrec_fit_s": time.perf_counter() - t0, "train_batches": batches}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="games")
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoint", default=None, help="reuse a SASRec checkpoint instead of training one")
    p.add_argument("--train-batches", type=int, default=150)
    p.add_argument("--creator-steps", type=int, default=300)
    p.add_argument("--max-pairs", type=int, default=10000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dm = SeqDataModule(registry=args.data, max_len=50, seed=0)
    dm.setup()
    data = dm.data
    if args.checkpoint:
        from generec.predict import load_model

        model, _ = load_model(args.checkpoint)
        info: dict = {"sasrec_checkpoint": args.checkpoint}
    else:
        model, info = train_sasrec(dm, args.train_batches, out)
    model.eval()
    encoder = SentenceEncoder()
    titles = [str(t) for t in data.item_side["title"]]
    keywords = data.item_side.get("idgenrec_text")
    title_emb = cached_text_embeddings(encoder, titles)
    kw = instruction_table(encoder, titles, ["keywords"], 0, keywords, None)
    train_text = torch.cat([kw, title_emb[:, None]], 1)  # [I+1, 2, e]
    with torch.inference_mode():
        table = model.item_embeddings().detach().float()
    states, targets = prefix_pairs(model, data, dm.split.train_end, dm.max_len, args.max_pairs, 0)
    torch.manual_seed(0)
    creator = Creator(
        table.shape[1], states.shape[1], train_text.shape[-1], CreatorConfig(steps=args.creator_steps)
    )
    t0 = time.perf_counter()
    losses = creator.fit(states, targets, table, train_text, seed=0)
    info.update(creator_fit_s=time.perf_counter() - t0, loss_first=losses[0], loss_last=losses[-1])
    creator.save(out / "creator.pt", {"dataset_fingerprint": data.fingerprint})
    (out / "prepare.json").write_text(json.dumps({**vars(args), **info}, indent=1))
    print(json.dumps(info))


if __name__ == "__main__":
    main()

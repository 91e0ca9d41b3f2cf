"""Measure the GeneRec pieces on real data (Amazon Beauty, real titles; or --dataset ml-100k), CPU, toy scale.

1. trains SASRec briefly (or reuses --checkpoint), 2. trains the creator on (state after each
training prefix -> next item) pairs with simulated instructions, 3. on sampled test users reports
instructor mode decisions, creation HR/NDCG@K vs the recommender and random, editor trade-off over
SDEdit strength, and timings. Writes a JSON record and prints markdown tables.
``--space content`` generates in the content space (unit-norm MiniLM embeddings of the titles) instead of
SASRec's item-embedding space; nearest items, novelty, copy rate and HR/NDCG then use that table.

GENEREC_DATA_DIR=/work/shared/data nice -n 10 .venv/bin/python scripts/generate_beauty_eval.py \
    --out outputs/generec_beauty --epochs 8 --creator-steps 3000 --users 2000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from generec.data.datamodule import SeqDataModule
from generec.generative.categories import item_categories
from generec.generative.creator import Creator, CreatorConfig
from generec.generative.editor import Editor
from generec.generative.evaluate import (
    SPECIFICITY_LEVELS,
    creation_scores,
    edit_instructions,
    encode_rows,
    fused_scores,
    novelty_stats,
    prefix_pairs,
    ranking_metrics,
    simulate_instructions,
    strength_curve,
)
from generec.generative.instructor import InstructorConfig, SentenceEncoder, decide_mode
from generec.generative.pipeline import catalogue_nn_distance
from generec.generative.run import cached_text_embeddings, creator_table, instruction_table
from generec.models.sasrec import SASRec
from generec.predict import load_model
from generec.results import atomic_write_text


def train_sasrec(dm: SeqDataModule, epochs: int, out: Path, seed: int) -> tuple[SASRec, Path, dict]:
    L.seed_everything(seed, workers=True)
    model = SASRec(num_items=dm.num_items, max_len=dm.max_len)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    t0 = time.perf_counter()
    trainer.fit(model, dm)
    fit_s = time.perf_counter() - t0
    path = out / "sasrec.ckpt"
    trainer.save_checkpoint(path)
    valid = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("valid/")}
    return model.eval(), path, {"epochs": epochs, "fit_seconds": fit_s, **valid}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="outputs/generec_beauty")
    p.add_argument("--dataset", default="beauty", help="a registry dataset with item titles")
    p.add_argument("--space", choices=("item", "content"), default="item", help="what the creator generates")
    p.add_argument("--checkpoint", default=None, help="reuse a SASRec checkpoint instead of training one")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--creator-steps", type=int, default=3000)
    p.add_argument("--hidden", type=int, default=256, help="denoiser width (keep >= the space's dim)")
    p.add_argument("--max-pairs", type=int, default=100000)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--category-column", default=None, help="the dataset's own category column (ml-100k: class)"
    )
    p.add_argument("--clusters", type=int, default=100, help="named k-means categories when no column")
    p.add_argument(
        "--train-levels",
        nargs="+",
        default=["category", "keywords", "paraphrase", "title"],
        help="simulated instruction levels of the creator's training pairs (one drawn per pair)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record: dict = {"args": vars(args), "dataset": args.dataset, "space": args.space, "timings": {}}
    t_all = time.perf_counter()

    dm = SeqDataModule(registry=args.dataset, max_len=50, seed=0)
    dm.setup()
    data = dm.data
    if args.checkpoint:
        model, _ = load_model(args.checkpoint)
        record["sasrec"] = {"checkpoint": args.checkpoint}
    else:
        model, ckpt, info = train_sasrec(dm, args.epochs, out, seed=0)
        record["sasrec"] = {"checkpoint": str(ckpt), **info}
    print("sasrec", record["sasrec"])

    # ---- text side: item titles + simulated instruction tables (cached on disk)
    t0 = time.perf_counter()
    encoder = SentenceEncoder()
    titles = [str(t) for t in data.item_side["title"]]
    keywords = data.item_side.get("idgenrec_text")
    title_emb = cached_text_embeddings(encoder, titles)  # [I+1, e]
    # training instructions per item: its keyword text in a template, and its plain title (reused embedding)
    column = data.item_side[args.category_column] if args.category_column else None
    categories = item_categories(titles, title_emb, args.clusters, seed=0, category_column=column)
    record["categories"] = {
        "source": args.category_column or f"kmeans{args.clusters}",
        "examples": sorted(set(categories) - {""})[:30],
    }
    # the creator's training instructions: every train level for every item, one drawn per pair
    train_text = instruction_table(encoder, titles, args.train_levels, 0, keywords, None, categories)
    record["timings"]["text_embeddings_s"] = time.perf_counter() - t0

    # the space generated in: SASRec item embeddings [I+1, d], or the title embeddings [I+1, e]
    table = creator_table(args.space, model, encoder, titles)

    # ---- evaluation users: test split, sampled
    rng = np.random.default_rng(0)
    test = dm.eval_rows["test"].tensors
    sel = torch.from_numpy(
        np.sort(rng.choice(len(test["targets"]), min(args.users, len(test["targets"])), replace=False))
    )
    inputs, targets = test["input_ids"][sel], test["targets"][sel]
    t0 = time.perf_counter()
    states = encode_rows(model, inputs)  # [U, d]
    with torch.inference_mode():
        rec_scores = model.score({"input_ids": inputs}).float()  # [U, I+1]
    record["timings"]["encode_score_users_s"] = time.perf_counter() - t0
    ks = (1, 10, 50)
    baselines = {"recommender (SASRec score)": ranking_metrics(rec_scores, targets, ks)}
    gen = torch.Generator().manual_seed(0)
    baselines["random"] = ranking_metrics(torch.rand(rec_scores.shape, generator=gen), targets, ks)
    instr_emb = {}
    record["instruction_examples"] = {}
    for lv in SPECIFICITY_LEVELS:
        texts = simulate_instructions(
            targets.tolist(), titles, lv, seed=1, keywords=keywords, categories=categories
        )
        record["instruction_examples"][lv] = texts[:5]
        instr_emb[lv] = encoder.encode(texts) if lv != "none" else None
        if lv != "none":
            text_scores = instr_emb[lv] @ title_emb.T
            baselines[f"text retrieval, instruction={lv}"] = ranking_metrics(text_scores, targets, ks)
            baselines[f"recommender + instruction={lv}"] = ranking_metrics(
                fused_scores(rec_scores, text_scores), targets, ks
            )
    record["baselines"] = baselines

    # ---- instructor mode decisions (retrieved = SASRec top-10 with history masked)
    icfg = InstructorConfig()
    masked = rec_scores.clone()
    masked.scatter_(1, inputs, float("-inf"))
    masked[:, 0] = float("-inf")
    top10 = torch.topk(masked, icfg.topk, dim=1).indices
    modes: dict[str, dict[str, float]] = {}
    for lv in SPECIFICITY_LEVELS:
        counts = {"retrieve": 0, "repurpose": 0, "create": 0}
        for u in range(len(targets)):
            e = None if instr_emb[lv] is None else instr_emb[lv][u]
            m, _, _ = decide_mode(
                e, title_emb, top10[u], torch.zeros(0, dtype=torch.long), icfg.t_retrieve, icfg.t_repurpose
            )
            counts[m] += 1
        modes[lv] = {k: v / len(targets) for k, v in counts.items()}
    record["modes"] = {"t_retrieve": icfg.t_retrieve, "t_repurpose": icfg.t_repurpose, "share": modes}

    copy_dist = 0.5 * catalogue_nn_distance(table)
    record["copy_distance"] = copy_dist
    record["creator"] = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        pair_states, pair_targets = prefix_pairs(
            model, data, dm.split.train_end, dm.max_len, args.max_pairs, seed
        )
        prep_s = time.perf_counter() - t0
        torch.manual_seed(seed)
        creator = Creator(
            table.shape[1],
            pair_states.shape[1],
            train_text.shape[-1],
            CreatorConfig(space=args.space, hidden=args.hidden, steps=args.creator_steps),
        )
        t0 = time.perf_counter()
        losses = creator.fit(pair_states, pair_targets, table, train_text, seed=seed)
        fit_s = time.perf_counter() - t0
        creator.save(out / f"creator_{args.space}_seed{seed}.pt", {"dataset_fingerprint": data.fingerprint})
        res: dict = {
            "seed": seed,
            "pairs": len(pair_targets),
            "pairs_seconds": prep_s,
            "fit_seconds": fit_s,
            "loss_first": losses[0],
            "loss_last": losses[-1],
            "losses": losses,
            "creation": {},
        }
        for lv in SPECIFICITY_LEVELS:
            for w in (1.0, 2.0, 4.0) if lv == "keywords" else (2.0,):
                t0 = time.perf_counter()
                v = creator.sample(states, instr_emb[lv], guidance_scale=w, seed=seed)
                dt = time.perf_counter() - t0
                res["creation"][f"{lv} w={w}"] = {
                    **ranking_metrics(creation_scores(v, table), targets, ks),
                    **novelty_stats(v, table, copy_dist),
                    "items_per_s": len(v) / dt,
                }
        v = creator.sample(None, instr_emb["keywords"], seed=seed)
        res["creation"]["keywords, no user state w=2.0"] = {
            **ranking_metrics(creation_scores(v, table), targets, ks),
            **novelty_stats(v, table, copy_dist),
        }
        # editor: source = the user's last history item, target = held-out item, instruction = what the
        # target has that the source lacks (target words absent from the source's text)
        editor = Editor(creator)
        sources = inputs[:, -1]
        edit_texts = edit_instructions(
            sources.tolist(), targets.tolist(), titles, seed=seed, keywords=keywords
        )
        res["edit_instruction_examples"] = edit_texts[:5]
        edit_emb = encoder.encode(edit_texts)
        strengths = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
        t0 = time.perf_counter()
        res["editor"] = strength_curve(
            editor, sources, states, edit_emb, targets, table, strengths, seed=seed
        )
        res["editor_seconds"] = time.perf_counter() - t0
        # the strength-0 row returns the source unchanged; the others each denoise every user once
        res["edits_per_s"] = len(sources) * (len(strengths) - 1) / res["editor_seconds"]
        t0 = time.perf_counter()
        for u in range(20):
            creator.sample(states[u : u + 1], instr_emb["keywords"][u : u + 1], seed=u)
        res["single_item_latency_s"] = (time.perf_counter() - t0) / 20
        record["creator"].append(res)
        print(json.dumps({k: v for k, v in res.items() if k != "losses"}, indent=1))
    record["timings"]["total_s"] = time.perf_counter() - t_all
    atomic_write_text(out / "results.json", json.dumps(record, indent=1))
    print(json.dumps({k: record[k] for k in ("baselines", "modes", "timings")}, indent=1))
    print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    main()

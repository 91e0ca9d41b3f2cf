"""Hydra entry for the generative recommender (``generec generate`` and ``generec train-generator``).

Train the creator from a recommender checkpoint (pairs: state after each training prefix -> next item):
    generec train-generator data=beauty checkpoint=.../best.ckpt generator=gen.pt
    (the same as ``python -m generec.generative.run task=train ...``)
Generate for one user (retrieve / repurpose / create, decided by the instructor unless mode= is given):
    generec generate data=beauty checkpoint=.../best.ckpt generator=gen.pt \
        user=A1YJEY40YUW4SE instruction="a red nail polish" output=out.json
This writes ``out.json`` (the record) and ``out.html`` (a self-contained page of the same result, see
``html_page.py``; ``html=<path>`` moves it, ``html=false`` skips it).
Add ``+fidelity=default`` to gate generated items by the fidelity checks (conf/fidelity/default.yaml) and
refuse unsafe instructions; ``generec check`` runs the same checks on a result afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from generec.data.registry import default_cache_dir
from generec.generative.categories import item_categories
from generec.generative.creator import Creator, CreatorConfig
from generec.generative.evaluate import prefix_pairs, simulate_instructions
from generec.generative.guidance import Feedback
from generec.generative.html_page import html_path_for, write_result_page
from generec.generative.instructor import Instructor, InstructorConfig, SentenceEncoder, sanitize_item_text
from generec.generative.pipeline import GenerativeRecommender
from generec.paths import CONF_DIR
from generec.results import atomic_write_text

log = logging.getLogger(__name__)


def item_texts(data, column: str = "title") -> list[str]:
    """Item text aligned with remapped ids (row 0 padding); fails when the dataset has none."""
    if column not in data.item_side:
        raise ValueError(
            f"dataset {data.name!r} has no item text column {column!r} (has {sorted(data.item_side)}); "
            "the instructor needs item text: set generative.text_column"
        )
    return [str(t) for t in data.item_side[column]]


def cached_text_embeddings(
    encoder: SentenceEncoder, texts: list[str], cache_dir: str | None = None
) -> torch.Tensor:
    """Sentence embeddings of (sanitised) texts, cached on disk by content hash + encoder path."""
    clean = [sanitize_item_text(t) for t in texts]
    key = hashlib.sha256(("\n".join(clean) + "|" + encoder.path).encode()).hexdigest()[:20]
    path = default_cache_dir(cache_dir) / "text_embeddings" / f"{key}.pt"
    if path.is_file():
        return torch.load(path)
    emb = encoder.encode(clean)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(emb, tmp)
    tmp.replace(path)
    return emb


def creator_table(
    space: str, model, encoder: SentenceEncoder, texts: list[str], cache_dir: str | None = None
) -> torch.Tensor:
    """[I+1, d] the vectors the creator generates: recommender item embeddings, or (space=content) the
    unit-norm sentence embeddings of the items' text, the same table the instructor compares with."""
    if space == "content":
        return cached_text_embeddings(encoder, texts, cache_dir).float()
    if space != "item":
        raise ValueError(f"generative.creator.space must be item or content, got {space!r}")
    with torch.inference_mode():
        return model.item_embeddings().detach().float().cpu()


def instruction_table(
    encoder: SentenceEncoder,
    titles: list[str],
    levels: list[str],
    seed: int,
    keywords: list[str] | None,
    cache_dir: str | None,
    categories: list[str] | None = None,
) -> torch.Tensor:
    """[I+1, V, e]: the simulated instruction of each level for every item (the creator's text condition)."""
    ids = list(range(len(titles)))
    tables = []
    for v, level in enumerate(levels):
        texts = simulate_instructions(
            ids, titles, level, seed=seed + v, keywords=keywords, categories=categories
        )
        texts[0] = ""
        tables.append(cached_text_embeddings(encoder, texts, cache_dir))
    return torch.stack(tables, 1)


def training_categories(cfg: DictConfig, data, encoder: SentenceEncoder, titles: list[str]) -> list[str]:
    """Category text per item for the ``category`` instruction level: the dataset's own column
    (``generative.category.column``) when set, else named k-means clusters of the title embeddings."""
    c = cfg.generative.get("category", {}) or {}
    column = c.get("column")
    if column and column not in data.item_side:
        raise ValueError(
            f"generative.category.column={column!r}: dataset {data.name!r} has no such item column "
            f"(has {sorted(data.item_side)})"
        )
    if column:
        return item_categories(titles, None, category_column=data.item_side[column])
    return item_categories(
        titles,
        cached_text_embeddings(encoder, titles, cfg.data.cache_dir),
        n_clusters=int(c.get("clusters", 100)),
        seed=int(cfg.seed),
    )


def _load(cfg: DictConfig):
    from generec.predict import load_model

    model, trained_on = load_model(cfg.checkpoint)
    datamodule = instantiate(cfg.data)
    datamodule.setup("predict")
    if trained_on and trained_on.get("fingerprint") != datamodule.data.fingerprint:
        raise ValueError(
            f"checkpoint={cfg.checkpoint} was trained on {trained_on.get('name')!r}, not on data={datamodule.name!r}"
            " with this preprocessing: item ids would not line up"
        )
    encoder = SentenceEncoder(
        cfg.generative.encoder.path, max_seq_length=cfg.generative.encoder.max_seq_length
    )
    return model, datamodule, encoder


def train(cfg: DictConfig) -> Path:
    """Trains the creator on (state after prefix -> next item) pairs and saves it to ``cfg.generator``."""
    if not cfg.generator:
        raise ValueError("task=train needs generator=<path to write the creator checkpoint>")
    model, dm, encoder = _load(cfg)
    g = cfg.generative
    titles = item_texts(dm.data, g.text_column)
    keywords = dm.data.item_side.get(g.keyword_column) if g.keyword_column else None
    t0 = time.perf_counter()
    states, targets = prefix_pairs(
        model, dm.data, dm.split.train_end, dm.max_len, g.train.max_pairs, cfg.seed
    )
    levels = list(g.train.text_levels)
    categories = None
    if "category" in levels:
        categories = training_categories(cfg, dm.data, encoder, titles)
    texts = instruction_table(encoder, titles, levels, cfg.seed, keywords, cfg.data.cache_dir, categories)
    space = g.creator.get("space", "item")
    table = creator_table(space, model, encoder, titles, cfg.data.cache_dir)
    has_vector = table[targets].abs().sum(1) > 0  # content space: items without text have no vector
    states, targets = states[has_vector], targets[has_vector]
    prep = time.perf_counter() - t0
    creator = Creator(table.shape[1], states.shape[1], texts.shape[-1], CreatorConfig(**g.creator))
    torch.manual_seed(cfg.seed)
    t1 = time.perf_counter()
    losses = creator.fit(states, targets, table, texts, seed=cfg.seed)
    extra = {
        "dataset_fingerprint": dm.data.fingerprint,
        "recommender_checkpoint": str(cfg.checkpoint),
        "pairs": int(len(targets)),
        "space": space,
        "text_encoder": encoder.path,
        "losses": losses,
        "prep_seconds": prep,
        "train_seconds": time.perf_counter() - t1,
    }
    path = creator.save(cfg.generator, extra)
    print(
        f"creator trained on {len(targets)} pairs in {extra['train_seconds']:.1f}s "
        f"(loss {losses[0]:.4f} -> {losses[-1]:.4f}); wrote {path}"
    )
    return path


def _user_history(cfg: DictConfig, data) -> list[int]:
    item_index = {str(t): i for i, t in enumerate(data.item_tokens)}
    if cfg.history is not None:
        missing = [str(i) for i in cfg.history if str(i) not in item_index]
        if missing:
            raise ValueError(f"history={missing[:5]}: unknown item ids")
        return [item_index[str(i)] for i in cfg.history]
    if cfg.user is None:
        raise ValueError("give user=<original user id> or history=[item ids]")
    users = {str(t): u for u, t in enumerate(data.user_tokens)}
    if str(cfg.user) not in users:
        raise ValueError(f"user={cfg.user}: unknown user id in dataset {data.name!r}")
    return data.sequence(users[str(cfg.user)]).tolist()


def fidelity_checks(cfg: DictConfig, model, instructor: Instructor) -> dict[str, Any]:
    """With ``+fidelity=default``: the fidelity checks gate the items and unsafe instructions are refused."""
    if not cfg.get("fidelity"):
        return {}
    if OmegaConf.select(cfg, "generative.creator.space", default="item") != "item":
        raise ValueError(
            "+fidelity checks score item-space vectors (user state . vector); with "
            "generative.creator.space=content they are not supported yet"
        )
    from generec.trust.fidelity import Verifier, build_checks
    from generec.trust.safety import InstructionGuard, text_scorer

    fcfg = OmegaConf.to_container(cfg.fidelity)
    safety = fcfg.get("safety", {})
    scorer = text_scorer(safety.get("text", "keywords"))
    with torch.inference_mode():
        table = model.item_embeddings().detach().float().cpu()
    checks = build_checks(
        fcfg,
        table,
        instructor.item_text_embeddings,
        instructor.item_texts,
        instructor.encoder,
        text_scorer=scorer,
    )
    guard = InstructionGuard(scorer, float(safety.get("threshold", 0.5)))
    return {"checks": Verifier(checks).pipeline_checks(), "instruction_guard": guard}


def generate(cfg: DictConfig) -> dict[str, Any]:
    """Guidance + items for one user, written as JSON to ``cfg.output``."""
    model, dm, encoder = _load(cfg)
    g = cfg.generative
    data = dm.data
    texts = item_texts(data, g.text_column)
    rewriter = None
    if g.get("rewriter") is not None:
        from generec.generative.rewriter import PromptRewriter

        rewriter = PromptRewriter.from_pretrained(**OmegaConf.to_container(g.rewriter))
    instructor = Instructor(
        encoder,
        texts,
        InstructorConfig(**g.instructor),
        cached_text_embeddings(encoder, texts, cfg.data.cache_dir),
        rewriter=rewriter,
    )
    space = g.creator.get("space", "item")
    creator = None
    if cfg.generator:
        creator, extra = Creator.load(cfg.generator, space=space)
        if extra.get("dataset_fingerprint") not in (None, data.fingerprint):
            raise ValueError(
                f"generator={cfg.generator} was trained on another dataset (fingerprint differs)"
            )
    image = title = None
    if g.image is not None:
        from generec.generative.content import ImageBackend

        image = ImageBackend.from_pretrained(**OmegaConf.to_container(g.image))
    if g.title is not None:
        from generec.generative.content import TitleBackend

        title = TitleBackend.from_pretrained(**OmegaConf.to_container(g.title))
    rec = GenerativeRecommender(
        model,
        instructor,
        creator,
        image_backend=image,
        title_backend=title,
        space=space,
        **fidelity_checks(cfg, model, instructor),
        **OmegaConf.to_container(g.pipeline),
    )
    history = _user_history(cfg, data)
    item_index = {str(t): i for i, t in enumerate(data.item_tokens)}
    feedback = [Feedback(item_index[str(k)], str(v)) for k, v in (cfg.feedback or {}).items()]
    t0 = time.perf_counter()
    result = rec.generate(history, cfg.instruction, feedback, seed=cfg.seed, mode=cfg.mode)
    seconds = time.perf_counter() - t0
    clean = instructor.item_texts
    out_dir = Path(cfg.output).parent
    items = []
    for k, item in enumerate(result.items):
        d = item.to_dict(clean)
        if item.image is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            img_path = out_dir / f"{Path(cfg.output).stem}_item{k}.png"
            item.image.save(img_path)
            d["image_path"] = str(img_path)
        items.append(d)
    guidance = result.guidance.to_dict()
    guidance.pop("user_state")
    guidance.pop("instruction_embedding")
    record = {
        "user": None if cfg.user is None else str(cfg.user),
        "history": [{"item": i, "item_id": str(data.item_tokens[i]), "text": clean[i]} for i in history],
        "guidance": guidance,
        "items": items,
        "retrieved": [r.to_dict(clean) for r in result.retrieved],
        "seconds": seconds,
    }
    source = result.guidance.source_item
    if source is not None:  # the page names the item being repurposed
        record["source"] = {"item": source, "item_id": str(data.item_tokens[source]), "text": clean[source]}
    atomic_write_text(Path(cfg.output), json.dumps(record, indent=1, ensure_ascii=False))
    page = html_path_for(cfg.output, cfg.get("html"))
    if page is not None:
        write_result_page(record, page, base_dir=out_dir)
    written = f"{cfg.output}" + (f", {page}" if page is not None else "")
    log.info("generate result: %s", written)
    print(f"mode={result.guidance.mode}: {len(items)} items for {len(history)}-item history -> {written}")
    return record


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="generate")
def main(cfg: DictConfig) -> None:
    np.random.seed(cfg.seed)
    if cfg.task == "train":
        train(cfg)
    elif cfg.task == "generate":
        from generec.trust.safety import UnsafeInstructionError

        try:
            generate(cfg)
        except UnsafeInstructionError as e:  # a refusal is an answer, not a crash
            print(e)
            raise SystemExit(2) from None
    else:
        raise ValueError(f"task must be 'generate' or 'train', got {cfg.task!r}")


if __name__ == "__main__":
    main()

"""The creator in the content space (MiniLM embeddings of real ml-100k titles), and the space checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generec.data.preprocess import load_dataset
from generec.generative.creator import Creator, CreatorConfig, SpaceMismatchError
from generec.generative.evaluate import creation_scores, novelty_stats, prefix_pairs, ranking_metrics
from generec.generative.instructor import Instructor, InstructorConfig
from generec.generative.pipeline import GenerativeRecommender, catalogue_nn_distance
from generec.generative.run import creator_table
from generec.models.sasrec import SASRec


@pytest.fixture(scope="module")
def ml100k(shared_data_dir, encoder, tmp_path_factory):
    """Real ml-100k sequences and titles; a small random SASRec gives the user states (only the seam is used)."""
    data = load_dataset("ml-100k", data_dir=shared_data_dir, download=False, use_cache=False)
    torch.manual_seed(0)
    model = SASRec(num_items=data.num_items, max_len=20, hidden_size=16, num_heads=2, inner_size=32).eval()
    titles = [str(t) for t in data.item_side["title"]]
    lengths = np.diff(data.offsets)
    states, targets = prefix_pairs(model, data, lengths - 2, model.max_len, max_pairs=4000, seed=0)
    table = creator_table("content", model, encoder, titles, str(tmp_path_factory.mktemp("cache")))
    return {
        "data": data,
        "model": model,
        "titles": titles,
        "states": states,
        "targets": targets,
        "table": table,
    }


@pytest.fixture(scope="module")
def content_creator(ml100k):
    d = ml100k
    torch.manual_seed(0)
    cfg = CreatorConfig(
        space="content", hidden=384, layers=2, steps=400, batch_size=128, lr=2e-3, sample_steps=5
    )
    creator = Creator(d["table"].shape[1], d["states"].shape[1], d["table"].shape[1], cfg)
    # text condition: the target's own title embedding (the "title" instruction level)
    losses = creator.fit(d["states"], d["targets"], d["table"], d["table"][:, None], seed=0, log_every=100)
    return creator, losses


def test_content_table_is_the_unit_norm_title_embedding(ml100k, encoder):
    table = ml100k["table"]
    assert table.shape == (len(ml100k["titles"]), encoder.dim) and table[0].abs().sum() == 0
    assert torch.allclose(table[1:].norm(dim=1), torch.ones(table.shape[0] - 1), atol=1e-4)
    assert torch.allclose(table[1], encoder.encode([ml100k["titles"][1]])[0], atol=1e-5)
    with pytest.raises(ValueError, match="item or content"):
        creator_table("pixels", ml100k["model"], encoder, ml100k["titles"])


def test_content_space_loss_falls_on_real_data(content_creator, ml100k):
    creator, losses = content_creator
    # predicting zero noise scores 1.0; measured 0.715 -> 0.408 over 4 windows of 100 steps
    assert losses[-1] < 0.75 * losses[0] and losses[-1] < 0.6, losses
    # generated vectors live in the 384-d content space and are scored against that table
    v = creator.sample(ml100k["states"][:50], ml100k["table"][ml100k["targets"][:50]], seed=0)
    assert v.shape == (50, ml100k["table"].shape[1])
    m = ranking_metrics(creation_scores(v, ml100k["table"]), ml100k["targets"][:50], (10,))
    stats = novelty_stats(v, ml100k["table"], 0.5 * catalogue_nn_distance(ml100k["table"]))
    assert 0.0 <= m["hr@10"] <= 1.0 and stats["novelty_median"] > 0


def test_space_is_saved_and_a_mismatch_is_refused(content_creator, tmp_path):
    creator, _ = content_creator
    path = creator.save(tmp_path / "content.pt")
    loaded, _ = Creator.load(path, space="content")
    assert loaded.space == "content"
    with pytest.raises(SpaceMismatchError, match="trained in the 'content' space .* uses the 'item' space"):
        Creator.load(path, space="item")
    # a checkpoint written before spaces existed is an item-space one
    ckpt = torch.load(path, weights_only=False)
    del ckpt["space"], ckpt["config"]["space"]
    torch.save(ckpt, tmp_path / "old.pt")
    assert Creator.load(tmp_path / "old.pt")[0].space == "item"
    with pytest.raises(ValueError, match="space must be one of"):
        Creator(4, 4, 4, CreatorConfig(space="pixels"))
    # a rank-deficient noise prediction diverges at sampling: refused
    with pytest.raises(ValueError, match="hidden=256 < dim=384"):
        Creator(384, 16, 384, CreatorConfig(space="content"))


def test_pipeline_generates_in_the_content_space(content_creator, ml100k, encoder):
    creator, _ = content_creator
    d = ml100k
    ins = Instructor(encoder, d["titles"], InstructorConfig(t_retrieve=2.0, t_repurpose=2.0), d["table"])
    with pytest.raises(SpaceMismatchError, match="content"):
        GenerativeRecommender(d["model"], ins, creator, space="item")
    rec = GenerativeRecommender(d["model"], ins, creator, n_items=2)
    assert rec.space == "content" and rec.table is ins.item_text_embeddings
    history = d["data"].sequence(0)[:10].tolist()
    r = rec.generate(history, "a space opera with robots", seed=1)  # thresholds > 1: always create
    assert r.guidance.mode == "create" and [i.kind for i in r.items] == ["created"] * 2
    item = r.items[0]
    v = torch.tensor(item.vector)
    assert (
        v.shape == (d["table"].shape[1],) and item.provenance["space"] == "sentence embeddings of item text"
    )
    nearest = int(item.nearest[0][0])
    assert item.novelty == pytest.approx(float((v - d["table"][nearest]).norm()), abs=1e-4)
    assert item.score == pytest.approx(float(r.guidance.user_state @ rec.items[nearest]), abs=1e-5)
    r = rec.generate(history, "a space opera with robots", seed=1, mode="repurpose")
    assert r.items[0].kind == "repurposed" and len(r.items[0].vector) == d["table"].shape[1]


def test_fidelity_checks_are_refused_in_the_content_space():
    from omegaconf import OmegaConf

    from generec.generative.run import fidelity_checks

    cfg = OmegaConf.create({"fidelity": {"novelty": {}}, "generative": {"creator": {"space": "content"}}})
    with pytest.raises(ValueError, match="item-space vectors"):
        fidelity_checks(cfg, None, None)

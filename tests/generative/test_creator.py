"""AI creator and editor on real Beauty data, in the content space (MiniLM embeddings of real titles).

Small enough for a unit test: the 300 most popular items, user state = embedding of the previous
item's title, target = the next item, simulated instruction = the target's keyword text.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generec.data.preprocess import load_dataset
from generec.data.types import SequenceData
from generec.generative.creator import Creator, CreatorConfig, nearest_items
from generec.generative.editor import Editor, select_content
from generec.generative.evaluate import (
    creation_scores,
    prefix_pairs,
    ranking_metrics,
    simulate_instructions,
    strength_curve,
)
from generec.models.sasrec import SASRec

# Trains SASRec and the creator on real Beauty data and encodes 12k titles: minutes on 2 CPU cores.
pytestmark = pytest.mark.slow

N_ITEMS = 300


@pytest.fixture(scope="module")
def beauty_content(shared_data_dir, encoder):
    data = load_dataset("beauty", data_dir=shared_data_dir, download=False, use_cache=False)
    counts = np.bincount(data.items, minlength=data.num_items + 1)
    counts[0] = 0
    popular = np.argsort(-counts, kind="stable")[:N_ITEMS]  # original ids of the kept items
    remap = np.zeros(data.num_items + 1, dtype=np.int64)
    remap[popular] = np.arange(1, N_ITEMS + 1)
    titles = [""] + [data.item_side["title"][i] for i in popular]
    keywords = [""] + [data.item_side["idgenrec_text"][i] for i in popular]
    prev, nxt = [], []
    for u in range(data.num_users):
        seq = remap[data.sequence(u)]
        seq = seq[seq > 0]
        prev.extend(seq[:-1].tolist())
        nxt.extend(seq[1:].tolist())
    prev, nxt = torch.tensor(prev), torch.tensor(nxt)
    keep = prev != nxt
    prev, nxt = prev[keep], nxt[keep]
    table = encoder.encode(titles)  # [I+1, 384]: the space generated in
    instr = encoder.encode(simulate_instructions(range(N_ITEMS + 1), titles, "keywords", keywords=keywords))
    instr[0] = 0
    perm = torch.randperm(len(nxt), generator=torch.Generator().manual_seed(0))
    test, train = perm[:300], perm[300:]
    return {"table": table, "instr": instr, "prev": prev, "nxt": nxt, "train": train, "test": test}


@pytest.fixture(scope="module")
def trained(beauty_content):
    d = beauty_content
    torch.manual_seed(0)
    # hidden >= 384: with hidden=128 the noise prediction had rank 128 in this 384-d space, sampling diverged
    # and the creator ignored its conditions (hr@10 0.033 = random, the xfails these tests carried before)
    cfg = CreatorConfig(hidden=384, layers=2, steps=800, batch_size=128, lr=2e-3, sample_steps=10)
    creator = Creator(384, 384, 384, cfg)
    states = d["table"][d["prev"][d["train"]]]  # [N, 384]
    losses = creator.fit(states, d["nxt"][d["train"]], d["table"], d["instr"][:, None], seed=0, log_every=50)
    return creator, losses


def test_denoiser_loss_falls_on_real_data(trained):
    _, losses = trained
    # predicting zero noise scores MSE 1.0; eps-MSE keeps a floor at high-noise timesteps in 384-d
    assert losses[-1] < 0.85 * losses[0] and losses[-1] < 0.8, losses


def test_instruction_beats_no_instruction_and_random(beauty_content, trained):
    """Measured 2026-12: hr@10 0.213 with the target's keywords vs 0.040 without (random 0.033)."""
    d, (creator, _) = beauty_content, trained
    test = d["test"]
    state, target = d["table"][d["prev"][test]], d["nxt"][test]
    with_text = creator.sample(state, d["instr"][target], seed=0)  # [T, 384]
    without = creator.sample(state, None, seed=0)
    hr_text = ranking_metrics(creation_scores(with_text, d["table"]), target, (10,))["hr@10"]
    hr_none = ranking_metrics(creation_scores(without, d["table"]), target, (10,))["hr@10"]
    assert hr_text > hr_none + 0.1, (hr_text, hr_none)
    assert hr_text > 3 * 10 / N_ITEMS, hr_text


def test_editor_moves_away_from_source_monotonically(beauty_content, trained):
    d, (creator, _) = beauty_content, trained
    test = d["test"][:200]
    src, target = d["prev"][test], d["nxt"][test]
    rows = strength_curve(
        Editor(creator),
        src,
        d["table"][src],
        d["instr"][target],
        target,
        d["table"],
        [0.0, 0.25, 0.5, 0.75, 1.0],
        seed=0,
    )
    dist = [r["dist_to_source"] for r in rows]
    assert dist[0] == 0.0 and rows[0]["source_in_topk"] == 1.0
    assert all(a < b for a, b in zip(dist, dist[1:], strict=False)), dist


def test_editor_reaches_the_target_at_high_strength(beauty_content, trained):
    """Measured 2026-12: target in the top-10 for 0.270 of users at strength 1 vs 0.205 at strength 0."""
    d, (creator, _) = beauty_content, trained
    test = d["test"][:200]
    src, target = d["prev"][test], d["nxt"][test]
    rows = strength_curve(
        Editor(creator), src, d["table"][src], d["instr"][target], target, d["table"], [0.0, 1.0], seed=0
    )
    assert rows[-1]["target_in_topk"] > rows[0]["target_in_topk"], rows


def test_creator_save_load_and_determinism(trained, tmp_path, beauty_content):
    creator, _ = trained
    state = beauty_content["table"][1:3]
    a = creator.sample(state, None, seed=5)
    loaded, extra = Creator.load(creator.save(tmp_path / "c.pt", {"note": "x"}))
    assert extra == {"note": "x"}
    assert torch.allclose(loaded.sample(state, None, seed=5), a, atol=1e-5)
    assert not torch.allclose(creator.sample(state, None, seed=6), a)


def test_nearest_items_and_content_selection():
    table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    ids, dist = nearest_items(torch.tensor([[0.9, 0.0]]), table, 2)
    assert ids.tolist() == [[1, 3]] and dist[0, 0] == pytest.approx(0.1)
    ids, _ = nearest_items(torch.tensor([[0.9, 0.0]]), table, 2, exclude=torch.tensor([[1]]))
    assert ids.tolist() == [[3, 2]]
    order, cos = select_content(torch.tensor([[0.0, 1.0], [1.0, 0.1], [-1.0, 0.0]]), torch.tensor([1.0, 0.0]))
    assert order.tolist() == [1, 0, 2] and cos[1] > 0.99


def test_prefix_pairs_use_the_encode_seam():
    data = SequenceData(
        name="toy",
        items=np.array([1, 2, 3, 4, 2, 3, 1], dtype=np.int64),
        offsets=np.array([0, 4, 7]),
        user_tokens=np.array(["a", "b"], dtype=object),
        item_tokens=np.array(["[PAD]", "x", "y", "z", "w"], dtype=object),
    )
    torch.manual_seed(0)
    model = SASRec(num_items=4, max_len=5, hidden_size=8, num_heads=2, inner_size=16).eval()
    train_end = np.array([2, 3])  # user a trains on [1, 2], user b on [2, 3, 1]
    states, targets = prefix_pairs(model, data, train_end, max_len=5)
    assert targets.tolist() == [2, 3, 1]
    with torch.inference_mode():
        want = model.encode({"input_ids": torch.tensor([[0, 0, 0, 2, 3]])})[0]
    assert torch.allclose(states[2], want, atol=1e-6)

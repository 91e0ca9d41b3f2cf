"""The instruction simulator's specificity ladder, derived categories, edit instructions and the fused
retrieval baseline (generec/generative/evaluate.py, categories.py)."""

from __future__ import annotations

import random

import pytest
import torch

from generec.generative.categories import cluster_names, item_categories, title_words
from generec.generative.evaluate import (
    SPECIFICITY_LEVELS,
    edit_instructions,
    fused_scores,
    paraphrase_title,
    simulate_instructions,
)

TITLES = [
    "",
    "OPI Nail Lacquer, Big Apple Red, 0.5 Fluid Ounce",
    "Essie Nail Polish Ballet Slippers 0.46 oz",
    "China Glaze Nail Lacquer Ruby Pumps",
    "Neutrogena Hydro Boost Water Gel Face Moisturizer 1.7 oz",
    "CeraVe Daily Moisturizing Lotion for Dry Skin, 12 Ounce",
    "Olay Regenerist Micro-Sculpting Face Moisturizer Cream",
    "Maybelline Great Lash Mascara, Blackest Black",
    "L'Oreal Voluminous Mascara Carbon Black",
    "Covergirl LashBlast Volume Mascara Black",
]


def test_title_words_drop_sizes_counts_and_function_words() -> None:
    assert title_words("OPI Nail Lacquer, Big Apple Red, 0.5 Fluid Ounce") == [
        "opi",
        "nail",
        "lacquer",
        "big",
        "apple",
        "red",
        "fluid",
    ]
    assert title_words("3 Pack of 12 oz") == []


def test_cluster_names_pick_words_frequent_in_the_cluster_and_rare_elsewhere() -> None:
    labels = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    names = cluster_names(TITLES[1:], labels, 3, words_per_name=2, min_count=2)
    # ties in tf-idf are broken alphabetically; words in one title only (min_count=2) never name a cluster
    assert names == ["nail lacquer", "face moisturizer", "black mascara"]


def test_item_categories_from_embeddings_group_items_of_one_kind() -> None:
    # three tight, well separated groups of embeddings (rows 1-3, 4-6, 7-9); row 0 is padding
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(3, 16)
    emb = torch.cat(
        [torch.zeros(1, 16)] + [centres[i] + 0.01 * torch.randn(3, 16, generator=gen) for i in range(3)]
    )
    cats = item_categories(TITLES, emb, n_clusters=3, seed=0)
    assert cats[0] == ""
    assert len({cats[1], cats[2], cats[3]}) == 1 and len({cats[4], cats[5], cats[6]}) == 1
    assert len({cats[1], cats[4], cats[7]}) == 3
    assert "nail" in cats[1].split() and "mascara" in cats[7].split()


def test_item_categories_use_the_dataset_column_when_given() -> None:
    column = ["", "Comedy|Drama", "Horror"]
    assert item_categories(["", "a", "b"], torch.zeros(3, 4), category_column=column) == [
        "",
        "Comedy Drama",
        "Horror",
    ]


def test_item_categories_refuse_more_clusters_than_items() -> None:
    with pytest.raises(ValueError, match="n_clusters"):
        item_categories(TITLES, torch.randn(len(TITLES), 8), n_clusters=50)


def test_paraphrase_keeps_only_title_words_and_is_seeded() -> None:
    title = TITLES[4]
    a = paraphrase_title(title, random.Random(3))
    assert a == paraphrase_title(title, random.Random(3))
    words = set(title_words(title))
    assert set(a.replace(" from ", " ").split()) <= words
    assert a != " ".join(title_words(title))
    assert len(a.split()) >= 2


def test_every_level_simulates_and_category_needs_categories() -> None:
    cats = ["", *(["nail polish"] * 3), *(["moisturizer"] * 3), *(["mascara"] * 3)]
    targets = [1, 4, 7]
    for level in SPECIFICITY_LEVELS:
        out = simulate_instructions(targets, TITLES, level, seed=0, categories=cats)
        assert len(out) == 3
        assert (level == "none") == all(s == "" for s in out)
    cat = simulate_instructions(targets, TITLES, "category", seed=0, categories=cats)
    assert [c.split()[-1] for c in cat] == ["polish", "moisturizer", "mascara"]
    with pytest.raises(ValueError, match="categories"):
        simulate_instructions(targets, TITLES, "category")
    with pytest.raises(ValueError, match="level"):
        simulate_instructions(targets, TITLES, "vague")


def test_edit_instruction_names_what_the_target_has_and_the_source_lacks() -> None:
    (text,) = edit_instructions([1], [3], TITLES, seed=0)
    new = set(text.split())
    assert {"china", "glaze"} <= new
    assert not new & {"nail", "lacquer"}  # shared with the source, so not part of the edit


def test_fused_scores_mix_the_recommender_and_the_instruction() -> None:
    rec = torch.tensor([[0.0, 5.0, 1.0, 0.0, 0.0]])
    text = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.9]])
    assert fused_scores(rec, text, weight=0.0)[0, 1:].argmax() == 0
    assert fused_scores(rec, text, weight=10.0)[0, 1:].argmax() == 3
    # per-user standardisation: scaling one user's scores does not change the fused ranking
    torch.testing.assert_close(fused_scores(rec * 7, text), fused_scores(rec, text))


def test_training_categories_take_the_configured_column_and_name_a_missing_one() -> None:
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from generec.generative.run import training_categories

    data = SimpleNamespace(name="toy", item_side={"class": ["", "Comedy|Drama", "Horror"]})
    cfg = OmegaConf.create(
        {"seed": 0, "data": {"cache_dir": None}, "generative": {"category": {"column": "class"}}}
    )
    assert training_categories(cfg, data, encoder=None, titles=["", "a", "b"]) == [
        "",
        "Comedy Drama",
        "Horror",
    ]
    cfg.generative.category.column = "genre"
    with pytest.raises(ValueError, match=r"generative.category.column='genre'.*has no such item column"):
        training_categories(cfg, data, encoder=None, titles=["", "a", "b"])

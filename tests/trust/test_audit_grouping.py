"""Which audited runs are ranked together: same evaluation data, whatever their training loader."""

from __future__ import annotations

from generec.trust.cli import audit_data_key

BASE = {"registry": "ml-100k", "max_len": 50, "split": "loo", "mask_history": False, "seed": 1}


def test_training_loader_settings_do_not_split_candidates():
    other = {
        **BASE,
        "batch_size": 64,
        "window_stride": 10,
        "length_bucketing": True,
        "protocol": "prefixes",
        "seed": 7,
    }
    assert audit_data_key("fp", {**BASE, "batch_size": 256}) == audit_data_key("fp", other)


def test_evaluation_settings_and_data_do_split_candidates():
    key = audit_data_key("fp", BASE)
    assert audit_data_key("other-fp", BASE) != key
    assert audit_data_key("fp", {**BASE, "max_len": 20}) != key
    assert audit_data_key("fp", {**BASE, "mask_history": True}) != key
    assert audit_data_key("fp", {**BASE, "cold_start_ratio": 0.25}) != key


def test_seeded_user_split_keeps_the_seed():
    comirec = {**BASE, "split": "comirec"}
    assert audit_data_key("fp", comirec) != audit_data_key("fp", {**comirec, "seed": 2})

"""robustness/injection_asr: the injection suite as a trust metric, on real ml-100k titles."""

from __future__ import annotations

import os

import pytest
import torch
from fidelity_catalog import TITLES

from generec.data.datamodule import SeqDataModule
from generec.models.sasrec import SASRec
from generec.trust.audit import AuditConfig, AuditData, audit_model
from generec.trust.index import absolute_index
from generec.trust.injection_audit import InjectionProbe, injection_attack_success, user_instruction


def test_defences_cut_the_attack_success_rate(encoder, tiny_model):
    probe = InjectionProbe.build(TITLES, encoder)
    histories, targets = [[1, 3], [2, 5, 6], [7, 8]], [4, 1, 2]
    none, table_none = injection_attack_success(tiny_model, probe, histories, targets, "none")
    full, table_all = injection_attack_success(tiny_model, probe, histories, targets, "all")
    assert table_none["all"]["n"] == table_all["all"]["n"] == 3 * 7 * 3  # users x categories x carriers
    assert none >= 0.9  # undefended: the raw text lands on the instruction line
    assert full < none
    with pytest.raises(ValueError, match="injection_defences"):
        injection_attack_success(tiny_model, probe, histories, targets, "most")


def test_user_instruction_uses_the_target_title():
    assert user_instruction("Toy Story (1995)") == "something like Toy Story (1995)"
    assert user_instruction("") == "something new"


def test_audit_reports_injection_asr_on_ml100k(encoder, shared_data_dir):
    os.environ["GENEREC_DATA_DIR"] = str(shared_data_dir)
    dm = SeqDataModule(registry="ml-100k", max_len=20, batch_size=128)
    cfg = AuditConfig(
        max_users=40,
        dimensions=("utility", "robustness"),
        perturbations=("replace",),
        rates=(0.2,),
        injection_users=2,
    )
    data = AuditData.from_datamodule(dm, cfg)
    assert data.item_texts is not None and len(data.item_texts) == dm.num_items + 1
    data._probe = InjectionProbe.build(data.item_texts, encoder)  # the session's encoder, no reload
    torch.manual_seed(0)
    model = SASRec(dm.num_items, max_len=20, hidden_size=16, num_layers=1, num_heads=1, inner_size=32)
    result = audit_model(model, data, cfg)
    asr = result.metrics["robustness/injection_asr"]
    assert 0.0 <= asr <= 1.0
    assert result.details["injection"]["users"] == 2
    assert result.details["injection"]["table"]["all"]["n"] == 2 * 7 * 3
    assert 0.0 <= absolute_index(result.metrics).dimensions["robustness"] <= 1.0


def test_injection_audit_without_item_text_names_the_setting(shared_data_dir):
    os.environ["GENEREC_DATA_DIR"] = str(shared_data_dir)
    dm = SeqDataModule(registry="ml-100k", max_len=20, batch_size=128)
    cfg = AuditConfig(max_users=5, dimensions=("robustness",), injection_users=1, text_column="synopsis")
    data = AuditData.from_datamodule(dm, cfg)
    model = SASRec(dm.num_items, max_len=20, hidden_size=8, num_layers=1, num_heads=1, inner_size=16)
    with pytest.raises(ValueError, match="audit.text_column"):
        audit_model(model, data, cfg)

"""Every model class rebuilds from its own saved hyper-parameters (what `predict` and `audit` do)."""

from __future__ import annotations

import importlib

import pytest
import torch

from generec.predict import load_model

MODELS = [
    "generec.models.sasrec.SASRec",
    "generec.models.bert4rec.BERT4Rec",
    "generec.models.gru4rec.GRU4Rec",
    "generec.models.ac_sasrec.ACSASRec",
    "generec.models.ac_bert4rec.ACBERT4Rec",
    "generec.models.cl4srec.CL4SRec",
    "generec.models.coserec.CoSeRec",
    "generec.models.iclrec.ICLRec",
    "generec.models.duorec.DuoRec",
    "generec.models.multi_interest.comirec.ComiRecSA",
    "generec.models.multi_interest.comirec.ComiRecDR",
    "generec.models.multi_interest.mind.MIND",
]


@pytest.mark.parametrize("target", MODELS, ids=lambda t: t.rsplit(".", 1)[1])
def test_model_reloads_from_its_checkpoint(target, tmp_path):
    module, name = target.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    torch.manual_seed(0)
    model = cls(num_items=40, max_len=8).eval()
    # the entries Lightning and SeqRecModule.on_save_checkpoint write
    ckpt = {
        "generec_model_class": target,
        "hyper_parameters": dict(model.hparams),
        "state_dict": model.state_dict(),
    }
    torch.save(ckpt, tmp_path / "model.ckpt")
    again, _ = load_model(tmp_path / "model.ckpt")
    assert type(again) is cls
    batch = {"input_ids": torch.tensor([[0, 0, 3, 5, 7, 9, 11, 2], [0, 0, 0, 0, 0, 1, 4, 6]])}
    with torch.no_grad():
        torch.testing.assert_close(again.score(batch), model.score(batch))

"""TrustAuditCallback in a short real Lightning run on ml-100k, selection by trust/index, then `generec audit`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from generec.data.datamodule import SeqDataModule
from generec.models.sasrec import SASRec
from generec.predict import load_model
from generec.trust.audit import AuditData, audit_model
from generec.trust.callbacks import TrustAuditCallback
from generec.trust.cli import main as audit_main
from generec.trust.index import absolute_index

AUDIT = {"max_users": 150, "perturbations": ["replace"], "rates": [0.2]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_data_dir):
    os.environ["GENEREC_DATA_DIR"] = str(shared_data_dir)
    out = Path(tmp_path_factory.mktemp("trust_run"))
    L.seed_everything(0)
    dm = SeqDataModule(registry="ml-100k", max_len=20, batch_size=128)
    dm.setup("fit")
    model = SASRec(dm.num_items, max_len=20, hidden_size=32, num_layers=1, num_heads=1, inner_size=64)
    audit_cb = TrustAuditCallback(audit=AUDIT)
    ckpt = ModelCheckpoint(dirpath=out, filename="best", monitor="trust/index", mode="max", save_top_k=1)
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=2,
        accelerator="cpu",
        callbacks=[audit_cb, ckpt],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    return dm, audit_cb, ckpt, trainer, out


def test_callback_logs_trust_and_checkpoint_selects_by_it(trained):
    dm, audit_cb, ckpt, trainer, _ = trained
    assert [h["epoch"] for h in audit_cb.history] == [0, 1]
    for key in ("trust/index", "trust/utility", "trust/bias", "trust/privacy", "trust/bias/exposure_gini"):
        assert key in trainer.callback_metrics, key
    indices = [h["index"] for h in audit_cb.history]
    assert ckpt.best_model_score.item() == pytest.approx(max(indices), abs=1e-6)
    assert audit_cb.best_epoch(by="logged") == indices.index(max(indices))
    # The selected checkpoint, reloaded and re-audited, gives the index it was selected with.
    model, _ = load_model(ckpt.best_model_path)
    data = AuditData.from_datamodule(dm, audit_cb.cfg)
    again = absolute_index(audit_model(model, data, audit_cb.cfg).metrics, audit_cb.weights).index
    assert again == pytest.approx(ckpt.best_model_score.item(), abs=1e-5)
    scores = audit_cb.ecdf_scores()
    assert set(scores) == {0, 1} and all(0 < s.index <= 1 for s in scores.values())
    # A validate() after fitting logs trust/* but does not add a candidate epoch.
    logged = trainer.validate(model, datamodule=dm, verbose=False)[0]
    assert logged["trust/index"] == pytest.approx(again, abs=1e-5)
    assert len(audit_cb.history) == 2


def test_audit_cli_writes_report_and_record(trained, tmp_path):
    dm, _, ckpt, _, _ = trained
    record = {
        "run_id": "test-run",
        "model": "sasrec",
        "dataset": dm.dataset_record(),
        "checkpoint": ckpt.best_model_path,
        "config": {
            "data": {
                "_target_": "generec.data.datamodule.SeqDataModule",
                "registry": "ml-100k",
                "max_len": 20,
            }
        },
    }
    path = tmp_path / "test-run.json"
    path.write_text(json.dumps(record))
    overrides = [
        f"results={path}",
        # every user: on a 100-user sample this 4-batch model can score NDCG@10 = 0, and a relative
        # robustness drop is undefined there (the dimension is then left out, not scored)
        "audit.max_users=null",
        "audit.compression=[int8,prune50]",
        "audit.rates=[0.2]",
    ]
    assert audit_main([*overrides, "audit.perturbations=[mask]"]) == 0
    trust = json.loads(path.read_text())["trust"]
    assert set(trust["variants"]) == {"original", "int8", "prune50"}
    assert {"index", "dimensions", "metrics", "weights", "absolute_index"} <= set(trust)
    assert set(trust["dimensions"]) == {"utility", "fidelity", "privacy", "bias", "robustness"}
    assert 0 < trust["index"] <= 1
    assert "bias/gender_disparity" in trust["metrics"] and "bias/age_disparity" in trust["metrics"]
    md = (tmp_path / "test-run.trust.md").read_text()
    assert "## Compression" in md and "prune50" in md
    assert (tmp_path / "test-run.trust.html").read_text().count("data:image/png;base64") == 4
    assert {p.name for p in (tmp_path / "test-run.trust_plots").iterdir()} == {
        "radar.png",
        "compression.png",
        "popularity.png",
        "groups.png",
    }
    assert torch.isfinite(torch.tensor(trust["index"]))

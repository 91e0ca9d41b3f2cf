"""FidelityCallback in a short Lightning run on ml-100k, and `generec check` on a generation result."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import lightning as L
import pytest
import torch

from generec.cli import main as generec_main
from generec.data.datamodule import SeqDataModule
from generec.models.sasrec import SASRec
from generec.trust.check_cli import CheckInputError, read_result
from generec.trust.fidelity_callback import FidelityCallback


class HashEncoder:
    """Bag of hashed words, unit norm: a fast stand-in for MiniLM where only the plumbing is tested."""

    path = "hash-encoder"
    dim = 64

    def encode(self, texts):
        out = torch.zeros(len(texts), self.dim)
        for i, t in enumerate(texts):
            for w in str(t).lower().split():
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        return torch.nn.functional.normalize(out, dim=-1)


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_data_dir):
    os.environ["GENEREC_DATA_DIR"] = str(shared_data_dir)
    out = Path(tmp_path_factory.mktemp("fidelity_run"))
    L.seed_everything(0)
    dm = SeqDataModule(registry="ml-100k", max_len=20, batch_size=128)
    dm.setup("fit")
    model = SASRec(dm.num_items, max_len=20, hidden_size=16, num_layers=1, num_heads=1, inner_size=32)
    callback = FidelityCallback(users=24, encoder=HashEncoder())
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        accelerator="cpu",
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        default_root_dir=out,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(out / "model.ckpt")
    return dm, model, callback, trainer, out


def test_callback_logs_fidelity_for_fixed_users(run):
    dm, model, callback, trainer, _ = run
    for key in (
        "fidelity/pass_rate",
        "fidelity/preference/pass_rate",
        "fidelity/preference/score",
        "fidelity/novelty/pass_rate",
        "fidelity/instruction/score",
        "fidelity/safety/pass_rate",
    ):
        assert key in trainer.callback_metrics, key
    # retrieval (no creator): the recommender's top item is its own best -> preference percentile ~ 1
    assert trainer.callback_metrics["fidelity/preference/score"] > 0.99
    assert callback.history[0]["epoch"] == 0
    # with a creator in the same item space, created items are checked too; same users, same numbers twice
    from generec.generative.creator import Creator, CreatorConfig

    torch.manual_seed(0)
    callback.creator = Creator(16, 16, HashEncoder.dim, CreatorConfig(hidden=16, layers=1, sample_steps=2))
    first = callback.evaluate(model, callback._fixed)
    assert first == callback.evaluate(model, callback._fixed)
    assert 0.0 <= first["fidelity/novelty/pass_rate"] <= 1.0
    callback.creator = None


def _result(path: Path, vector, history=(1, 2, 3)) -> Path:
    rec = {
        "user": None,
        "history": [{"item": i, "item_id": str(i), "text": ""} for i in history],
        "guidance": {"mode": "create", "instruction": "a funny movie"},
        "items": [
            {"kind": "created", "score": 0.0, "vector": vector, "nearest": []},
            {"kind": "retrieved", "score": 0.0, "item_id": 7},
        ],
    }
    path.write_text(json.dumps(rec))
    return path


def test_generec_check_flags_a_copy_and_writes_a_report(run, monkeypatch, capsys):
    _, model, _, _, out = run
    monkeypatch.setattr("generec.generative.instructor.SentenceEncoder", lambda *a, **k: HashEncoder())
    monkeypatch.setenv("GENEREC_CACHE_DIR", str(out / "cache"))  # text embeddings cache stays in tmp
    with torch.inference_mode():
        copy_of_5 = model.item_embeddings()[5].tolist()
    result = _result(out / "gen.json", copy_of_5)
    rc = generec_main(["check", str(result), "--checkpoint", str(out / "model.ckpt"), "--data", "ml-100k"])
    text = capsys.readouterr().out
    assert rc == 0 and "near-copy of item 5" in text and "items passing every check" in text
    report = json.loads((out / "gen.check.json").read_text())
    novelty = {r["name"]: r for r in report["items"][0]}["novelty"]
    assert not novelty["passed"] and novelty["details"]["nearest_item"] == 5
    assert report["instruction_safety"]["passed"] and len(report["items"]) == 2


def test_generec_check_names_file_and_field_on_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"history": [], "guidance": {"mode": "create"}, "items": []}))
    with pytest.raises(CheckInputError, match=r"bad.json: missing field guidance.'instruction'"):
        read_result(bad)
    bad.write_text(json.dumps({"history": [{"item": "x"}], "guidance": {}, "items": []}))
    with pytest.raises(CheckInputError, match=r"bad.json: field history\[0\].'item' must be"):
        read_result(bad)
    bad.write_text("{not json")
    rc = generec_main(["check", str(bad), "--checkpoint", "none.ckpt", "--data", "ml-100k"])
    assert rc == 2 and "bad.json:1: not valid JSON" in capsys.readouterr().out


def test_callbacks_fidelity_preset_instantiates():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from generec.paths import CONF_DIR

    cfg = OmegaConf.load(CONF_DIR / "callbacks" / "fidelity.yaml")
    cb = instantiate(cfg.fidelity, encoder=HashEncoder())
    assert isinstance(cb, FidelityCallback) and cb.users == 64
    assert set(cb.cfg) >= {"preference", "instruction", "novelty", "safety"}  # conf/fidelity/default.yaml


def test_generate_wires_checks_and_guard_from_config(run):
    from omegaconf import OmegaConf

    from generec.generative.instructor import Instructor
    from generec.generative.run import fidelity_checks
    from generec.paths import CONF_DIR
    from generec.trust.safety import InstructionGuard

    dm, model, *_ = run
    ins = Instructor(HashEncoder(), [str(t) for t in dm.data.item_side["title"]])
    assert fidelity_checks(OmegaConf.create({"fidelity": None}), model, ins) == {}
    cfg = OmegaConf.create({"fidelity": OmegaConf.load(CONF_DIR / "fidelity" / "default.yaml")})
    extra = fidelity_checks(cfg, model, ins)
    assert len(extra["checks"]) == 4 and isinstance(extra["instruction_guard"], InstructionGuard)

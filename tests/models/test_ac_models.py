import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from generec.data.datamodule import SeqDataModule
from generec.eval.metrics import MetricAccumulator, target_ranks
from generec.eval.ranking import prepare_scores
from generec.models.ac_bert4rec import ACBERT4Rec
from generec.models.ac_sasrec import ACSASRec

REPO = Path(__file__).resolve().parents[2]

BATCH = {
    "input_ids": torch.tensor([[0, 0, 1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8]]),
    "targets": torch.tensor([[0, 0, 2, 3, 4, 5, 6, 7], [0, 0, 0, 0, 0, 8, 9, 10], [2, 3, 4, 5, 6, 7, 8, 9]]),
}
MODELS = [ACSASRec, ACBERT4Rec]


def tiny(cls, **kw):
    torch.manual_seed(0)
    return cls(num_items=30, max_len=8, hidden_size=16, num_heads=2, inner_size=32, dropout=0.0, **kw)


@pytest.mark.parametrize("cls", MODELS)
def test_seam_and_position_switch(cls):
    m = tiny(cls).eval()
    assert m.score(BATCH).shape == (3, 31) and m.encode(BATCH).shape == (3, 16)
    assert not hasattr(m, "pos_emb")  # spatial on -> no absolute positions
    assert hasattr(tiny(cls, spatial=False), "pos_emb")
    assert not tiny(cls, adversarial=False).parameter_groups()[1]  # nothing to attack with
    assert tiny(cls, adversarial=False).automatic_optimization  # plain Lightning loop then


def test_ac_sasrec_is_causal():
    m = tiny(ACSASRec).eval()
    a = BATCH["input_ids"][:1]
    b = a.clone()
    b[0, -1] = 12
    assert torch.allclose(m.sequence_hidden(a)[:, :-1], m.sequence_hidden(b)[:, :-1], atol=1e-5)


@pytest.mark.parametrize("cls", MODELS)
def test_each_loss_reaches_only_its_own_parameter_group(cls):
    m = tiny(cls).train()
    rec_params, attack = m.parameter_groups()
    names = {n for n, _ in m.named_parameters()}
    assert attack and len(rec_params) + len(attack) == len(names)
    assert not {id(p) for p in rec_params} & {id(p) for p in attack}

    torch.manual_seed(1)
    rec, adv = m.calibrated_losses(BATCH)
    # Without the split, each loss would leak into the other group: check the leak is real.
    leak_rec = torch.autograd.grad(rec, attack, retain_graph=True, allow_unused=True)
    leak_adv = torch.autograd.grad(adv, rec_params, retain_graph=True, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in leak_rec)
    assert any(g is not None and g.abs().sum() > 0 for g in leak_adv)
    want_rec = torch.autograd.grad(rec, rec_params, retain_graph=True, allow_unused=True)
    want_adv = torch.autograd.grad(adv, attack, retain_graph=True, allow_unused=True)

    m.zero_grad()
    m.backward_both(rec, adv)
    for p, g in zip(rec_params, want_rec, strict=True):
        assert (p.grad is None and g is None) or torch.allclose(p.grad, g)
    for p, g in zip(attack, want_adv, strict=True):
        assert torch.allclose(p.grad, g)


class _OnlyOneLoss(ACSASRec):
    """Keeps one of the two losses (the other scaled to zero) to see what a real step moves."""

    keep = "rec"

    def calibrated_losses(self, batch):
        rec, adv = super().calibrated_losses(batch)
        return (rec, adv * 0.0) if self.keep == "rec" else (rec * 0.0, adv)


@pytest.mark.parametrize("keep", ["rec", "adv"])
def test_one_lightning_step_moves_only_the_group_of_the_active_loss(keep):
    torch.manual_seed(0)
    m = _OnlyOneLoss(num_items=30, max_len=8, hidden_size=16, num_heads=2, inner_size=32, lr=1e-2)
    m.keep = keep
    assert m.automatic_optimization is False
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    trainer = L.Trainer(
        max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(m, train_dataloaders=DataLoader([BATCH], batch_size=None))
    moved = {n for n, p in m.named_parameters() if not torch.equal(p.detach(), before[n])}
    attack = {n for n in before if ".attack_" in n}
    if keep == "rec":
        assert moved and not moved & attack  # attack projections unchanged by the rec loss
    else:
        assert moved == attack  # the adversarial loss moves the attack projections only


def popularity_ndcg10(dm: SeqDataModule) -> float:
    """NDCG@10 on the test users of ranking items by their training-part popularity."""
    data, split = dm.data, dm.split
    rows = np.repeat(np.arange(data.num_users), data.lengths)
    position = np.arange(len(data.items)) - np.repeat(data.offsets[:-1], data.lengths)
    counts = np.bincount(data.items[position < split.train_end[rows]], minlength=data.num_items + 1)
    test = dm.eval_rows["test"].tensors
    scores = torch.tensor(counts, dtype=torch.float32).expand(len(test["targets"]), -1)
    acc = MetricAccumulator((10,))
    acc.update(target_ranks(prepare_scores(scores), test["targets"]))
    return acc.compute()["ndcg@10"]


@pytest.mark.slow  # ~85 s of CPU (6 epochs + eval); minutes of wall time on the shared machine
def test_ac_sasrec_on_real_ml100k_beats_popularity(tmp_path, shared_data_dir, monkeypatch):
    """A short real run through the CLI: calibrated SASRec must clearly beat popularity."""
    env = {"GENEREC_DATA_DIR": str(shared_data_dir), "GENEREC_CACHE_DIR": str(tmp_path / "cache")}
    args = [
        "data=ml-100k",
        "model=ac_sasrec",
        "trainer.max_epochs=6",
        "model.lr=5e-3",
        "model.dropout=0.2",
        "model.hidden_size=32",
        "model.inner_size=64",
        f"hydra.run.dir={tmp_path}/run",
        f"results_dir={tmp_path}/results",
        "trainer.enable_progress_bar=false",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "generec.train", *args],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, **env}, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    (record_file,) = (tmp_path / "results").glob("*.json")
    record = json.loads(record_file.read_text())
    assert record["model"] == "ac_sasrec" and record["epochs_run"] == 6
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    dm = SeqDataModule(registry="ml-100k", cache_dir=str(tmp_path / "cache"))
    dm.setup()
    pop = popularity_ndcg10(dm)
    assert record["metrics"]["test"]["ndcg@10"] > 1.3 * pop, (record["metrics"]["test"]["ndcg@10"], pop)

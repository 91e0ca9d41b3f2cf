"""``data.sub_batches``: a batch cut into length-sorted, separately trimmed parts is the same step."""

from __future__ import annotations

import os

import pytest
import torch

from generec.data.datamodule import SeqDataModule
from generec.models.ac_sasrec import ACSASRec
from generec.models.base import batch_rows
from generec.models.bert4rec import BERT4Rec
from generec.models.cl4srec import CL4SRec
from generec.models.duorec import DuoRec
from generec.models.iclrec import ICLRec
from generec.models.sasrec import SASRec


def _datamodule(shared_data_dir, cache_dir, protocol: str, sub_batches: int) -> SeqDataModule:
    os.environ["GENEREC_DATA_DIR"] = str(shared_data_dir)
    dm = SeqDataModule(
        registry="ml-100k",
        batch_size=128,
        protocol=protocol,
        seed=5,
        cache_dir=cache_dir,
        sub_batches=sub_batches,
    )
    dm.setup()
    dm.set_trimming(True)
    return dm


def _sasrec(num_items: int) -> SASRec:
    torch.manual_seed(0)
    return SASRec(num_items=num_items, hidden_size=16, num_layers=2, num_heads=2, inner_size=32, dropout=0.0)


@pytest.mark.parametrize("protocol", ["prefixes", "all_positions"])
def test_sub_batches_give_the_same_rows_loss_and_gradients(shared_data_dir, tmp_path, protocol):
    whole = _datamodule(shared_data_dir, str(tmp_path), protocol, 1)
    split = _datamodule(shared_data_dir, str(tmp_path), protocol, 4)
    a, b = next(iter(whole.train_dataloader())), next(iter(split.train_dataloader()))
    parts = b["sub_batches"]
    assert len(parts) == 4 and batch_rows(b) == batch_rows(a) == 128
    # the same multiset of (input, target) rows, each part trimmed to its own width
    width = a["input_ids"].shape[1]

    def rows(batch: dict) -> list[tuple[int, ...]]:
        pad = width - batch["input_ids"].shape[1]
        cols = [torch.nn.functional.pad(batch[k], (pad, 0)) for k in ("input_ids", "targets")]
        return [tuple(r) for r in torch.cat(cols, 1).tolist()]

    assert sorted(rows(a)) == sorted(r for p in parts for r in rows(p))
    widths = [p["input_ids"].shape[1] for p in parts]
    assert widths == sorted(widths) and widths[0] < width  # sorted parts, the short ones really trimmed
    model = _sasrec(whole.num_items)
    grads = []
    for batch in (a, b):
        model.zero_grad()
        loss = model.compute_loss(batch)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-6)
    for ga, gb in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)


def _grads(model, batch: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad()
    loss = model.compute_loss(batch)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("model_name", ["cl4srec", "duorec"])
@pytest.mark.parametrize("protocol", ["last", "all_positions"])
def test_contrastive_models_take_sub_batches_with_the_same_loss(
    shared_data_dir, tmp_path, model_name, protocol
):
    """Parts are encoded one by one, but the CE and the InfoNCE (in-batch negatives) cover the whole batch.

    Views are made deterministic (crop keeps everything, mask and reorder touch nothing; DuoRec without a
    positive pool pairs each row with itself) and dropout is off, so both batches give the same loss.
    """
    whole = _datamodule(shared_data_dir, str(tmp_path), protocol, 1)
    split = _datamodule(shared_data_dir, str(tmp_path), protocol, 4)
    a, b = next(iter(whole.train_dataloader())), next(iter(split.train_dataloader()))
    assert len(b["sub_batches"]) == 4
    small = {"hidden_size": 16, "num_layers": 2, "num_heads": 2, "inner_size": 32, "dropout": 0.0}
    torch.manual_seed(0)
    if model_name == "cl4srec":
        model = CL4SRec(whole.num_items, crop_ratio=1.0, mask_ratio=0.0, reorder_ratio=0.0, **small)
        v1, v2 = model.views(a["input_ids"])
        assert torch.equal(v1, v2) and torch.equal(v1, a["input_ids"][:, -v1.shape[1] :])  # identity views
    else:
        model = DuoRec(whole.num_items, **small)
    assert model.accepts_sub_batches
    (la, ga), (lb, gb) = _grads(model, a), _grads(model, b)
    torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-6)
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


def test_ac_sasrec_takes_sub_batches_with_the_same_two_losses(shared_data_dir, tmp_path, monkeypatch):
    """Both AC-TSR losses (and the perturbation norm, taken over the whole batch) match the unsplit batch."""
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)  # the attacked branch's noise, made fixed
    whole = _datamodule(shared_data_dir, str(tmp_path), "prefixes", 1)
    split = _datamodule(shared_data_dir, str(tmp_path), "prefixes", 4)
    a, b = next(iter(whole.train_dataloader())), next(iter(split.train_dataloader()))
    torch.manual_seed(0)
    model = ACSASRec(whole.num_items, hidden_size=16, num_layers=2, num_heads=2, inner_size=32, dropout=0.0)
    assert model.accepts_sub_batches
    results = []
    for batch in (a, b):
        model.zero_grad()
        rec, adv = model.calibrated_losses(batch)
        model.backward_both(rec, adv)
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((rec.detach(), adv.detach(), grads))
    (ra, aa, ga), (rb, ab, gb) = results
    torch.testing.assert_close(ra, rb, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(aa, ab, rtol=1e-5, atol=1e-6)
    assert len(ga) == len(gb) == len(list(model.parameters()))  # both groups got gradients
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


def test_sub_batches_are_refused_for_models_with_their_own_loss(shared_data_dir, tmp_path):
    assert _sasrec(10).accepts_sub_batches
    assert not ICLRec(
        num_items=10, hidden_size=16, num_layers=1, num_heads=2, inner_size=32
    ).accepts_sub_batches
    assert not BERT4Rec(
        num_items=10, hidden_size=16, num_layers=1, num_heads=2, inner_size=32
    ).accepts_sub_batches
    with pytest.raises(ValueError, match="data.sub_batches"):
        SeqDataModule(registry="ml-100k", sub_batches=0)

"""Last-position fast path: when only the newest position is read (scoring, prefixes / last rows), the
final transformer block computes that position alone. It must be the same function as the full pass."""

from __future__ import annotations

import os

import pytest
import torch

from generec.data.datamodule import SeqDataModule
from generec.models.ac_bert4rec import ACBERT4Rec
from generec.models.ac_sasrec import ACSASRec
from generec.models.cl4srec import CL4SRec
from generec.models.duorec import DuoRec
from generec.models.sasrec import SASRec

TINY = dict(hidden_size=16, num_layers=2, num_heads=2, inner_size=32, dropout=0.0)


def _left_padded(batch: int = 12, width: int = 9, items: int = 40) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, items + 1, (batch, width), generator=g)
    lengths = torch.randint(1, width + 1, (batch,), generator=g)
    return torch.where(torch.arange(width) >= width - lengths[:, None], ids, 0)


@pytest.mark.parametrize("position_mode", ["left", "right"])
def test_last_hidden_equals_the_full_pass_at_the_last_position(position_mode):
    torch.manual_seed(0)
    model = SASRec(num_items=40, max_len=9, position_mode=position_mode, **TINY).eval()
    ids = _left_padded()
    with torch.no_grad():
        torch.testing.assert_close(model.last_hidden(ids), model.sequence_hidden(ids)[:, -1])


CALIBRATORS = [(True, True), (True, False), (False, True)]  # (spatial, adversarial)


@pytest.mark.parametrize("spatial,adversarial", CALIBRATORS)
def test_the_calibrated_encoder_reads_the_last_position_alone(spatial, adversarial):
    torch.manual_seed(0)
    model = ACSASRec(num_items=40, max_len=9, spatial=spatial, adversarial=adversarial, **TINY).eval()
    ids = _left_padded()
    with torch.no_grad():
        fast = model.calibrated_forward(ids, last_only=True)[0]
        assert fast.hidden.shape == (12, 1, TINY["hidden_size"])
        assert fast.attentions[-1].shape == (12, 2, 1, 9)  # the final block's one query row
        torch.testing.assert_close(model.last_hidden(ids), model.sequence_hidden(ids)[:, -1])


def test_ac_bert4rec_scores_from_its_mask_column_alone():
    torch.manual_seed(0)
    model = ACBERT4Rec(num_items=40, max_len=9, **TINY).eval()
    ids = _left_padded()
    with torch.no_grad():
        full = model.sequence_hidden(model.with_mask_last(ids))[:, -1]
        torch.testing.assert_close(model.encode({"input_ids": ids}), full)


def _without_flag(batch: dict) -> dict:
    """The same batch, not flagged ``last_only`` (parts included): the encoders take the full pass."""
    out = {k: v for k, v in batch.items() if k != "last_only"}
    if "sub_batches" in out:
        out["sub_batches"] = [_without_flag(p) for p in out["sub_batches"]]
    return out


@pytest.mark.parametrize("sub_batches", [1, 4])
@pytest.mark.parametrize("spatial,adversarial", CALIBRATORS)
def test_ac_sasrec_fast_path_gives_both_losses_and_gradients_of_the_full_pass(
    shared_data_dir, tmp_path, monkeypatch, spatial, adversarial, sub_batches
):
    """Prefix rows: the recommendation loss, the attacked loss and the perturbation penalty (over every
    pair of every layer) are those of the full pass, so both parameter groups get the same gradients."""
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)  # the attacked branch's noise, made fixed
    dm = _datamodule(shared_data_dir, str(tmp_path), "prefixes", sub_batches)
    batch = next(iter(dm.train_dataloader()))
    parts = batch.get("sub_batches", [batch])
    assert all(p["last_only"] for p in parts)
    torch.manual_seed(0)
    model = ACSASRec(dm.num_items, spatial=spatial, adversarial=adversarial, **TINY)
    results = []
    for flagged in (batch, _without_flag(batch)):
        model.zero_grad()
        rec, adv = model.calibrated_losses(flagged)
        model.backward_both(rec, adv)
        losses = torch.stack([rec.detach()] + ([adv.detach()] if adv is not None else []))
        results.append((losses, [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (fast, fast_grads), (full, full_grads) = results
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)
    assert len(fast_grads) == len(full_grads) > 0
    for a, b in zip(fast_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _datamodule(shared_data_dir, cache_dir, protocol: str, sub_batches: int = 1) -> SeqDataModule:
    os.environ["GENEREC_DATA_DIR"] = str(shared_data_dir)
    dm = SeqDataModule(
        registry="ml-100k", batch_size=96, protocol=protocol, seed=2, cache_dir=cache_dir,
        sub_batches=sub_batches,
    )  # fmt: skip
    dm.setup()
    dm.set_trimming(True)
    return dm


@pytest.mark.parametrize("protocol,expected", [("prefixes", True), ("last", True), ("all_positions", False)])
def test_rows_say_when_only_the_last_column_is_supervised(shared_data_dir, tmp_path, protocol, expected):
    dm = _datamodule(shared_data_dir, str(tmp_path), protocol)
    assert dm.train_rows.last_only is expected
    batch = next(iter(dm.train_dataloader()))
    assert batch.get("last_only", False) is expected
    assert "last_only" not in next(iter(dm.val_dataloader()))


@pytest.mark.parametrize("cls", [SASRec, CL4SRec, DuoRec])
def test_loss_and_gradients_match_the_full_pass(shared_data_dir, tmp_path, cls):
    """Without dropout the fast path is the same loss; views and positives draw the same randoms."""
    dm = _datamodule(shared_data_dir, str(tmp_path), "prefixes")
    batch = next(iter(dm.train_dataloader()))
    assert batch["last_only"]
    torch.manual_seed(0)
    model = cls(num_items=dm.num_items, **TINY)
    if isinstance(model, DuoRec):
        model.set_positive_pool(dm.train_rows.tensors["input_ids"], dm.train_rows.tensors["targets"][:, -1])
    results = []
    for flagged in (batch, {k: v for k, v in batch.items() if k != "last_only"}):
        model.zero_grad()
        torch.manual_seed(1)
        loss = model.compute_loss(flagged)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (fast, fast_grads), (full, full_grads) = results
    torch.testing.assert_close(fast, full)
    assert len(fast_grads) == len(full_grads)
    for a, b in zip(fast_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_a_quantized_copy_takes_the_fast_path_too():
    """The robustness audit scores a dynamically quantized copy, whose projections have no ``.weight``."""
    torch.manual_seed(0)
    model = SASRec(num_items=40, max_len=9, **TINY).eval()
    quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    ids = _left_padded()
    with torch.no_grad():
        # dynamic quantization scales activations per input tensor, so one row vs all rows differ a little
        fast, full = quantized.last_hidden(ids), quantized.sequence_hidden(ids)[:, -1]
        torch.testing.assert_close(fast, full, atol=5e-3, rtol=1e-2)
        torch.testing.assert_close(quantized.last_hidden(ids), model.last_hidden(ids), atol=0.1, rtol=0.1)

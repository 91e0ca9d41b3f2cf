"""``data.sub_batches``: a batch cut into length-sorted, separately trimmed parts is the same step."""

from __future__ import annotations

import os

import pytest
import torch

from generec.data.datamodule import SeqDataModule
from generec.models.base import batch_rows
from generec.models.cl4srec import CL4SRec
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


def test_sub_batches_are_refused_for_models_with_their_own_loss(shared_data_dir, tmp_path):
    assert _sasrec(10).accepts_sub_batches
    assert not CL4SRec(
        num_items=10, hidden_size=16, num_layers=1, num_heads=2, inner_size=32
    ).accepts_sub_batches
    with pytest.raises(ValueError, match="data.sub_batches"):
        SeqDataModule(registry="ml-100k", sub_batches=0)

"""The fast path (device-resident batches, torch.compile, bf16 autocast) against the eager reference.

CPU here: the resident copy lives on the CPU and compile uses the ``aot_eager`` backend (dynamo
tracing + AOT autograd, no C++ build) by default; the inductor variant is ``slow``; CUDA ones ``gpu``.
"""

from __future__ import annotations

import os

import pytest
import torch

from generec.data.datamodule import SeqDataModule
from generec.eval.metrics import MetricAccumulator, target_ranks
from generec.eval.ranking import prepare_scores
from generec.models.sasrec import SASRec


@pytest.fixture(scope="module")
def ml100k(shared_data_dir, tmp_path_factory) -> SeqDataModule:
    os.environ["GENEREC_DATA_DIR"] = str(shared_data_dir)
    dm = SeqDataModule(
        registry="ml-100k",
        batch_size=64,
        length_bucketing=True,
        seed=3,
        cache_dir=str(tmp_path_factory.mktemp("cache")),
    )
    dm.setup()
    dm.set_trimming(True)
    return dm


def _batches(loader, epoch: int) -> list[dict[str, torch.Tensor]]:
    loader.sampler.set_epoch(epoch)
    return list(loader)


def _tiny_sasrec(num_items: int, **kw) -> SASRec:
    torch.manual_seed(0)
    return SASRec(
        num_items=num_items, max_len=50, hidden_size=16, num_layers=1, num_heads=2, inner_size=32, **kw
    )


def _same_batches(a: list[dict], b: list[dict]) -> None:
    """Same tensors; a resident batch may add its host-side count of supervised positions."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys() - {"num_supervised"}
        for k in x:
            if isinstance(x[k], torch.Tensor):
                assert torch.equal(x[k].cpu(), y[k].cpu()), k
            else:  # host-side floats (loss_scale)
                assert x[k] == y[k], k
        if "num_supervised" in y:
            assert y["num_supervised"] == int((x["targets"] > 0).sum())


def test_resident_batches_equal_reference_loader_for_a_seed(ml100k):
    reference = [_batches(ml100k.train_dataloader(), e) for e in (0, 1)]
    ml100k.resident_device = "cpu"
    try:
        resident = [_batches(ml100k.train_dataloader(), e) for e in (0, 1)]
        valid_resident = list(ml100k.val_dataloader())
    finally:
        ml100k.resident_device = None
    for ref, res in zip(reference, resident, strict=True):
        _same_batches(ref, res)
    assert all(isinstance(b["num_supervised"], int) for b in resident[0])
    _same_batches(list(ml100k.val_dataloader()), valid_resident)
    # trimming really happened (bucketed batches narrower than max_len), and epochs differ
    assert min(b["input_ids"].shape[1] for b in reference[0]) < 50
    assert not torch.equal(reference[0][0]["input_ids"], reference[1][0]["input_ids"])


def test_host_counted_gather_gives_the_same_loss(ml100k):
    """The fast path's static-size gather of supervised positions equals boolean indexing."""
    model = _tiny_sasrec(ml100k.num_items, dropout=0.0)
    batch = _batches(ml100k.train_dataloader(), 0)[0]
    counted = {**batch, "num_supervised": int((batch["targets"] > 0).sum())}
    assert torch.equal(model.compute_loss(batch), model.compute_loss(counted))


def test_bucketed_loss_weighs_every_target_equally(ml100k):
    """Length-bucketed batches differ in size; with loss_scale the epoch's mean of batch losses is the
    per-target mean over the epoch, as with unbucketed batches (not a per-batch reweighting)."""
    model = _tiny_sasrec(ml100k.num_items, dropout=0.0).eval()
    batches = _batches(ml100k.train_dataloader(), 0)
    counts = torch.tensor([float((b["targets"] > 0).sum()) for b in batches])
    assert counts.max() > 1.5 * counts.min()  # bucketing made batches of quite different sizes
    scales = torch.tensor([b["loss_scale"] for b in batches])
    torch.testing.assert_close(scales, counts / counts.mean())
    with torch.no_grad():
        scaled = torch.stack([model.compute_loss(b) for b in batches])
        plain = torch.stack(
            [model.compute_loss({k: v for k, v in b.items() if k != "loss_scale"}) for b in batches]
        )
    per_target = (plain * counts).sum() / counts.sum()
    torch.testing.assert_close(scaled.mean(), per_target)
    ml100k.length_bucketing = False
    try:
        assert "loss_scale" not in next(iter(ml100k.train_dataloader()))
    finally:
        ml100k.length_bucketing = True


def test_tensor_rows_to_keeps_widths_on_host(ml100k):
    moved = ml100k.train_rows.to("cpu")
    assert moved.tensors is not ml100k.train_rows.tensors
    assert all(w.device.type == "cpu" for w in moved.widths.values())
    rows = torch.tensor([5, 1, 9])
    _same_batches([ml100k.train_rows[rows]], [moved[rows]])


def test_compiled_loss_and_scores_match_eager(ml100k):
    """Same loss, gradients and scores as eager, across batches of different (trimmed) widths."""
    eager = _tiny_sasrec(ml100k.num_items, dropout=0.0)
    compiled = _tiny_sasrec(ml100k.num_items, dropout=0.0)
    compiled.compile_hot_paths(backend="aot_eager", dynamic=True)
    batches = _batches(ml100k.train_dataloader(), 0)
    widths = sorted({b["input_ids"].shape[1] for b in batches})
    picked = [next(b for b in batches if b["input_ids"].shape[1] == w) for w in (widths[0], widths[-1])]
    for batch in picked:
        for m in (eager, compiled):
            m.zero_grad()
        le, lc = eager.compute_loss(batch), compiled.compute_loss(batch)
        le.backward()
        lc.backward()
        assert torch.allclose(le, lc, rtol=1e-5, atol=1e-6)
        for (name, pe), pc in zip(eager.named_parameters(), compiled.parameters(), strict=True):
            assert torch.allclose(pe.grad, pc.grad, rtol=1e-4, atol=1e-6), name
    valid = next(iter(ml100k.val_dataloader()))
    with torch.no_grad():
        assert torch.allclose(eager.score(valid), compiled.score(valid), rtol=1e-5, atol=1e-5)


def _ndcg10(model: SASRec, loader) -> float:
    acc = MetricAccumulator((10,))
    with torch.no_grad():
        for batch in loader:
            acc.update(
                target_ranks(prepare_scores(model.score(batch), batch.get("history")), batch["targets"])
            )
    return acc.compute()["ndcg@10"]


def test_bf16_autocast_metrics_within_tolerance_of_float32(ml100k):
    """bf16 autocast (as on the GPU fast path) vs float32 on a briefly trained model.

    Stated tolerance: NDCG@10 within 0.005 absolute. Scores are kept in float32 under autocast
    (``SeqRecModule.score``), so only the encoder runs in bf16.
    """
    model = _tiny_sasrec(ml100k.num_items, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for batch in _batches(ml100k.train_dataloader(), 0):
        opt.zero_grad()
        model.compute_loss(batch).backward()
        opt.step()
    model.eval()
    fp32 = _ndcg10(model, ml100k.val_dataloader())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = _ndcg10(model, ml100k.val_dataloader())
        assert model.score(next(iter(ml100k.val_dataloader()))).dtype == torch.float32
    assert fp32 > 0.01  # it learned something, so the comparison means something
    assert abs(fp32 - bf16) < 0.005, (fp32, bf16)


@pytest.mark.slow
def test_inductor_compiled_loss_matches_eager(ml100k):
    eager = _tiny_sasrec(ml100k.num_items, dropout=0.0)
    compiled = _tiny_sasrec(ml100k.num_items, dropout=0.0)
    compiled.compile_hot_paths(backend="inductor", dynamic=True)
    for batch in _batches(ml100k.train_dataloader(), 0)[:3]:
        assert torch.allclose(eager.compute_loss(batch), compiled.compute_loss(batch), rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_cuda_resident_batches_and_compiled_bf16_step(ml100k):
    assert torch.cuda.is_available(), "the gpu mark needs a CUDA device"
    reference = _batches(ml100k.train_dataloader(), 0)
    ml100k.resident_device = "cuda"
    try:
        resident = _batches(ml100k.train_dataloader(), 0)
    finally:
        ml100k.resident_device = None
    assert resident[0]["input_ids"].is_cuda
    _same_batches(reference, resident)
    model = _tiny_sasrec(ml100k.num_items, dropout=0.0).cuda()
    eager_loss = model.compute_loss(resident[0])
    model.compile_hot_paths(mode="reduce-overhead")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fast_loss = model.compute_loss(resident[0])
    assert torch.allclose(eager_loss, fast_loss.float(), rtol=2e-2)


@pytest.mark.gpu
def test_training_step_has_no_host_sync(ml100k):
    """The step (resident batch, loss, backward, Adam) never waits on the GPU: sync debug mode errors."""
    assert torch.cuda.is_available(), "the gpu mark needs a CUDA device"
    ml100k.resident_device = "cuda"
    try:
        batches = _batches(ml100k.train_dataloader(), 0)[:3]
    finally:
        ml100k.resident_device = None
    model = _tiny_sasrec(ml100k.num_items).cuda().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in batches:
            model.compute_loss(batch).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_width_sorted_evaluation_gives_the_same_metrics(ml100k):
    """Trimmed eval batches come in width order (cheaper); every user is scored once, same metrics."""
    size, ml100k.eval_batch_size = ml100k.eval_batch_size, 128
    try:
        batches = list(ml100k.val_dataloader())
    finally:
        ml100k.eval_batch_size = size
    widths = [b["input_ids"].shape[1] for b in batches]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    users = torch.cat([b["users"] for b in batches])
    assert sorted(users.tolist()) == ml100k.eval_rows["valid"].tensors["users"].tolist()
    torch.manual_seed(0)
    model = _tiny_sasrec(ml100k.num_items).eval()
    rows = ml100k.eval_rows["valid"]
    natural = [rows[torch.arange(i, min(i + 256, len(rows)))] for i in range(0, len(rows), 256)]
    results = []
    for order in (batches, natural):
        acc = MetricAccumulator((10, 20))
        with torch.no_grad():
            for b in order:
                acc.update(target_ranks(prepare_scores(model.score(b), b.get("history")), b["targets"]))
        results.append(acc.compute())
    assert results[0] == pytest.approx(results[1], rel=1e-6)

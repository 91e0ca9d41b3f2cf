"""Multi-interest models (ComiRec-SA/DR, MIND) and REMI's IHN + RR losses."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from generec.models.multi_interest import (
    MIND,
    ComiRecDR,
    ComiRecSA,
    InterestAwareHardNegatives,
    SampledSoftmax,
    routing_max_weight,
    routing_regularization,
)
from generec.models.multi_interest.base import shift_to_end

MODELS = [ComiRecSA, ComiRecDR, MIND]
N_ITEMS, L, D, K = 40, 8, 16, 3


def make(cls, **kw):
    torch.manual_seed(0)
    return cls(num_items=N_ITEMS, max_len=L, hidden_size=D, num_interests=K, num_negatives=30, **kw)


def padded_batch() -> torch.Tensor:
    return torch.tensor([[0, 0, 0, 0, 0, 3, 7, 9], [1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0, 0, 11]])


@pytest.mark.parametrize("cls", MODELS)
def test_routing_rows_sum_to_one_and_ignore_padding(cls):
    model = make(cls).eval()
    ids = padded_batch()
    v, routing = model.interests(ids)
    assert v.shape == (3, K, D) and routing.shape == (3, K, L)
    assert torch.allclose(routing.sum(-1), torch.ones(3, K), atol=1e-5)
    assert (routing[ids[:, None, :].expand_as(routing) == 0] == 0).all()
    assert model.encode({"input_ids": ids}).shape == (3, K, D)
    if cls is not MIND:  # MIND's routing starts from noise, the others are deterministic
        # extra left padding changes nothing (positions are aligned to the newest item)
        torch.manual_seed(0)
        roomy = cls(num_items=N_ITEMS, max_len=L + 2, hidden_size=D, num_interests=K, num_negatives=30).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                q = dict(roomy.named_parameters())[name]
                q.copy_(p) if q.shape == p.shape else q[2:].copy_(
                    p
                )  # position-indexed tables grow on the left
        wider = torch.cat([torch.zeros(3, 2, dtype=torch.long), ids], 1)
        v2, r2 = roomy.interests(wider)
        assert torch.allclose(v2, v, atol=1e-6) and (r2[:, :, :2] == 0).all()


@pytest.mark.parametrize("cls", MODELS)
def test_score_is_max_over_interests_and_training_step_learns(cls):
    model = make(cls, ihn_beta=1.0, rr_lambda=10.0)
    ids = padded_batch()
    v, _ = model.interests(ids)
    if cls is not MIND:
        full = torch.einsum("bkd,nd->bkn", v, model.item_embeddings()).amax(1)
        assert torch.allclose(model.score({"input_ids": ids}), full, atol=1e-5)
    targets = torch.zeros_like(ids)
    targets[:, -1] = torch.tensor([10, 12, 13])
    batch = {"input_ids": ids, "targets": targets}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        terms = model.loss_terms(batch)
        assert all(torch.isfinite(t) for t in terms.values())
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        losses.append(float(terms["rec"].detach()))
    assert losses[-1] < losses[0]
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("cls", [ComiRecDR, MIND])
def test_rr_reaches_the_routing_parameters_only_through_live_routing(cls):
    """ComiRec's detached routing gives RR no gradient; live routing does; detached + RR is refused."""
    from generec.models.multi_interest import routing_regularization

    ids = padded_batch()

    def rr_grad(model) -> torch.Tensor:
        model.train()
        torch.manual_seed(1)  # MIND draws its initial routing logits
        _, routing = model.interests(ids)
        penalty = routing_regularization(routing, ids > 0, scale=D).sum()
        if not penalty.requires_grad:  # no graph at all: a constant to the optimiser
            return torch.tensor(0.0)
        params = [p for p in model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(penalty, params, allow_unused=True)
        return torch.stack([g.abs().sum() if g is not None else torch.tensor(0.0) for g in grads]).sum()

    assert rr_grad(make(cls, routing_gradient="detached")) == 0
    assert rr_grad(make(cls, routing_gradient="live")) > 0
    assert make(cls, rr_lambda=100.0).live_routing  # auto: live exactly when RR is on
    assert not make(cls).live_routing
    with pytest.raises(ValueError, match="routing_gradient=detached"):
        make(cls, rr_lambda=100.0, routing_gradient="detached")
    with torch.no_grad():  # live routing only changes gradients, never the forward values
        a, b = make(cls, routing_gradient="detached").eval(), make(cls, routing_gradient="live").eval()
        assert torch.allclose(a.interests(ids)[0], b.interests(ids)[0])


def slow_capsule_routing(u_hat, mask, init, iterations=3):
    """ComiRec's TensorFlow loop, one user at a time in float64: softmax over interests, then zero padding.

    u_hat [K, L, d], mask [L] bool, init [K, L] -> interests [K, d].
    """
    u_hat, logits = u_hat.double(), init.double().clone()
    K, L, _ = u_hat.shape
    for it in range(iterations):
        c = torch.zeros(K, L, dtype=torch.float64)
        for j in range(L):
            if mask[j]:
                e = [math.exp(float(logits[k, j])) for k in range(K)]
                for k in range(K):
                    c[k, j] = e[k] / sum(e)
        caps = []
        for k in range(K):
            s = sum(c[k, j] * u_hat[k, j] for j in range(L))
            n2 = float(s @ s)
            caps.append(n2 / (1 + n2) / math.sqrt(n2 + 1e-9) * s)
        if it < iterations - 1:
            for k in range(K):
                for j in range(L):
                    logits[k, j] += float(u_hat[k, j] @ caps[k])
    return torch.stack(caps)


@pytest.mark.parametrize("cls", [ComiRecDR, MIND])
def test_interest_softmax_routing_matches_comirec_tensorflow_loop(cls):
    """``routing_softmax=interests``: each real item's weights over the K interests sum to one."""
    model = make(cls, routing_softmax="interests").eval()
    ids = padded_batch()
    mask = ids > 0
    v, routing = model.interests(ids)
    assert torch.allclose(routing.sum(1)[mask], torch.ones(int(mask.sum())), atol=1e-5)
    assert (routing.permute(0, 2, 1)[~mask] == 0).all()
    h = model.item_emb(ids)
    with torch.no_grad():
        if cls is ComiRecDR:
            u_hat = torch.einsum("lkoi,bli->bklo", model.bilinear, h)
            init = torch.zeros(3, K, L)
        else:
            u_hat = model.bilinear(h)[:, None].expand(3, K, L, D)
            init = model.eval_routing_init.expand(3, -1, -1)
        for b in range(3):
            ref = slow_capsule_routing(u_hat[b], mask[b], init[b]).float()
            if cls is MIND:
                ref = model.out(ref)
            assert torch.allclose(v[b], ref, atol=1e-5), (cls.__name__, b)
    positions = make(cls).eval().interests(ids)[0]
    assert not torch.allclose(positions, v, atol=1e-3)  # the axis actually matters
    with pytest.raises(ValueError, match="routing_softmax"):
        make(cls, routing_softmax="items")


def test_shift_to_end_and_random_cut_keep_history_before_target():
    ids = torch.tensor([[0, 0, 5, 6, 7, 8]])
    assert shift_to_end(ids, torch.tensor([3])).tolist() == [[0, 0, 0, 0, 5, 6]]
    model = make(ComiRecSA)
    inputs = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7]] * 50)
    targets = torch.tensor([[0, 2, 3, 4, 5, 6, 7, 8]] * 50)  # all_positions rows: target = next item
    torch.manual_seed(1)
    hist, tgt = model.training_examples({"input_ids": inputs, "targets": targets})
    assert len(set(tgt.tolist())) > 3  # random cut points
    assert (hist[:, -1] == tgt - 1).all()  # the newest history item is the one right before the target
    assert ((hist == 0) | (hist < tgt[:, None])).all()


def slow_ihn_reference(user, pos, table, neg, beta, log_q=None):
    """Row by row in float64: -s_p + log(exp(s_p) + sum_j w_j exp(s_j)), w_j = e^{beta s_j} / mean e^{beta s}."""
    total = 0.0
    for b in range(user.shape[0]):
        u = user[b].double()
        sp = float(u @ table[pos[b]].double())
        lp = sp - (0.0 if log_q is None else float(log_q[pos[b]]))
        kept = [j for j in neg.tolist() if j != int(pos[b])]
        s = [float(u @ table[j].double()) for j in kept]
        ls = [s_j - (0.0 if log_q is None else float(log_q[j])) for s_j, j in zip(s, kept, strict=True)]
        mean = sum(math.exp(beta * x) for x in s) / len(s)
        denom = math.exp(lp) + sum(
            math.exp(beta * x) / mean * math.exp(lx) for x, lx in zip(s, ls, strict=True)
        )
        total += -lp + math.log(denom)
    return total / user.shape[0]


@pytest.mark.parametrize("beta", [0.1, 1.0, 10.0])
@pytest.mark.parametrize("sampler", ["uniform", "log_uniform"])
def test_ihn_matches_slow_reference_and_equals_sampled_softmax_at_beta_zero(beta, sampler):
    torch.manual_seed(0)
    user, table = torch.randn(6, D) * 0.5, torch.randn(N_ITEMS + 1, D) * 0.5
    pos = torch.tensor([1, 5, 9, 9, 20, 40])
    plain = SampledSoftmax(N_ITEMS, num_negatives=25, sampler=sampler)
    neg = plain.sample()
    neg[0] = 5  # an accidental hit for row 1
    log_q = plain.sample_prob.clamp(min=1e-30).log()
    ihn0 = InterestAwareHardNegatives(N_ITEMS, beta=0.0, num_negatives=25, sampler=sampler)
    assert torch.equal(ihn0(user, pos, table, neg), plain(user, pos, table, neg))
    assert plain(user, pos, table, neg).item() == pytest.approx(
        slow_ihn_reference(user, pos, table, neg, 0.0, log_q)
    )
    ihn = InterestAwareHardNegatives(N_ITEMS, beta=beta, num_negatives=25, sampler=sampler)
    got = ihn(user, pos, table, neg).item()
    assert got == pytest.approx(slow_ihn_reference(user, pos, table, neg, beta, log_q), rel=1e-5)
    assert got != pytest.approx(plain(user, pos, table, neg).item(), rel=1e-4)  # beta actually matters


def test_samplers_follow_their_law():
    torch.manual_seed(0)
    logu = SampledSoftmax(100, num_negatives=200_000, sampler="log_uniform")
    ids = logu.sample()
    assert ids.min() >= 1 and ids.max() <= 100
    freq = torch.bincount(ids, minlength=101).float() / len(ids)
    assert torch.allclose(freq[1:6], logu.sample_prob[1:6], atol=3e-3)
    assert abs(float(logu.sample_prob.sum()) - 1) < 1e-5
    uni = SampledSoftmax(100, num_negatives=1000).sample()
    assert uni.min() >= 1 and uni.max() <= 100


def test_routing_regularization_penalises_collapse_and_ignores_padding():
    mask = torch.tensor([[False, True, True, True, True]])
    uniform = torch.tensor([[[0.0, 0.25, 0.25, 0.25, 0.25]]])
    collapsed = torch.tensor([[[0.0, 1.0, 0.0, 0.0, 0.0]]])
    assert routing_regularization(uniform, mask, scale=4.0).item() == pytest.approx(0.0, abs=1e-12)
    # deviations over the 4 real positions: 0.75, -0.25 x3 -> sum of squares 0.75; /4 -> 0.1875; squared
    assert routing_regularization(collapsed, mask, scale=4.0).item() == pytest.approx(0.1875**2)
    assert routing_max_weight(collapsed, mask).item() == 1.0
    assert routing_max_weight(uniform, mask).item() == 0.25


# ----------------------------------------------------------------------------- real data, through the CLI

REPO = Path(__file__).resolve().parents[2]


def train_cli(tmp_path: Path, shared_data_dir: Path, *overrides: str) -> dict:
    env = {
        **os.environ,
        "GENEREC_DATA_DIR": str(shared_data_dir),
        "GENEREC_CACHE_DIR": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",  # one thread: much faster than two on a shared, busy machine
    }
    cmd = [sys.executable, "-m", "generec.train", "data=games", "model=comirec_sa", "data.split=comirec",
           "data.batch_size=128", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}/run",
           f"results_dir={tmp_path}/results", *overrides]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"train failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    files = list((tmp_path / "results").glob("*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def test_short_real_games_run_writes_finite_multi_target_metrics(tmp_path, shared_data_dir):
    record = train_cli(
        tmp_path, shared_data_dir, "trainer.max_epochs=1", "+trainer.limit_train_batches=30",
        "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1", "model.ihn_beta=1.0",
        "model.rr_lambda=100",
    )  # fmt: skip
    assert record["dataset"]["split"] == "comirec" and record["dataset"]["name"] == "games"
    test = record["metrics"]["test"]
    for key in ("recall@20", "recall@50", "hr@50", "ndcg@50", "routing_max"):
        assert math.isfinite(test[key]), (key, test)
    assert 0 < test["recall@50"] <= test["hr@50"] <= 1  # several targets: recall <= hit rate
    assert 0 < test["routing_max"] <= 1


@pytest.mark.slow
def test_comirec_sa_on_games_beats_popularity(tmp_path, shared_data_dir):
    record = train_cli(tmp_path, shared_data_dir, "trainer.max_epochs=3", "monitor=valid/recall@50")
    from generec.data.datamodule import SeqDataModule
    from generec.eval.metrics import MetricAccumulator, target_ranks
    from generec.eval.ranking import prepare_scores

    os.environ["GENEREC_DATA_DIR"] = str(shared_data_dir)
    dm = SeqDataModule(registry="games", split="comirec", cache_dir=str(tmp_path / "cache"))
    dm.setup()
    data = dm.data
    counts = np.bincount(
        np.concatenate([data.sequence(u) for u in dm.split.train_users]), minlength=data.num_items + 1
    )
    targets = dm.eval_rows["test"].tensors["targets"]
    acc = MetricAccumulator((50,))
    acc.update(
        target_ranks(
            prepare_scores(torch.tensor(counts, dtype=torch.float32).expand(len(targets), -1)), targets
        )
    )
    pop = acc.compute()
    assert record["metrics"]["test"]["ndcg@50"] > 1.1 * pop["ndcg@50"], (record["metrics"]["test"], pop)
    assert record["metrics"]["test"]["recall@50"] > pop["recall@50"]

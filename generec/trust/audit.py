"""Runs every trust dimension for a model + datamodule, through the seam only (``model.score``).

One clean pass over the audited users gives accuracy (utility), the top-K lists (bias), the
top-1 items (fidelity of what is recommended vs what users actually consumed next, in a fixed
model-independent item space) and the held-out losses (membership inference); one pass over the
users' last training targets gives the member losses; one pass per (perturbation, rate) gives
the robustness drops. Compressed copies of the model are audited the same way.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from generec.data.batching import left_padded_windows
from generec.eval.metrics import target_ranks
from generec.eval.ranking import prepare_scores, topk_items
from generec.trust import bias as B
from generec.trust.generation_fidelity import fidelity_metrics, item_space
from generec.trust.index import TrustScore, absolute_index, trust_index
from generec.trust.metrics import DIMENSIONS
from generec.trust.privacy import membership_inference
from generec.trust.robustness import COMPRESSIONS, PERTURBATIONS, compress, perturb, relative_drops


@dataclass
class AuditConfig:
    """What to audit; ``max_users`` caps the audited users (a seeded sample) to bound the cost."""

    split: str = "test"
    max_users: int | None = 2000
    list_k: int = 10
    batch_size: int = 512
    perturbations: Sequence[str] = PERTURBATIONS
    rates: Sequence[float] = (0.1, 0.3)
    compression: Sequence[str] = COMPRESSIONS
    fidelity_k: int = 5
    fidelity_dim: int = 32
    mask_history_lists: bool = True
    dimensions: Sequence[str] = DIMENSIONS
    seed: int = 0
    # Injection robustness (robustness/injection_asr): users probed with the attack suite through the
    # instructor (0 = off; needs item text and the offline MiniLM encoder), under this defence setting.
    injection_users: int = 0
    injection_defences: str = "all"
    text_column: str = "title"

    @classmethod
    def from_mapping(cls, cfg: Mapping | None) -> AuditConfig:
        cfg = dict(cfg or {})
        unknown = set(cfg) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown audit settings {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
            )
        for key in ("perturbations", "rates", "compression", "dimensions"):
            if key in cfg and cfg[key] is not None:
                cfg[key] = tuple(cfg[key])
        return cls(**cfg)


@dataclass
class AuditData:
    """Model-independent inputs of an audit, built once per (datamodule, split)."""

    users: np.ndarray  # [U]
    input_ids: Tensor  # [U, L] model input before the audited target
    targets: Tensor  # [U]
    eval_history: Tensor | None  # [U, H] masked at evaluation when the datamodule masks history
    seen: Tensor  # [U, H'] every item before the target (bias reference, list masking)
    member_input: Tensor  # [M, L] prefix before each user's last training target
    member_targets: Tensor  # [M]
    counts: np.ndarray  # [I + 1] training popularity
    pct: np.ndarray  # [I + 1] popularity percentile
    space: np.ndarray  # [I + 1, d] fixed item representation for fidelity
    groups: dict[str, np.ndarray]  # name -> [U] labels
    num_items: int
    item_texts: list[str] | None = None  # [I + 1] item text (row 0 padding) when the dataset has it
    dataset: str = "dataset"
    _probe: object = field(default=None, repr=False)

    def injection_probe(self):
        """The encoder and catalogue text embeddings for the injection audit (built on first use)."""
        if self._probe is None:
            from generec.trust.injection_audit import InjectionProbe

            if self.item_texts is None:
                raise ValueError(
                    f"audit.injection_users > 0 needs item text, but dataset {self.dataset!r} has no "
                    "item text column (set audit.text_column, or audit.injection_users=0)"
                )
            self._probe = InjectionProbe.build(self.item_texts)
        return self._probe

    @classmethod
    def from_datamodule(cls, datamodule, cfg: AuditConfig) -> AuditData:
        datamodule.setup("fit")
        data, split = datamodule.data, datamodule.split
        train_end = getattr(split, "train_end", None)
        if train_end is None or cfg.split not in datamodule.eval_rows:
            raise ValueError(
                f"audit needs a leave-one-out style split with train_end and split={cfg.split!r}"
            )
        rows = datamodule.eval_rows[cfg.split].tensors
        if rows["targets"].dim() != 1:
            raise ValueError(
                "audit supports one target per user (data.split=loo), got several targets per user"
            )
        n = len(rows["users"])
        pick = np.arange(n)
        if cfg.max_users is not None and n > cfg.max_users:
            pick = np.sort(np.random.default_rng(cfg.seed).permutation(n)[: cfg.max_users])
        idx = torch.from_numpy(pick)
        users = rows["users"][idx].numpy()
        starts = data.offsets[users]
        lengths = data.lengths[users]
        history_end = lengths - (2 if cfg.split == "valid" else 1)
        seen = left_padded_windows(data.items, starts, starts + history_end, max(int(history_end.max()), 1))
        m_users = users[train_end[users] >= 2]
        m_starts, m_end = data.offsets[m_users], train_end[m_users]
        member_input = left_padded_windows(data.items, m_starts, m_starts + m_end - 1, datamodule.max_len)
        counts = B.item_counts(data.items, data.offsets, train_end, data.num_items)
        groups = {"activity": B.activity_deciles(train_end[users])}
        if "gender" in data.user_side:
            groups["gender"] = np.array([data.user_side["gender"][u] for u in users], dtype=object)
        if "age" in data.user_side:
            groups["age"] = B.age_groups([data.user_side["age"][u] for u in users])
        return cls(
            users=users,
            input_ids=rows["input_ids"][idx],
            targets=rows["targets"][idx],
            eval_history=rows["history"][idx] if "history" in rows else None,
            seen=torch.from_numpy(seen),
            member_input=torch.from_numpy(member_input),
            member_targets=torch.from_numpy(data.items[m_starts + m_end - 1].astype(np.int64)),
            counts=counts,
            pct=B.popularity_percentile(counts),
            space=item_space(data.items, data.offsets, train_end, data.num_items, cfg.fidelity_dim, cfg.seed),
            groups=groups,
            num_items=data.num_items,
            item_texts=[str(t) for t in data.item_side[cfg.text_column]]
            if cfg.text_column in data.item_side
            else None,
            dataset=str(getattr(data, "name", "dataset")),
        )


@dataclass
class AuditResult:
    metrics: dict[str, float]  # scored keys "<dimension>/<name>"
    details: dict = field(default_factory=dict)  # diagnostics for the report (not scored)


def _device(model) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, i + size)


def _raw_scores(model, input_ids: Tensor) -> Tensor:
    """Catalogue scores [B, I + 1] in fp32 on the CPU, through the seam."""
    return model.score({"input_ids": input_ids.to(_device(model))}).float().cpu()


def _losses(raw: Tensor, targets: Tensor) -> Tensor:
    """Full-softmax cross-entropy over the real items of each target: [B]."""
    real = raw[:, 1:]
    return torch.logsumexp(real, 1) - raw.gather(1, targets[:, None]).squeeze(1)


def _ndcg(ranks: Tensor, k: int = 10) -> Tensor:
    """Per-user NDCG@k with one target: [B]."""
    r = ranks.double()
    return torch.where(r < k, 1.0 / torch.log2(r + 2.0), torch.zeros_like(r))


def _popularity_curve(pct: np.ndarray, counts: np.ndarray, lists: np.ndarray, bins: int = 20) -> dict:
    """Share of training interactions and of list slots per popularity-percentile bin (low -> high)."""
    b = np.minimum((pct[1:] * bins).astype(int), bins - 1)
    exposure = B.exposure(lists, len(pct) - 1)
    train = np.bincount(b, weights=counts[1:], minlength=bins)
    rec = np.bincount(b, weights=exposure, minlength=bins)
    return {
        "bin_upper": [(i + 1) / bins for i in range(bins)],
        "train_share": (train / max(train.sum(), 1)).tolist(),
        "rec_share": (rec / max(rec.sum(), 1)).tolist(),
    }


@torch.inference_mode()
def audit_model(model, data: AuditData, cfg: AuditConfig | None = None) -> AuditResult:
    """All configured dimensions for one model (a LightningModule or a compressed copy of one)."""
    cfg = cfg or AuditConfig()
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    try:
        ranks, losses, lists = [], [], []
        for s in _batches(len(data.users), cfg.batch_size):
            raw = _raw_scores(model, data.input_ids[s])  # [B, I + 1]
            losses.append(_losses(raw, data.targets[s]))
            hist = data.eval_history[s] if data.eval_history is not None else None
            ranks.append(target_ranks(prepare_scores(raw, hist), data.targets[s]))
            listed = prepare_scores(raw, data.seen[s] if cfg.mask_history_lists else None)
            lists.append(topk_items(listed, cfg.list_k)[0])
        ranks_t, lists_np = torch.cat(ranks), torch.cat(lists).numpy()
        per_user = _ndcg(ranks_t).numpy()
        metrics: dict[str, float] = {}
        details: dict = {}
        dims = set(cfg.dimensions)
        if "utility" in dims:
            metrics["utility/ndcg@10"] = float(per_user.mean())
            metrics["utility/hr@10"] = float((ranks_t < 10).double().mean())
        if "fidelity" in dims:
            real, fake = data.space[data.targets.numpy()], data.space[lists_np[:, 0]]
            metrics.update(fidelity_metrics(real, fake, cfg.fidelity_k))
        if "privacy" in dims:
            member = torch.cat(
                [
                    _losses(_raw_scores(model, data.member_input[s]), data.member_targets[s])
                    for s in _batches(len(data.member_targets), cfg.batch_size)
                ]
            )
            mia = membership_inference(member.numpy(), torch.cat(losses).numpy())
            metrics["privacy/mia_advantage"] = mia["privacy/mia_advantage"]
            details["mia_auc"] = mia["privacy/mia_auc"]
        if "bias" in dims:
            lift = B.popularity_lift(lists_np, data.seen.numpy(), data.pct)
            metrics["bias/popularity_lift"] = lift.pop("bias/popularity_lift")
            details.update(lift)
            metrics.update(B.exposure_metrics(lists_np, data.num_items))
            details["groups"] = {}
            for name, labels in data.groups.items():
                gap, stats = B.group_disparity(per_user, labels)
                metrics[f"bias/{name}_disparity"] = gap
                details["groups"][name] = {g: {"ndcg@10": m, "users": c} for g, (m, c) in stats.items()}
            details["popularity_curve"] = _popularity_curve(data.pct, data.counts, lists_np)
        if "robustness" in dims and cfg.perturbations and cfg.rates:
            clean = float(per_user.mean())
            perturbed = {}
            for op_i, op in enumerate(cfg.perturbations):
                for rate_i, rate in enumerate(cfg.rates):
                    g = torch.Generator().manual_seed(cfg.seed * 1009 + op_i * 101 + rate_i)
                    noisy = perturb(data.input_ids, op, rate, data.num_items, g)
                    r = torch.cat(
                        [
                            target_ranks(
                                prepare_scores(
                                    _raw_scores(model, noisy[s]),
                                    data.eval_history[s] if data.eval_history is not None else None,
                                ),
                                data.targets[s],
                            )
                            for s in _batches(len(noisy), cfg.batch_size)
                        ]
                    )
                    perturbed[f"{op}@{rate}"] = float(_ndcg(r).mean())
            drops = relative_drops(clean, perturbed)
            ok = [v for v in drops.values() if v == v]
            if ok:
                metrics["robustness/perturb_drop"] = float(np.mean(ok))
                metrics["robustness/worst_drop"] = float(max(ok))
            details["perturbed_ndcg@10"] = perturbed
        if "robustness" in dims and cfg.injection_users > 0:
            from generec.trust.injection_audit import injection_attack_success

            n = min(cfg.injection_users, len(data.users))
            asr, table = injection_attack_success(
                model,
                data.injection_probe(),
                data.input_ids[:n].tolist(),
                data.targets[:n].tolist(),
                cfg.injection_defences,
                cfg.seed,
            )
            metrics["robustness/injection_asr"] = asr
            details["injection"] = {"defences": cfg.injection_defences, "users": n, "table": table}
        details["users"] = int(len(data.users))
        details["seconds"] = time.perf_counter() - t0
        return AuditResult(metrics, details)
    finally:
        model.train(was_training)


def audit_with_compression(model, data: AuditData, cfg: AuditConfig | None = None) -> dict[str, AuditResult]:
    """{"original": ..., "int8": ..., "fp16": ..., "prune50": ...}: each variant re-audited on every dimension."""
    cfg = cfg or AuditConfig()
    out = {"original": audit_model(model, data, cfg)}
    for method in cfg.compression:
        out[method] = audit_model(compress(model, method), data, cfg)
    return out


def trust_block(
    results: Mapping[str, AuditResult],
    weights: Mapping[str, float] | None,
    subject: str = "original",
    extra_candidates: Mapping[str, Mapping[str, float]] | None = None,
) -> dict:
    """The ``record["trust"]`` block for ``subject``, ECDF-normalised across ``results`` (+ extra candidates).

    Also carries every variant's index/dimensions/metrics and the absolute (reference-free) index.
    """
    candidates = {name: r.metrics for name, r in results.items()}
    candidates.update(extra_candidates or {})
    scores: dict[str, TrustScore] = trust_index(candidates, weights)
    reference = f"ECDF across {len(candidates)} candidates: {sorted(candidates)}"
    block = scores[subject].as_record(results[subject].metrics, reference)
    block["absolute_index"] = absolute_index(results[subject].metrics, weights).index
    block["details"] = results[subject].details
    block["variants"] = {
        name: {
            "index": scores[name].index,
            "absolute_index": absolute_index(r.metrics, weights).index,
            "dimensions": scores[name].dimensions,
            "metrics": r.metrics,
            "details": r.details,
        }
        for name, r in results.items()
    }
    return block

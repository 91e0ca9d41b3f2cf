"""Robustness: history perturbations (DA4Rec operators used as noise) and model compression."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, nn

from generec.data.augment import Delete, Mask, Replace, lengths_of

PERTURBATIONS = ("replace", "delete", "mask")
COMPRESSIONS = ("int8", "fp16", "prune50")


def perturb(input_ids: Tensor, op: str, rate: float, num_items: int, generator: torch.Generator) -> Tensor:
    """Noise on left-padded histories [B, L]: a share ``rate`` of each row's items replaced by random
    items, deleted (row re-packed) or masked to 0. At least one item always stays."""
    lengths = lengths_of(input_ids)  # [B]
    if op == "replace":
        fn = Replace(num_items, n=0, ratio=rate)
    elif op == "delete":
        fn = Delete(n=0, ratio=rate)
    elif op == "mask":
        fn = Mask(n=0, ratio=rate)
    else:
        raise ValueError(f"perturbation must be one of {PERTURBATIONS}, got {op!r}")
    out, _ = fn(input_ids, lengths, generator)
    return out


def relative_drops(clean: float, perturbed: dict[str, float]) -> dict[str, float]:
    """1 - perturbed/clean for each setting (0 = unaffected, 1 = accuracy wiped out)."""
    return {k: (1.0 - v / clean) if clean > 0 else float("nan") for k, v in perturbed.items()}


def robustness_metrics(drops: dict[str, float]) -> dict[str, float]:
    values = [v for v in drops.values() if v == v]
    if not values:
        return {}
    return {"robustness/perturb_drop": sum(values) / len(values), "robustness/worst_drop": max(values)}


def compress(model: nn.Module, method: str) -> nn.Module:
    """A compressed copy of ``model`` (the original is untouched).

    int8: dynamic int8 quantisation of every Linear (``quantize_dynamic``; embedding tables stay fp32);
    fp16: the whole model in half precision (``model.half()``; scores are cast back to fp32 by the audit);
    prune50: 50% L1-magnitude unstructured pruning of every Linear and Embedding weight, made permanent.
    """
    if method not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {method!r}")
    original, trainer = model, getattr(model, "_trainer", None)
    if trainer is not None:  # never deep-copy a Lightning trainer along with the weights
        original._trainer = None
    try:
        model = copy.deepcopy(original).cpu().eval()
    finally:
        if trainer is not None:
            original._trainer = trainer
    if method == "int8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch deprecates quantised tensors; still the documented API
            return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    if method == "fp16":
        return model.half()
    if method == "prune50":
        from torch.nn.utils import prune

        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                prune.l1_unstructured(module, "weight", amount=0.5)
                prune.remove(module, "weight")
    return model


def nonzero_fraction(model: nn.Module) -> float:
    """Share of non-zero float weights (1.0 unpruned); quantised modules count as dense."""
    total = nz = 0
    for p in model.parameters():
        if p.is_floating_point():
            total += p.numel()
            nz += int((p != 0).sum())
    return nz / max(total, 1)

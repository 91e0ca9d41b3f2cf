"""Fidelity of a generated set against a real set in one representation space.

Precision / recall / density / coverage follow the k-NN manifold definitions of Naeem et al.
(2020, "Reliable Fidelity and Diversity Metrics for Generative Models"); the Frechet distance
compares Gaussian fits (as FID does, on whatever features are passed in).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _as_tensor(x: np.ndarray | Tensor) -> Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x, dtype=torch.float64)


def _pairwise(a: Tensor, b: Tensor, chunk: int = 4096) -> Tensor:
    """Euclidean distances [A, B], in row chunks to bound the temporary memory."""
    return torch.cat(
        [
            torch.cdist(a[i : i + chunk], b, compute_mode="donot_use_mm_for_euclid_dist")
            for i in range(0, len(a), chunk)
        ]
    )


def knn_radii(x: Tensor, k: int) -> Tensor:
    """Distance of every point to its k-th nearest neighbour in the same set (itself excluded): [N]."""
    if len(x) <= k:
        raise ValueError(f"need more than k={k} points for k-NN radii, got {len(x)}")
    d = _pairwise(x, x)  # [N, N]
    return d.kthvalue(k + 1, dim=1).values  # the 1st smallest is the point itself (0)


def prdc(real: np.ndarray | Tensor, fake: np.ndarray | Tensor, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` [M, d] against ``real`` [N, d].

    precision: share of fake points inside some real k-NN ball; recall: share of real points
    inside some fake k-NN ball; density: mean number of real balls holding a fake point, over k;
    coverage: share of real balls holding at least one fake point. Identical sets give
    precision = recall = coverage = 1.
    """
    real, fake = _as_tensor(real), _as_tensor(fake)
    r_real = knn_radii(real, k)  # [N]
    r_fake = knn_radii(fake, k)  # [M]
    d = _pairwise(real, fake)  # [N, M]
    inside_real = d <= r_real[:, None]  # fake j inside real ball i
    return {
        "precision": inside_real.any(0).double().mean().item(),
        "recall": (d <= r_fake[None, :]).any(1).double().mean().item(),
        "density": (inside_real.double().sum(0) / k).mean().item(),
        "coverage": (d.min(1).values <= r_real).double().mean().item(),
    }


def frechet_distance(real: np.ndarray | Tensor, fake: np.ndarray | Tensor) -> float:
    """||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) of Gaussian fits; 0 for identical sets.

    The trace of the matrix square root is taken as the sum of square roots of the eigenvalues of
    S_r^(1/2) S_f S_r^(1/2) (symmetric PSD), which avoids a general sqrtm.
    """
    real, fake = _as_tensor(real), _as_tensor(fake)
    mu_r, mu_f = real.mean(0), fake.mean(0)
    s_r, s_f = torch.cov(real.T).reshape(real.shape[1], -1), torch.cov(fake.T).reshape(fake.shape[1], -1)
    evals, evecs = torch.linalg.eigh(s_r)
    sqrt_r = evecs @ torch.diag(evals.clamp(min=0).sqrt()) @ evecs.T
    middle = sqrt_r @ s_f @ sqrt_r
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    value = (mu_r - mu_f).pow(2).sum() + torch.trace(s_r) + torch.trace(s_f) - 2 * tr_sqrt
    return max(value.item(), 0.0)


def fidelity_metrics(real: np.ndarray | Tensor, fake: np.ndarray | Tensor, k: int = 5) -> dict[str, float]:
    """All fidelity metrics keyed like ``generec.trust.metrics`` (``fidelity/<name>``)."""
    out = {f"fidelity/{n}": v for n, v in prdc(real, fake, k).items()}
    out["fidelity/frechet"] = frechet_distance(real, fake)
    return out


def item_space(
    items: np.ndarray,
    offsets: np.ndarray,
    train_end: np.ndarray,
    num_items: int,
    dim: int = 32,
    seed: int = 0,
) -> np.ndarray:
    """A model-independent item representation [I + 1, dim]: truncated SVD of the training user-item matrix.

    Candidates (models, checkpoints, generators) are compared in this one fixed space, so their
    fidelity figures are comparable; row 0 (padding) is zero. Rows are scaled by the singular values.
    """
    lengths = np.diff(offsets)
    pos = np.arange(len(items)) - np.repeat(offsets[:-1], lengths)
    keep = pos < np.repeat(train_end, lengths)  # [N] interaction belongs to a training part
    users = np.repeat(np.arange(len(lengths)), lengths)[keep]
    idx = torch.from_numpy(np.stack([users, items[keep]]))
    m = torch.sparse_coo_tensor(
        idx, torch.ones(idx.shape[1]), (len(lengths), num_items + 1), check_invariants=False
    ).coalesce()
    m = torch.sparse_coo_tensor(
        m.indices(), m.values().clamp(max=1), m.shape, check_invariants=False
    )  # binary
    q = min(dim, min(m.shape) - 1)
    with torch.random.fork_rng(devices=[]):  # svd_lowrank draws a random projection: keep the global RNG
        torch.manual_seed(seed)
        _, s, v = torch.svd_lowrank(m, q=q, niter=4)  # v: [I + 1, q]
    out = (v * s).numpy()
    out[0] = 0.0
    return out.astype(np.float64)

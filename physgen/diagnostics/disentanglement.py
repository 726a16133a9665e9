r"""Disentanglement of learned latents against known generative factors: MIG and correlations.

The mutual information gap (Chen et al. 2018, "Isolating sources of disentanglement in
VAEs", NeurIPS) asks, for each factor :math:`v_k`, how much more one latent knows about it
than any other latent:

.. math:: \mathrm{MIG} = \frac1K\sum_{k=1}^K \frac{I(z_{j^{(k)}}; v_k)
          - \max_{j\ne j^{(k)}} I(z_j; v_k)}{H(v_k)},
          \qquad j^{(k)} = \arg\max_j I(z_j; v_k).

1 means every factor is carried by exactly one latent that knows it completely; 0 means no
latent stands out. Mutual informations are plug-in estimates on equal-width histograms of
each latent and factor (as in Locatello et al. 2019's ``disentanglement_lib``); the plug-in
estimate of independent variables is biased up by about :math:`(B-1)^2/(2N)` nats for ``B``
bins and ``N`` samples (Miller 1955), so use ``N`` ≫ ``B²``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from physgen.metrics._common import ArrayLike, as_float64

__all__ = ["MIGResult", "discretize", "latent_factor_correlation", "mig", "mutual_information"]


class MIGResult(NamedTuple):
    """The MIG, each factor's normalized gap, and the latent that carries each factor."""

    value: float
    gaps: np.ndarray  # (K,)
    best_latent: np.ndarray  # (K,) int
    mutual_information: np.ndarray  # (J, K) nats


def _matrix(x: ArrayLike, name: str) -> np.ndarray:
    a = as_float64(x, name=name).cpu().numpy()
    if a.ndim != 2:
        raise ValueError(f"{name}: expected (N, dims), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: holds non-finite values")
    return a


def discretize(x: ArrayLike, bins: int = 20) -> np.ndarray:
    """Each column of ``x`` ``(N, D)`` as integer bin indices ``0..bins-1`` of equal width
    over its own range; a column with at most ``bins`` distinct values keeps them as codes."""
    a = _matrix(x, "x")
    if bins < 2:
        raise ValueError(f"bins must be ≥ 2, got {bins}")
    out = np.empty(a.shape, dtype=np.int64)
    for j in range(a.shape[1]):
        values = np.unique(a[:, j])
        if values.size <= bins:  # already discrete (e.g. a factor on a grid)
            out[:, j] = np.searchsorted(values, a[:, j])
        else:
            edges = np.histogram_bin_edges(a[:, j], bins=bins)
            out[:, j] = np.clip(np.digitize(a[:, j], edges[1:-1]), 0, bins - 1)
    return out


def _entropy(codes: np.ndarray) -> float:
    p = np.bincount(codes) / codes.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    r"""Plug-in :math:`I(a; b) = H(a) + H(b) - H(a, b)` in nats of two integer code vectors."""
    joint = a.astype(np.int64) * (int(b.max()) + 1) + b
    return _entropy(a) + _entropy(b) - _entropy(joint)


def mig(latents: ArrayLike, factors: ArrayLike, *, bins: int = 20) -> MIGResult:
    """The mutual information gap of ``latents`` ``(N, J)`` (J ≥ 2) against ``factors`` ``(N, K)``.

    Both are discretized with :func:`discretize`; a constant factor (zero entropy) is refused.
    """
    z, v = discretize(latents, bins), discretize(factors, bins)
    if z.shape[0] != v.shape[0]:
        raise ValueError(f"latents have {z.shape[0]} samples, factors {v.shape[0]}")
    if z.shape[1] < 2:
        raise ValueError("mig needs at least two latents (the gap is to the second best)")
    mi = np.array([[mutual_information(z[:, j], v[:, k]) for k in range(v.shape[1])]
                   for j in range(z.shape[1])])  # fmt: skip
    entropy = np.array([_entropy(v[:, k]) for k in range(v.shape[1])])
    if (entropy <= 0).any():
        raise ValueError(f"factors {np.flatnonzero(entropy <= 0).tolist()} are constant")
    top = np.sort(mi, axis=0)[::-1]
    gaps = (top[0] - top[1]) / entropy
    return MIGResult(float(gaps.mean()), gaps, np.argmax(mi, axis=0), mi)


def latent_factor_correlation(latents: ArrayLike, factors: ArrayLike) -> np.ndarray:
    """Pearson correlation of every latent with every factor, ``(J, K)``."""
    z, v = _matrix(latents, "latents"), _matrix(factors, "factors")
    if z.shape[0] != v.shape[0]:
        raise ValueError(f"latents have {z.shape[0]} samples, factors {v.shape[0]}")
    zc, vc = z - z.mean(0), v - v.mean(0)
    norm = np.outer(np.linalg.norm(zc, axis=0), np.linalg.norm(vc, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, zc.T @ vc / norm, 0.0)

r"""A physics feature distance: the Fréchet distance of two field sets in an encoder's codes.

The encoder is a physgen autoencoder or VAE trained on the reference data: the idea of FID
(Heusel et al. 2017, arXiv:1706.08500) with a domain encoder instead of ImageNet's Inception
network,

.. math:: d_F = \lVert\mu_1-\mu_2\rVert^2 + \mathrm{Tr}\bigl(\Sigma_1+\Sigma_2
          - 2(\Sigma_1\Sigma_2)^{1/2}\bigr)

of Gaussian fits to the encoder features :math:`\phi(x)` of each set (all feature dimensions
kept). It is biased upward at finite N, so it is reported with the floor of two halves of the
reference (:func:`physgen.metrics.with_floor`). Over many features the bias of the two
covariance estimates dominates that floor and its spread, which can hide a small shift;
the kernel inception distance (KID, Bińkowski et al. 2018, arXiv:1801.01401) avoids it: the
unbiased MMD² of the features with the polynomial kernel :math:`k(a, b) = (a^\top b/D + 1)^3`
(:func:`polynomial_mmd2`, :func:`feature_kid`), ≈ 0 for one law at any N.

Physics features: an encoder trained to reconstruct fields does not resolve whether they
satisfy their equation to 1 %. :func:`log_residual_feature` is the per-field log of the
relative RMS PDE residual, which any violation of the equation moves by orders of magnitude
(a 1 % scale of the solution of −∇·(a∇u) = f leaves a residual of 1 % of f everywhere).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from physgen.metrics import frechet_distance, residual_rms, with_floor
from physgen.metrics._common import ArrayLike, as_float64
from physgen.metrics.distribution import _mmd2_from_kernel
from physgen.metrics.physics import HasResidual
from physgen.models.autoencoder import Autoencoder
from physgen.models.base import GenerativeModel
from physgen.models.vae import LatentGaussianModel

__all__ = [
    "METRICS",
    "encoder_features",
    "feature_distance",
    "feature_frechet",
    "feature_kid",
    "log_residual_feature",
    "polynomial_mmd2",
]

FeatureMap = Callable[[Tensor], Tensor]


def encoder_features(model: GenerativeModel, batch_size: int = 256) -> FeatureMap:
    """The feature map of a trained encoder: a VAE's posterior mean μ(x), an autoencoder's
    code; ``(N, *sample_shape)`` → ``(N, latent_dim)`` float64, batched, without gradients."""
    if not isinstance(model, (LatentGaussianModel, Autoencoder)):
        raise TypeError(f"{type(model).__name__} has no encoder (use a VAE or an autoencoder)")

    def features(x: Tensor) -> Tensor:
        like = next(model.parameters())
        parts = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb = torch.as_tensor(x[i : i + batch_size]).to(like)
                code = model.encode(xb)
                parts.append((code[0] if isinstance(code, tuple) else code).double().cpu())
        return torch.cat(parts)

    return features


def feature_frechet(features: FeatureMap, samples: ArrayLike, ref: ArrayLike) -> Tensor:
    """:math:`d_F` between Gaussian fits of ``features(samples)`` and ``features(ref)``.

    The fields reach ``features`` in float64, as in :func:`feature_kid`: a feature map of a
    network casts them to its weights' dtype, and the physics features' residual needs the
    exact physical values (float32 rounding alone moves a solution's log residual)."""
    fx = features(as_float64(samples, name="samples"))
    fy = features(as_float64(ref, name="ref"))
    # Every feature dimension: the PCA basis is then a rotation, which d_F ignores.
    return frechet_distance(fx, fy, num_components=fx.shape[1])


def polynomial_mmd2(fx: ArrayLike, fy: ArrayLike, *, degree: int = 3, coef0: float = 1.0) -> Tensor:
    r"""Unbiased MMD² of two feature sets ``(N, D)``, ``(M, D)`` with the polynomial kernel
    :math:`k(a, b) = (a^\top b / D + c)^p` (KID: p = 3, c = 1; Bińkowski et al. 2018):

    .. math:: \widehat{\mathrm{MMD}}^2 = \frac{\sum_{i\ne j} k(x_i, x_j)}{N(N-1)}
              + \frac{\sum_{i\ne j} k(y_i, y_j)}{M(M-1)} - \frac{2}{NM}\sum_{i,j} k(x_i, y_j),

    the U-statistic of Gretton et al. (2012): its expectation is the population MMD², 0
    when both sets come from one law, at any N (it can be slightly negative).
    """
    x, y = as_float64(fx, name="fx"), as_float64(fy, name="fy")
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"features must be (N, D) and (M, D), got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    n, m, d = len(x), len(y), x.shape[1]
    if n < 2 or m < 2:
        raise ValueError(f"need ≥ 2 feature vectors per set, got {n} and {m}")

    pooled = torch.cat([x, y])  # (N + M, D)
    kernel = (pooled @ pooled.T / d + coef0) ** degree
    first = torch.cat([torch.ones(n), torch.zeros(m)])[None]  # (1, N + M): 1 = x
    return _mmd2_from_kernel(kernel, first)[0]


def feature_kid(features: FeatureMap, samples: ArrayLike, ref: ArrayLike) -> Tensor:
    """KID: :func:`polynomial_mmd2` of ``features(samples)`` and ``features(ref)``."""
    fx = features(as_float64(samples, name="samples"))
    fy = features(as_float64(ref, name="ref"))
    return polynomial_mmd2(fx, fy)


def log_residual_feature(problem: HasResidual, fields: ArrayLike) -> Tensor:
    r"""``(N, 1)``: :math:`\log` of each field's relative RMS PDE residual
    RMS(residual)/residual_scale (:func:`physgen.metrics.residual_rms`), fields in physical
    units ``(N, C, *grid)``; exact solutions stored in float32 sit near log 1e-6."""
    r = residual_rms(problem, as_float64(fields, name="fields"), relative=True)
    return torch.log(r.clamp_min(1e-300))[:, None]


METRICS = {"frechet": feature_frechet, "kid": feature_kid}


def feature_distance(
    features: FeatureMap,
    samples: ArrayLike,
    ref: ArrayLike,
    *,
    num_splits: int = 5,
    seed: int = 0,
    metric: str = "frechet",
) -> dict[str, Any]:
    """:math:`d_F` (``metric="frechet"``) or KID (``"kid"``) of ``samples`` against ``ref``
    in ``features`` space, beside its floor.

    ``features`` maps a batch of fields to feature vectors (:func:`encoder_features` of a
    model trained on the reference data set). With m = min(N, ⌊N_ref/2⌋), the first m
    samples are compared with a random 2m of the reference (seed ``seed``), as in
    :func:`physgen.metrics.report.distribution_report`. Returns
    :func:`physgen.metrics.with_floor`'s ``{"value", "floor", "floor_std", "n"}`` over
    ``num_splits`` reference splits.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    x, r = as_float64(samples, name="samples"), as_float64(ref, name="ref")
    m = min(len(x), len(r) // 2)
    if m < 2:
        raise ValueError(f"need ≥ 2 samples and ≥ 4 reference fields, got {len(x)} and {len(r)}")
    # As physgen.metrics.distribution_report: m samples against a random 2m of the reference,
    # so a large reference is compared at the samples' size.
    pick = torch.randperm(len(r), generator=torch.Generator().manual_seed(seed))[: 2 * m]
    distance = METRICS[metric]
    result = with_floor(
        lambda x, y: distance(features, x, y), x[:m], r[pick], split_seed=seed,
        num_splits=num_splits,
    )  # fmt: skip
    return {k: float(v) if isinstance(v, Tensor) else v for k, v in result.items()}

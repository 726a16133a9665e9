r"""Anomaly scores in a feature space: the Mahalanobis distance to the training features.

Fit a Gaussian :math:`\mathcal N(\hat\mu, \hat\Sigma)` to features :math:`\phi(x)` of the
training data and score a field by

.. math:: d^2(x) = (\phi(x) - \hat\mu)^\top (\hat\Sigma + \epsilon I)^{-1} (\phi(x) - \hat\mu)

(Lee et al. 2018, "A simple unified framework for detecting out-of-distribution samples and
adversarial attacks", NeurIPS). For in-distribution Gaussian features :math:`d^2` follows
:math:`\chi^2_D` (mean D). Two feature maps: an encoder's code
(:func:`physgen.diagnostics.encoder_features`: a VAE's posterior mean, an autoencoder's
code) and :func:`spectrum_features`, the log radially averaged power spectrum of every
channel, which carries the field's length scales.
"""

from __future__ import annotations

import torch
from torch import Tensor

from physgen.metrics import energy_spectrum
from physgen.metrics._common import ArrayLike, as_float64

__all__ = ["MahalanobisFit", "spectrum_features"]


class MahalanobisFit:
    r"""A Gaussian fit to training features; calling it gives :math:`d^2` of new features.

    ``shrinkage`` ε is added to the covariance's diagonal, relative to its mean variance,
    so a rank-deficient fit (more feature dimensions than samples) stays invertible.
    """

    def __init__(self, train: ArrayLike, *, shrinkage: float = 1e-6) -> None:
        f = as_float64(train, name="train")
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"train features must be (N ≥ 2, D), got {tuple(f.shape)}")
        self.mean = f.mean(0)
        cov = torch.cov(f.T).reshape(f.shape[1], f.shape[1])
        eps = shrinkage * float(cov.diagonal().mean().clamp_min(1e-300))
        self.chol = torch.linalg.cholesky(cov + eps * torch.eye(len(cov), dtype=cov.dtype))

    def __call__(self, features: ArrayLike) -> Tensor:
        """:math:`d^2` of each row of ``features`` ``(N, D)``: ``(N,)`` float64."""
        f = as_float64(features, name="features")
        if f.ndim != 2 or f.shape[1] != len(self.mean):
            raise ValueError(f"features must be (N, {len(self.mean)}), got {tuple(f.shape)}")
        white = torch.linalg.solve_triangular(self.chol, (f - self.mean).T, upper=False)
        return white.square().sum(0)


def spectrum_features(fields: ArrayLike, *, spatial_dims: int, floor: float = 1e-12) -> Tensor:
    r"""``(N, C·K)``: :math:`\log(P_c(k) + \text{floor})` of each channel's Hann-windowed
    radially averaged power spectrum (:func:`physgen.metrics.energy_spectrum`), fields
    ``(N, C, *grid)``."""
    x = as_float64(fields, name="fields")
    if x.ndim != 2 + spatial_dims:
        raise ValueError(f"fields must be (N, C, *grid) with {spatial_dims} grid axes")
    _, power = energy_spectrum(x, spatial_dims=spatial_dims, window="hann")  # (N, C, K)
    return torch.log(power + floor).flatten(1)

r"""A physics feature distance: the Fréchet distance of two field sets in an encoder's codes.

The encoder is a physgen autoencoder or VAE trained on the reference data: the idea of FID
(Heusel et al. 2017, arXiv:1706.08500) with a domain encoder instead of ImageNet's Inception
network,

.. math:: d_F = \lVert\mu_1-\mu_2\rVert^2 + \mathrm{Tr}\bigl(\Sigma_1+\Sigma_2
          - 2(\Sigma_1\Sigma_2)^{1/2}\bigr)

of Gaussian fits to the encoder features :math:`\phi(x)` of each set (all feature dimensions
kept). It is biased upward at finite N, so it is reported with the floor of two halves of the
reference (:func:`physgen.metrics.with_floor`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from physgen.metrics import frechet_distance, with_floor
from physgen.metrics._common import ArrayLike, as_float64
from physgen.models.autoencoder import Autoencoder
from physgen.models.base import GenerativeModel
from physgen.models.vae import LatentGaussianModel

__all__ = ["encoder_features", "feature_distance", "feature_frechet"]

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
    """:math:`d_F` between Gaussian fits of ``features(samples)`` and ``features(ref)``."""
    fx = features(as_float64(samples, name="samples").float())
    fy = features(as_float64(ref, name="ref").float())
    # Every feature dimension: the PCA basis is then a rotation, which d_F ignores.
    return frechet_distance(fx, fy, num_components=fx.shape[1])


def feature_distance(
    features: FeatureMap,
    samples: ArrayLike,
    ref: ArrayLike,
    *,
    num_splits: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """:math:`d_F` of ``samples`` against ``ref`` in ``features`` space, beside its floor.

    ``features`` maps a batch of fields to feature vectors (:func:`encoder_features` of a
    model trained on the reference data set). With m = min(N, ⌊N_ref/2⌋), the first m
    samples are compared with a random 2m of the reference (seed ``seed``), as in
    :func:`physgen.metrics.report.distribution_report`. Returns
    :func:`physgen.metrics.with_floor`'s ``{"value", "floor", "floor_std", "n"}`` over
    ``num_splits`` reference splits.
    """
    x, r = as_float64(samples, name="samples"), as_float64(ref, name="ref")
    m = min(len(x), len(r) // 2)
    if m < 2:
        raise ValueError(f"need ≥ 2 samples and ≥ 4 reference fields, got {len(x)} and {len(r)}")
    # As physgen.metrics.distribution_report: m samples against a random 2m of the reference,
    # so a large reference is compared at the samples' size.
    pick = torch.randperm(len(r), generator=torch.Generator().manual_seed(seed))[: 2 * m]
    metric = lambda x, y: feature_frechet(features, x, y)  # noqa: E731
    result = with_floor(metric, x[:m], r[pick], split_seed=seed, num_splits=num_splits)
    return {k: float(v) if isinstance(v, Tensor) else v for k, v in result.items()}

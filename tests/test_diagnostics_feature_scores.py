"""Mahalanobis scores against the analytic distance of a known Gaussian, and spectrum
features that tell length scales apart."""

from __future__ import annotations

import math

import pytest
import torch

from physgen.diagnostics import auroc
from physgen.diagnostics.feature_scores import MahalanobisFit, spectrum_features


def test_mahalanobis_matches_the_known_gaussian() -> None:
    g = torch.Generator().manual_seed(0)
    d, n = 4, 200_000
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov = a @ a.T + 0.5 * torch.eye(d, dtype=torch.float64)
    mu = torch.randn(d, generator=g, dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    train = mu + torch.randn(n, d, generator=g, dtype=torch.float64) @ chol.T
    fit = MahalanobisFit(train)
    x = mu + 2 * torch.randn(50, d, generator=g, dtype=torch.float64)
    exact = ((x - mu) @ torch.linalg.inv(cov) * (x - mu)).sum(1)
    # The fitted μ and Σ carry O(1/√n) relative errors; d² inherits them.
    assert torch.allclose(fit(x), exact, rtol=20 / math.sqrt(n), atol=20 * d / math.sqrt(n))
    # In-distribution d² is χ²_d: mean d, standard error √(2d/m).
    m = 20_000
    fresh = mu + torch.randn(m, d, generator=g, dtype=torch.float64) @ chol.T
    assert abs(float(fit(fresh).mean()) - d) < 4 * math.sqrt(2 * d / m)
    # Negative control: the Euclidean distance (identity covariance) is not d².
    euclid = (x - mu).square().sum(1)
    assert not torch.allclose(euclid, exact, rtol=0.1)
    with pytest.raises(ValueError, match=r"features must be \(N, 4\)"):
        fit(torch.zeros(3, 5))


def _grf(n: int, ell: float, seed: int) -> torch.Tensor:
    """Periodic 2-D Gaussian fields with a Gaussian spectrum of correlation length ell."""
    g = torch.Generator().manual_seed(seed)
    k = torch.fft.fftfreq(32, d=1 / 32)
    kk = k[:, None] ** 2 + k[None, :] ** 2
    amp = torch.exp(-kk * (2 * math.pi * ell) ** 2 / 4)
    w = torch.randn(n, 1, 32, 32, generator=g, dtype=torch.float64)
    x = torch.fft.ifft2(torch.fft.fft2(w) * amp).real
    return x / x.std()


def test_spectrum_features_separate_length_scales() -> None:
    train, normal = _grf(400, 0.05, 0), _grf(100, 0.05, 1)
    short, same = _grf(100, 0.025, 2), _grf(100, 0.05, 3)
    fit = MahalanobisFit(spectrum_features(train, spatial_dims=2))
    score = lambda x: fit(spectrum_features(x, spatial_dims=2))  # noqa: E731
    assert auroc(score(normal), score(short)).value > 0.99
    # Negative control: a fresh draw of the same law is not flagged (AUROC ≈ 0.5 ± 4 SE).
    same_law = auroc(score(normal), score(same))
    assert abs(same_law.value - 0.5) < 4 * same_law.se


def test_spectrum_features_are_log_powers_per_channel() -> None:
    """Scaling a field by s scales its power by s², so every feature shifts by 2 log s (the
    floor moves it by at most floor / min P < 1e-6: 1e-12 against powers above 1e-6); the two
    channels' features are each channel's own, channel-major."""
    x = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    base = spectrum_features(x, spatial_dims=2)
    assert float(base.exp().min()) > 1e-6  # the floor is negligible at these powers
    shifted = spectrum_features(3.0 * x, spatial_dims=2)
    torch.testing.assert_close(shifted - base, torch.full_like(base, 2 * math.log(3.0)),
                               rtol=0, atol=1e-5)  # fmt: skip
    # Negative control: the power itself is not shifted but multiplied.
    assert (shifted.exp() - base.exp()).abs().max() > 1.0 * base.exp().max()
    other = _grf(3, 0.025, 5)
    both = spectrum_features(torch.cat([x, other], 1), spatial_dims=2)
    torch.testing.assert_close(both, torch.cat([base, spectrum_features(other, spatial_dims=2)], 1),
                               rtol=0, atol=0)  # fmt: skip
    swapped = spectrum_features(torch.cat([other, x], 1), spatial_dims=2)
    assert not torch.allclose(both, swapped)  # the channel order is kept

"""Spectra and correlations against closed forms: Parseval, power-law slopes, windowing, R(r)."""

from __future__ import annotations

import math

import pytest
import torch

from physgen.metrics import (
    energy_spectrum,
    log_spectral_distance,
    spectral_slope,
    spectrum_distance,
    two_point_correlation,
    with_floor,
)


def power_law_field(n: int, beta: float, *, dims: int, batch: int, seed: int) -> torch.Tensor:
    """Periodic Gaussian field whose shell-summed spectrum is P(k) ∝ k^-β."""
    gen = torch.Generator().manual_seed(seed)
    freqs = [torch.fft.fftfreq(n, d=1 / n, dtype=torch.float64)] * dims
    kmag = torch.sqrt(sum(k.square() for k in torch.meshgrid(*freqs, indexing="ij")))
    # Shells hold ∝ k^(d−1) modes, so each mode gets power k^-(β + d − 1).
    amp = torch.where(kmag > 0, kmag.clamp_min(1) ** (-(beta + dims - 1) / 2), 0.0)
    noise = torch.randn(batch, *([n] * dims), generator=gen, dtype=torch.float64)
    return torch.fft.ifftn(
        torch.fft.fftn(noise, dim=tuple(range(1, dims + 1))) * amp, dim=tuple(range(1, dims + 1))
    ).real


@pytest.mark.parametrize("shape", [(33,), (24, 40), (6, 8, 10)])
def test_parseval_holds_exactly(shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(3, *shape, generator=gen, dtype=torch.float64) + 0.7
    for window in (None, "hann"):
        _, p = energy_spectrum(u, spatial_dims=len(shape), window=window)
        if window is None:
            torch.testing.assert_close(p.sum(-1), u.square().flatten(1).mean(1))
        else:
            assert p.shape[0] == 3 and bool((p >= 0).all())


def test_single_mode_lands_in_its_shell_with_physical_wavenumbers() -> None:
    length = 3.0
    x = torch.arange(64, dtype=torch.float64) * length / 64
    y = x.clone()
    u = torch.cos(2 * math.pi * 5 * x[:, None] / length) * torch.ones_like(y)[None, :]
    k, p = energy_spectrum(u[None], spatial_dims=2, lengths=length)
    assert int(p[0].argmax()) == 5
    assert k[5].item() == pytest.approx(2 * math.pi * 5 / length)
    assert p[0, 5].item() == pytest.approx(0.5)  # mean of cos² = ½, all in one shell


@pytest.mark.parametrize(("dims", "n", "beta"), [(1, 512, 2.0), (2, 128, 3.0), (2, 128, 5.0 / 3.0)])
def test_power_law_slope_is_recovered(dims: int, n: int, beta: float) -> None:
    u = power_law_field(n, beta, dims=dims, batch=32 if dims == 1 else 8, seed=1)
    k, p = energy_spectrum(u, spatial_dims=dims)
    slope = spectral_slope(k, p.mean(0), k_min=4, k_max=n / 4)
    assert slope == pytest.approx(-beta, abs=0.1)


def test_window_removes_edge_leakage_of_non_periodic_fields() -> None:
    # A steep spectrum cropped to a non-periodic window: the edge jump leaks a k⁻² tail.
    full = power_law_field(256, 4.0, dims=2, batch=8, seed=2)
    crop = full[:, :96, :96]
    k, raw = energy_spectrum(crop, spatial_dims=2)
    _, tapered = energy_spectrum(crop, spatial_dims=2, window="hann", detrend=True)
    raw_slope = spectral_slope(k, raw.mean(0), k_min=8, k_max=32)
    tapered_slope = spectral_slope(k, tapered.mean(0), k_min=8, k_max=32)
    assert raw_slope > -2.6  # leakage flattens the tail towards k⁻²
    assert tapered_slope == pytest.approx(-4.0, abs=0.4)
    _, tukey = energy_spectrum(crop, spatial_dims=2, window="tukey", tukey_alpha=0.5)
    assert spectral_slope(k, tukey.mean(0), k_min=8, k_max=32) < raw_slope - 0.5


def test_log_spectral_distance_closed_form_and_floor() -> None:
    p = torch.tensor([5.0, 1.0, 0.1, 0.01])
    # A factor 10 at every k ≥ 1 is one decade: LSD = 1.
    assert log_spectral_distance(p * 10, p).item() == pytest.approx(1.0)
    assert log_spectral_distance(p, p).item() == 0.0
    same = power_law_field(64, 3.0, dims=2, batch=64, seed=3)
    res = with_floor(
        spectrum_distance, power_law_field(64, 3.0, dims=2, batch=32, seed=4), same, spatial_dims=2
    )
    assert res["value"] < 3 * res["floor"] + 0.02
    smooth = with_floor(
        spectrum_distance, power_law_field(64, 4.0, dims=2, batch=32, seed=4), same, spatial_dims=2
    )
    assert smooth["value"] > 10 * smooth["floor"]


def test_two_point_correlation_of_a_random_phase_wave() -> None:
    # u = a cos(2πjx/n) + b sin(2πjx/n), a, b ~ N(0,1): stationary with R(r) = cos(2πjr/n).
    gen = torch.Generator().manual_seed(5)
    n, j = 64, 3
    x = torch.arange(n, dtype=torch.float64)
    a, b = torch.randn(2, 4000, 1, generator=gen, dtype=torch.float64)
    u = a * torch.cos(2 * math.pi * j * x / n) + b * torch.sin(2 * math.pi * j * x / n)
    r, corr = two_point_correlation(u, spatial_dims=1)
    torch.testing.assert_close(r, torch.arange(33, dtype=torch.float64))
    torch.testing.assert_close(corr, torch.cos(2 * math.pi * j * r / n), atol=0.03, rtol=0)


def test_two_point_correlation_non_periodic_ar1() -> None:
    # AR(1) with φ = 0.8 on a non-periodic line: R(r) = φ^r.
    gen = torch.Generator().manual_seed(6)
    phi, n = 0.8, 128
    eps = torch.randn(2000, n, generator=gen, dtype=torch.float64)
    u = torch.empty_like(eps)
    u[:, 0] = eps[:, 0]
    for i in range(1, n):
        u[:, i] = phi * u[:, i - 1] + math.sqrt(1 - phi**2) * eps[:, i]
    r, corr = two_point_correlation(u, spatial_dims=1, periodic=False)
    torch.testing.assert_close(corr[:20], phi ** r[:20], atol=0.03, rtol=0)
    # The periodic estimator wraps the two unrelated ends around and gets the tail wrong.
    _, wrapped = two_point_correlation(u, spatial_dims=1, periodic=True)
    assert (wrapped[40:] - phi ** r[40:]).abs().max() > (corr[40:] - phi ** r[40:]).abs().max()

"""The physics feature distance: zero for identical sets, the closed form for a linear
encoder, at its floor for a fresh draw of the reference law, monotone in a shift; KID
against the closed form of its polynomial kernel; the residual feature on known fields."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from physgen.diagnostics import (
    encoder_features,
    feature_distance,
    feature_frechet,
    feature_kid,
    log_residual_feature,
    polynomial_mmd2,
)
from physgen.metrics import residual_rms
from physgen.models.autoencoder import Autoencoder
from physgen.models.vae import VAE
from physgen.problem import load


def _fields(n: int, seed: int) -> torch.Tensor:
    """Smooth random 1-channel fields on 8×8: a few random Fourier modes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.linspace(0, 1, 8)
    a = torch.randn(n, 3, generator=g, dtype=torch.float64)
    modes = [
        torch.sin((k + 1) * torch.pi * x)[:, None] * torch.cos(k * torch.pi * x) for k in range(3)
    ]
    return (a[:, :, None, None] * torch.stack(modes)).sum(1, keepdim=True)


def test_identical_sets_and_the_linear_closed_form() -> None:
    torch.manual_seed(0)
    vae = VAE((1, 8, 8), latent_dim=4, arch="conv", channels=[4], hidden=[16]).eval()
    x = _fields(200, 1)
    assert float(feature_frechet(encoder_features(vae), x, x)) == pytest.approx(0.0, abs=1e-8)
    # A linear encoder W: shifting every field by δ moves the mean by Wδ and keeps the
    # covariance, so d_F = ‖Wδ‖² exactly.
    w = torch.randn(5, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    linear = lambda f: f.double().flatten(1) @ w.T  # noqa: E731
    delta = 0.1 * torch.randn(
        1, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    exact = float((w @ delta.flatten()).square().sum())
    assert float(feature_frechet(linear, x + delta, x)) == pytest.approx(exact, rel=1e-5)


def test_floor_and_monotone_shift() -> None:
    torch.manual_seed(0)
    ae = Autoencoder((1, 8, 8), latent_dim=6, arch="conv", channels=[4], hidden=[16]).eval()
    features = encoder_features(ae)
    ref, fresh = _fields(400, 4), _fields(200, 5)
    same = feature_distance(features, fresh, ref)
    # A fresh draw of the reference law sits at the floor (within a few floor sds)...
    assert abs(same["value"] - same["floor"]) < 4 * same["floor_std"] + 0.2 * same["floor"]
    # ...and a shifted one does not (negative control); d_F grows with the shift.
    values = [feature_distance(features, fresh + s, ref)["value"] for s in (0.1, 0.2, 0.4, 0.8)]
    assert values[0] > same["value"]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert values[-1] > 10 * same["floor"]
    with pytest.raises(TypeError, match="has no encoder"):
        encoder_features(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_polynomial_mmd2_linear_kernel_identity() -> None:
    # k(a, b) = aᵀb/D: the U-statistic is exactly (‖x̄ − ȳ‖² − tr S_x/N − tr S_y/M)/D.
    g = torch.Generator().manual_seed(6)
    x = torch.randn(30, 4, generator=g, dtype=torch.float64)
    y = torch.randn(20, 4, generator=g, dtype=torch.float64) + 0.3
    exact = (x.mean(0) - y.mean(0)).square().sum() - x.var(0).sum() / 30 - y.var(0).sum() / 20
    got = polynomial_mmd2(x, y, degree=1, coef0=0.0)
    assert float(got) == pytest.approx(float(exact) / 4, rel=1e-12)


def test_kid_is_unbiased_against_its_closed_form() -> None:
    # D = 1, k = (ab + 1)³ = a³b³ + 3a²b² + 3ab + 1, so for independent laws
    # MMD² = (m₃ˣ − m₃ʸ)² + 3(m₂ˣ − m₂ʸ)² + 3(m₁ˣ − m₁ʸ)² with m₁ = μ, m₂ = μ² + σ²,
    # m₃ = μ³ + 3μσ² of N(μ, σ²).
    def moments(mu: float, sd: float) -> np.ndarray:
        return np.array([mu, mu**2 + sd**2, mu**3 + 3 * mu * sd**2])

    rng = np.random.default_rng(7)
    for (mx, sx), (my, sy) in (((0.0, 1.0), (0.0, 1.0)), ((0.0, 1.0), (0.3, 1.2))):
        d = moments(mx, sx) - moments(my, sy)
        exact = d[2] ** 2 + 3 * d[1] ** 2 + 3 * d[0] ** 2
        draws = [
            float(polynomial_mmd2(rng.normal(mx, sx, (40, 1)), rng.normal(my, sy, (60, 1))))
            for _ in range(2000)
        ]
        se = np.std(draws, ddof=1) / np.sqrt(len(draws))
        assert abs(np.mean(draws) - exact) < 4 * se
    # Negative control: the biased V-statistic (diagonal kept) is off by many errors at 0.
    biased = []
    for _ in range(2000):
        x, y = (
            torch.from_numpy(rng.normal(size=(40, 1))),
            torch.from_numpy(rng.normal(size=(60, 1))),
        )
        k = lambda a, b: (a @ b.T + 1) ** 3  # noqa: E731
        biased.append(float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()))
    assert np.mean(biased) > 10 * np.std(biased, ddof=1) / np.sqrt(len(biased))


def test_kid_floor_sits_at_zero_and_grows_with_a_shift() -> None:
    torch.manual_seed(0)
    ae = Autoencoder((1, 8, 8), latent_dim=6, arch="conv", channels=[4], hidden=[16]).eval()
    features = encoder_features(ae)
    ref, fresh = _fields(400, 4), _fields(200, 5)
    same = feature_distance(features, fresh, ref, metric="kid")
    # Unbiased: the floor of two halves and a fresh draw both scatter around 0.
    assert abs(same["floor"]) < 3 * same["floor_std"]
    assert abs(same["value"] - same["floor"]) < 4 * same["floor_std"]
    values = [
        feature_distance(features, fresh + s, ref, metric="kid")["value"]
        for s in (0.1, 0.2, 0.4, 0.8)
    ]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert values[-1] > same["floor"] + 10 * same["floor_std"]
    assert float(feature_kid(features, ref, ref)) < 0  # one set: the diagonal left out
    with pytest.raises(ValueError, match="metric must be one of"):
        feature_distance(features, fresh, ref, metric="fid")


def test_log_residual_feature_reads_the_equation() -> None:
    darcy = load("darcy", n=16)
    exact = darcy.to_tensor(darcy.generate(4, seed=0))
    scaled = exact.clone()
    scaled[:, 1] *= 1.01  # the solution of a 1 % larger source: residual 0.01·f everywhere
    torch.testing.assert_close(
        log_residual_feature(darcy, scaled)[:, 0],
        torch.full((4,), np.log(0.01), dtype=torch.float64),
    )
    # Negative control: the exact solutions sit at the solver's round-off.
    assert float(log_residual_feature(darcy, exact).max()) < np.log(1e-10)


def test_feature_distance_kid_is_the_polynomial_mmd2_of_the_features() -> None:
    # Constant features α for the samples and β for the reference: every kernel value is
    # known, so KID = k(α, α) + k(β, β) − 2k(α, β) = (α² + 1)³ + 1 − 2 = 124 for α = 2,
    # β = 0 in every split, and the floor (β against β) is exactly 0.
    samples, ref = torch.full((8, 1, 2, 2), 2.0), torch.zeros(16, 1, 2, 2)
    features = lambda z: z.flatten(1).mean(1, keepdim=True)  # noqa: E731
    kid = feature_distance(features, samples, ref, num_splits=3, metric="kid")
    assert kid["value"] == pytest.approx(124.0, rel=1e-12)
    assert kid["floor"] == 0.0 and kid["floor_std"] == 0.0
    # Negative control: the Fréchet distance of the same features is (α − β)² = 4.
    frechet = feature_distance(features, samples, ref, num_splits=3)
    assert frechet["value"] == pytest.approx(4.0, rel=1e-9)


def test_log_residual_feature_is_relative_to_the_source() -> None:
    # f = 2: u × 1.01 leaves the residual 0.01·f = 0.02 on every cell, relative 0.01.
    darcy = load("darcy", n=16, forcing=2.0)
    scaled = darcy.to_tensor(darcy.generate(3, seed=1))
    scaled[:, 1] *= 1.01
    torch.testing.assert_close(
        log_residual_feature(darcy, scaled)[:, 0],
        torch.full((3,), np.log(0.01), dtype=torch.float64),
    )
    # Negative control: the absolute RMS residual is log 0.02, not log 0.01.
    absolute = residual_rms(darcy, scaled, relative=False)
    assert float((torch.log(absolute) - np.log(0.01)).min()) > np.log(2) - 1e-9


@pytest.mark.parametrize("metric", ["frechet", "kid"])
def test_the_fields_reach_the_feature_map_in_float64(metric: str) -> None:
    # A physics feature (the log PDE residual) reads digits that float32 rounds away, so both
    # distances hand the map the fields as given, in float64; a network's map casts them.
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(6, 1, 4, dtype=torch.float64, generator=gen)
    ref = torch.randn(12, 1, 4, dtype=torch.float64, generator=gen)
    seen: list[torch.Tensor] = []

    def features(z: torch.Tensor) -> torch.Tensor:
        seen.append(z)
        return z.flatten(1)

    feature_distance(features, x, ref, num_splits=2, metric=metric)
    assert seen and all(z.dtype == torch.float64 for z in seen)
    assert any(torch.equal(z, x) for z in seen)  # the samples themselves, unrounded
    assert not torch.equal(x.float().double(), x)  # control: float32 would round them

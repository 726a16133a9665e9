"""Gaussian random fields: empirical covariance against the kernel within Monte-Carlo error."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import trapezoid

from physgen.problem import load
from physgen.random_fields import kernel_spectral_density, matern_kernel, se_kernel

N_SAMPLES = 4000


def _standardised_error(samples: np.ndarray, cov: np.ndarray) -> float:
    """max_ij |Ĉ_ij − C_ij| / sd(Ĉ_ij) for the known-zero-mean estimator Ĉ = UᵀU / N."""
    u = samples.reshape(len(samples), -1)
    empirical = u.T @ u / len(u)
    var = np.diag(cov)
    sd = np.sqrt((var[:, None] * var[None, :] + cov**2) / len(u))
    return float(np.max(np.abs(empirical - cov) / sd))


CASES = [
    {"kernel": "se", "dim": 1, "n": 32, "length": 0.2},
    {"kernel": "matern", "dim": 1, "n": 32, "length": 0.3, "nu": 1.5, "variance": 2.0},
    {"kernel": "se", "dim": 2, "n": 12, "length": 0.25, "variance": 0.5},
    {"kernel": "matern", "dim": 2, "n": 10, "length": 0.3, "nu": 0.5},
    {"kernel": "matern", "dim": 2, "n": 16, "length": 0.1, "nu": 1.0, "periodic": True},
    {"kernel": "se", "dim": 1, "n": 32, "length": 0.15, "periodic": True},
]


@pytest.mark.parametrize("params", CASES, ids=lambda p: "-".join(str(v) for v in p.values()))
def test_empirical_covariance_matches_the_kernel(params: dict) -> None:
    problem = load("grf", **params)
    u = problem.generate(N_SAMPLES, seed=3)["u"].values
    cov = problem.covariance()
    assert _standardised_error(u, cov) < 5.0
    # The check discriminates: a 50 % longer correlation length is rejected.
    wrong = load("grf", **{**params, "length": params["length"] * 1.5}).covariance()
    assert _standardised_error(u, wrong) > 9.0


def _periodised(kind: str, r: np.ndarray, length: float, nu: float, images: int = 6) -> np.ndarray:
    k = (
        (lambda s: se_kernel(s, length))
        if kind == "se"
        else (lambda s: matern_kernel(s, length, nu))
    )
    return sum(k(np.abs(r + m)) for m in range(-images, images + 1))


@pytest.mark.parametrize(("kind", "nu"), [("se", 1.5), ("matern", 2.5)])
def test_periodic_covariance_is_the_kernel_summed_over_images(kind: str, nu: float) -> None:
    problem = load("grf", kernel=kind, dim=1, n=128, length=0.1, nu=nu, periodic=True)
    x = problem.grid.coords(0)
    expected = _periodised(kind, x[:, None] - x[None, :], 0.1, nu)
    # Only the modes above the grid's Nyquist frequency are missing.
    tol = 1e-10 if kind == "se" else 1e-3
    np.testing.assert_allclose(problem.covariance(), expected, atol=tol)


def test_kernel_formulas() -> None:
    r = np.linspace(0, 2, 11)
    # Matérn ν = 1/2 is the exponential kernel, ν → ∞ approaches the SE kernel.
    np.testing.assert_allclose(matern_kernel(r, 0.7, 0.5, 2.0), 2.0 * np.exp(-r / 0.7))
    np.testing.assert_allclose(matern_kernel(r, 0.7, 60.0), se_kernel(r, 0.7), atol=1e-2)
    # Spectral densities integrate to k(0) = σ²: ∫ S(ω) dω / (2π)^d.
    w = np.linspace(-200, 200, 400001)
    for kind, nu in (("se", 0.0), ("matern", 1.5)):
        s = kernel_spectral_density(kind, 0.3, 1.7, nu, 1)(w**2)
        assert trapezoid(s, w) / (2 * np.pi) == pytest.approx(1.7, rel=1e-4)


def test_generation_is_deterministic_and_shardable() -> None:
    problem = load("grf", kernel="matern", dim=2, n=16, periodic=True, length=0.2)
    whole = problem.generate(6, seed=11)
    again = problem.generate(6, seed=11)
    np.testing.assert_array_equal(whole["u"].values, again["u"].values)
    tail = problem.generate(2, seed=11, start=4)
    np.testing.assert_array_equal(whole["u"].values[4:], tail["u"].values)
    np.testing.assert_array_equal(tail["sample"].values, [4, 5])
    other = problem.generate(6, seed=12)["u"].values
    assert not np.allclose(whole["u"].values, other)


def test_grf_has_no_residual_and_observes() -> None:
    problem = load("grf", dim=2, n=16)
    import torch

    x = torch.zeros(3, 1, 16, 16)
    with pytest.raises(NotImplementedError, match="no PDE"):
        problem.residual(x)
    obs = problem.observations()
    assert obs["downsample4"](x).shape == (3, 1, 4, 4)
    assert obs["sensors"](x).shape == (3, 4)


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="unknown parameter"):
        load("grf", lenght=0.1)
    with pytest.raises(ValueError, match="kernel must be"):
        load("grf", kernel="rbf")
    with pytest.raises(ValueError, match="dense eigh"):
        load("grf", kernel="matern", dim=2, n=128)

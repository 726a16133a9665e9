"""MIG against its limits: a permutation of the factors scores 1, independent noise 0, each
within the plug-in estimator's bias (B − 1)²/(2N) nats."""

from __future__ import annotations

import math

import numpy as np
import pytest

from physgen.diagnostics import discretize, latent_factor_correlation, mig, mutual_information

N, BINS = 20000, 10
BIAS = (BINS - 1) ** 2 / (2 * N)  # plug-in MI of independent variables (Miller 1955), nats


def _factors(rng: np.random.Generator) -> np.ndarray:
    """Three independent factors: uniform, Gaussian, and one on a grid of 5 values."""
    return np.stack([rng.uniform(size=N), rng.normal(size=N), rng.integers(0, 5, N) * 0.1], 1)


def test_mig_is_one_for_a_permutation_of_the_factors() -> None:
    rng = np.random.default_rng(0)
    v = _factors(rng)
    z = np.concatenate([v[:, [2, 0, 1]], rng.normal(size=(N, 1))], 1)  # + a nuisance latent
    result = mig(z, v, bins=BINS)
    np.testing.assert_array_equal(result.best_latent, [1, 2, 0])
    # Each gap is H(v) − (a bias-sized MI of an independent latent), over H(v) ≥ log 5.
    assert result.value == pytest.approx(1.0, abs=3 * BIAS / math.log(5))
    # Equal-width bins move with an affine map of a latent, so the estimate is unchanged.
    affine = z * np.array([-3.0, 2.0, 0.5, 1.0]) + 1.0
    assert mig(affine, v, bins=BINS).value == pytest.approx(result.value, abs=1e-12)


def test_mig_is_zero_for_independent_noise_and_for_duplicated_latents() -> None:
    rng = np.random.default_rng(1)
    v = _factors(rng)
    noise = mig(rng.normal(size=(N, 4)), v, bins=BINS)
    assert noise.value == pytest.approx(0.0, abs=3 * BIAS / math.log(5))
    assert noise.mutual_information.max() < 3 * BIAS
    # Negative control: a factor carried by two latents at once has no gap either.
    twice = np.concatenate([v[:, :1], v[:, :1], v[:, 1:]], 1)
    result = mig(twice, v, bins=BINS)
    assert result.gaps[0] == pytest.approx(0.0, abs=1e-12)
    assert result.gaps[1] == pytest.approx(1.0, abs=3 * BIAS / math.log(BINS))


def test_mutual_information_and_discretize_closed_forms() -> None:
    a = np.repeat(np.arange(4), 4)  # with np.tile: each of the 16 pairs exactly once
    assert mutual_information(a, a) == pytest.approx(math.log(4))
    assert mutual_information(a, np.tile(np.arange(4), 4)) == pytest.approx(0.0, abs=1e-12)
    codes = discretize(np.linspace(0, 1, 100)[:, None], bins=4)
    np.testing.assert_array_equal(np.bincount(codes[:, 0]), [25, 25, 25, 25])
    with pytest.raises(ValueError, match="constant"):
        mig(np.random.default_rng(2).normal(size=(50, 2)), np.ones((50, 1)))


def test_latent_factor_correlation() -> None:
    rng = np.random.default_rng(3)
    v = rng.normal(size=(5000, 2))
    z = np.stack([-2 * v[:, 1], v[:, 0] + 0.01 * rng.normal(size=5000)], 1)
    c = latent_factor_correlation(z, v)
    assert c[0, 1] == pytest.approx(-1.0) and c[1, 0] == pytest.approx(1.0, abs=1e-3)
    assert abs(c[0, 0]) < 4 / math.sqrt(5000)  # independent: |r| within ~4 standard errors

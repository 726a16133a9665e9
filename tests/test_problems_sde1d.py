"""The PI-GAN/PI-VAE stochastic elliptic problem: setup, sensors, constraints, statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from physgen.problem import load


@pytest.fixture(scope="module")
def sde():
    return load("sde1d")


@pytest.fixture(scope="module")
def data(sde):
    return sde.generate(400, seed=0)


def test_default_setup_is_the_papers(sde, data) -> None:
    assert sde.grid.shape == (401,) and sde.grid.spacing == pytest.approx((0.005,))
    x = data["x"].values
    assert x[0] == -1.0 and x[-1] == pytest.approx(1.0)
    assert list(data.attrs["fields"]) == ["k", "u", "f"]
    assert np.all(data["k"].values > 0)
    np.testing.assert_array_equal(data["u"].values[:, [0, -1]], 0.0)


def test_statistics_match_the_reference_generator(data) -> None:
    u, f, k = data["u"].values, data["f"].values, data["k"].values
    n = len(u)
    mid = u.shape[1] // 2
    # Independent reference generator, 2000 samples: mean u(0) ≈ 2.33, max std u ≈ 0.77.
    assert u[:, mid].mean() == pytest.approx(2.33, abs=5 * u[:, mid].std() / np.sqrt(n))
    assert u.std(0).max() == pytest.approx(0.77, rel=0.15)
    # f ~ GP(0.5, 9/400): pointwise mean and variance within Monte-Carlo error.
    assert abs(f.mean(0) - 0.5).max() < 5 * 0.15 / np.sqrt(n)
    assert f.var(0).mean() == pytest.approx(9 / 400, rel=0.1)
    # log k − 0.2 sin(1.5π(x+1)) ~ GP(0, 4/25).
    x = data["x"].values
    khat = np.log(k) - 0.2 * np.sin(1.5 * np.pi * (x + 1))
    assert khat.var(0).mean() == pytest.approx(4 / 25, rel=0.15)
    # Empirical covariance of f at lag 0.2 (ℓ_f = 0.2): (9/400) e^{-1}.
    lag = 40
    c = np.mean((f[:, :-lag] - 0.5) * (f[:, lag:] - 0.5))
    assert c == pytest.approx(9 / 400 * np.exp(-1), abs=0.004)


def test_sensor_sets_of_forward_mixed_inverse(sde, data) -> None:
    obs = sde.observations()
    fields = sde.to_tensor(data.isel(sample=slice(0, 5)))
    sizes = {name: len(o) for name, o in obs.items()}
    assert sizes == {"forward": 2 + 17 + 21, "mixed": 6 + 6 + 21, "inverse": 11 + 1 + 21}
    y = obs["forward"](fields)
    assert y.shape == (5, 40)
    torch.testing.assert_close(y[:, :2], torch.zeros(5, 2, dtype=y.dtype))  # u at x = ±1
    k_sensors = sde.sensor_indices(17)
    torch.testing.assert_close(y[:, 2:19], fields[:, 0, k_sensors])
    assert sde.sensor_indices(1).tolist() == [0]
    assert sde.sensor_indices(21)[[0, -1]].tolist() == [0, 400]


def test_constraints_and_float32_storage_floor(sde, data) -> None:
    fields = sde.to_tensor(data.isel(sample=slice(0, 8)))
    cons = sde.constraints(fields)
    assert float(cons["boundary"].max()) == 0.0 and float(cons["positivity"].max()) == 0.0
    shifted = fields.clone()
    shifted[:, 1] += 0.1
    assert torch.allclose(
        sde.constraints(shifted)["boundary"], torch.full((8,), 0.2, dtype=torch.float64)
    )
    # Rounding u to float32 (what a file stores) leaves a residual floor of ~1e-3: the
    # second difference at h = 0.005 amplifies the 6e-8 relative rounding by ~1/h².
    stored = fields.float().double()
    floor32 = float(sde.relative_residual(stored).max())
    assert 1e-5 < floor32 < 1e-2

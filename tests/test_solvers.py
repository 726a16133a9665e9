"""Reference solvers agree with the torch operators they must match, and ETDRK4 has order four."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from physgen import operators as ops
from physgen.grids import Grid
from physgen.solvers import SpectralGrid, diffusion_matrix, etdrk4


@pytest.mark.parametrize("mean", ["harmonic", "arithmetic"])
@pytest.mark.parametrize(
    "bc", ["dirichlet", "neumann", "periodic", ("dirichlet", "periodic"), ("neumann", "dirichlet")]
)
def test_diffusion_matrix_is_minus_flux_divergence(bc, mean: str) -> None:
    rng = np.random.default_rng(0)
    grid = Grid((7, 5), bc=bc, centering="cell")
    a = rng.uniform(0.5, 3.0, grid.shape)
    u = rng.standard_normal(grid.shape)
    matrix = diffusion_matrix(a, grid, mean=mean) @ u.ravel()
    torch_value = -ops.flux_divergence(torch.tensor(a), torch.tensor(u), grid, mean=mean)
    np.testing.assert_allclose(matrix, torch_value.numpy().ravel(), rtol=1e-13, atol=1e-10)


def test_spectral_grid_matches_the_torch_operators() -> None:
    grid = Grid((12, 10), domain=((0, 2), (0, 3)), bc="periodic")
    spectral = SpectralGrid(grid)
    u = np.random.default_rng(1).standard_normal(grid.shape)
    u_hat = spectral.fft(u)
    for axis in (0, 1):
        np.testing.assert_allclose(
            spectral.ifft(spectral.derivative_hat(u_hat, axis)),
            ops.derivative(torch.tensor(u), grid, axis, method="spectral").numpy(),
            atol=1e-12,
        )
    np.testing.assert_allclose(
        spectral.ifft(-spectral.k2 * u_hat),
        ops.laplacian(torch.tensor(u), grid, method="spectral").numpy(),
        atol=1e-10,
    )
    np.testing.assert_allclose(
        spectral.ifft(spectral.dealias * u_hat),
        ops.dealias(torch.tensor(u), grid).numpy(),
        atol=1e-12,
    )


def test_etdrk4_is_fourth_order_on_a_stiff_nonlinear_ode() -> None:
    # u' = −50 u + sin(u)... per mode; compare against a fine-step reference.
    linear = np.array([-50.0, -1.0, 0.0, 2.0])
    u0 = np.array([1.0, 0.5, -0.3, 0.2])

    def nonlinear(v: np.ndarray) -> np.ndarray:
        return np.sin(v) - 0.5 * v**2

    def run(steps: int) -> np.ndarray:
        return etdrk4(u0, linear, nonlinear, dt=1.0 / steps, steps_per_save=steps, saves=1)[-1]

    reference = run(4096)
    errors = [float(np.abs(run(s) - reference).max()) for s in (8, 16, 32, 64)]
    orders = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
    assert np.mean(orders) == pytest.approx(4.0, abs=0.3)

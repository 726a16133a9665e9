"""Residual statistics: a problem's own data sits at its floor, inconsistent fields far above."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from physgen.metrics import residual_metric, residual_rms


class Poisson1D:
    """−u'' = f on (0, 1), u(0) = u(1) = 0, 3-point stencil on n interior nodes; fields (u, f)."""

    field_names = ("u", "f")

    def __init__(self, n: int = 63) -> None:
        self.n, self.h = n, 1.0 / (n + 1)

    def generate(self, count: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        x = np.arange(1, self.n + 1) * self.h
        cov = np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * 0.1**2))
        evals, evecs = np.linalg.eigh(cov)
        f = 1.0 + rng.normal(size=(count, self.n)) @ (evecs * np.sqrt(evals.clip(0))).T
        bands = np.stack([-np.ones(self.n), 2 * np.ones(self.n), -np.ones(self.n)]) / self.h**2
        u = scipy.linalg.solve_banded((1, 1), bands, f.T).T
        return np.stack([u, f], axis=1).astype(np.float32)  # (count, 2, n), stored as float32

    def residual(self, fields: torch.Tensor) -> torch.Tensor:
        u, f = fields[:, 0], fields[:, 1]
        padded = torch.nn.functional.pad(u, (1, 1))  # Dirichlet ghost values u = 0
        return -(padded[:, 2:] - 2 * u + padded[:, :-2]) / self.h**2 - f


def test_generated_data_sits_at_its_floor() -> None:
    problem = Poisson1D()
    data = problem.generate(400, seed=0)
    res = residual_metric(problem, data[:200], data[200:])
    # Both halves are the generator's own output: the same float32-rounding floor.
    assert res["ratio"] == pytest.approx(1.0, abs=0.1)
    assert res["floor"] < 1e-3 * float(np.sqrt((data[:, 1] ** 2).mean()))


def test_inconsistent_fields_are_far_above_the_floor() -> None:
    problem = Poisson1D()
    data = problem.generate(400, seed=1)
    ref = data[200:]
    noisy = data[:200].copy()
    noisy[:, 0] += 1e-3 * np.random.default_rng(2).normal(size=noisy[:, 0].shape)
    assert residual_metric(problem, noisy, ref)["ratio"] > 100
    # Right marginals, wrong coupling: each u paired with another sample's f.
    shuffled = data[:200].copy()
    shuffled[:, 0] = shuffled[::-1, 0]
    assert residual_metric(problem, shuffled, ref)["ratio"] > 100


def test_residual_rms_batches_and_checks_channels() -> None:
    problem = Poisson1D()
    data = problem.generate(10, seed=3)
    torch.testing.assert_close(
        residual_rms(problem, data, batch_size=3), residual_rms(problem, data, batch_size=100)
    )
    with pytest.raises(ValueError, match=r"channels \['u', 'f'\]"):
        residual_rms(problem, data[:, :1])


class ScaledPoisson1D(Poisson1D):
    """The same problem with a physical scale: RMS of the source f per sample."""

    def residual_scale(self, fields: torch.Tensor) -> torch.Tensor:
        return fields[:, 1].square().mean(-1).sqrt()


def test_relative_residual_divides_by_the_problem_scale() -> None:
    problem = ScaledPoisson1D()
    data = problem.generate(12, seed=4)
    data[:, 1] *= np.linspace(1.0, 50.0, 12, dtype=np.float32)[:, None]  # scales differ per sample
    raw = residual_rms(problem, data, batch_size=5)
    scale = torch.as_tensor(data[:, 1], dtype=torch.float64).square().mean(-1).sqrt()
    rel = residual_rms(problem, data, relative=True, batch_size=5)
    torch.testing.assert_close(rel, raw / scale, rtol=1e-12, atol=0)
    auto = residual_metric(problem, data[:6], data[6:])
    assert auto["relative"] is True
    assert auto["value"] == pytest.approx(float(rel[:6].mean()), rel=1e-12)
    # Without a residual_scale the metric falls back to the raw RMS and says so.
    plain = residual_metric(Poisson1D(), data[:6], data[6:])
    assert plain["relative"] is False
    assert plain["value"] == pytest.approx(float(raw[:6].mean()), rel=1e-12)
    with pytest.raises(ValueError, match="residual_scale"):
        residual_rms(Poisson1D(), data, relative=True)

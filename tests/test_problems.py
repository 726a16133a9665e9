"""Every PDE problem: residual of its own data at the floor, perturbed data far above, seeds."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from physgen.problem import (
    Problem,
    TimeDependentProblem,
    available_problems,
    load,
    sample_seed,
)

# name → (small parameters for the default suite, stated relative-residual floor, samples).
CASES: dict[str, tuple[dict, float, int]] = {
    "sde1d": ({"n": 101}, 1e-10, 4),
    "darcy": ({"n": 24}, 1e-10, 3),
    "darcy_pidm": ({"n": 16, "modes": 16}, 1e-10, 3),
    # Time-dependent problems: the one-step defect of the generator's own float64 frames.
    "burgers": ({"n": 64, "t_start": 0.1, "t_end": 0.3, "dt_save": 0.002}, 1e-12, 3),
    "heat": ({"n": 32, "t_end": 0.2}, 1e-12, 3),
    "navier_stokes": ({"n": 32, "t_end": 1.0, "dt_save": 0.05}, 1e-12, 2),
    "kolmogorov": ({"n": 32, "reynolds": 100, "t_start": 2.0, "t_end": 2.5}, 1e-12, 2),
    "allen_cahn": ({"n": 32, "t_end": 2.0, "dt_save": 0.05}, 1e-12, 2),
}
# Small grids at each problem's default frame spacing (the spacing sets the old floor).
SMALL_TRAJECTORIES: dict[str, dict] = {
    "heat": {"n": 32, "t_end": 0.2},
    "burgers": {"n": 64, "t_end": 0.2},
    "allen_cahn": {"n": 32, "t_end": 2.0},
    "kolmogorov": {"n": 32, "t_start": 4.0, "t_end": 4.25},
    "navier_stokes": {"n": 32, "t_end": 6.0},
}
# Where the central-difference residual over the stored frames cannot see a 1 % error (in
# Burgers only over the first frames, where the rough u₀'s fast modes are not resolved).
BLIND_DIFFERENCE = {"burgers", "kolmogorov", "navier_stokes"}
BLIND_DIFFERENCE_DEFAULT = {"kolmogorov", "navier_stokes"}


def _problem(name: str) -> Problem:
    return load(name, **CASES[name][0])


@pytest.fixture(scope="module", params=sorted(CASES))
def generated(request: pytest.FixtureRequest) -> tuple[Problem, torch.Tensor, float]:
    name = request.param
    problem = _problem(name)
    ds = problem.generate(CASES[name][2], seed=5)
    return problem, problem.to_tensor(ds), CASES[name][1]


def test_every_problem_module_is_covered() -> None:
    pde_problems = set(available_problems()) - {"grf"}
    assert pde_problems <= set(CASES), f"untested problems: {pde_problems - set(CASES)}"


def test_residual_of_generated_data_is_at_the_floor(generated) -> None:
    problem, fields, floor = generated
    rel = problem.relative_residual(fields)
    assert rel.shape == (fields.shape[0],)
    assert float(rel.max()) <= floor


def test_perturbed_fields_have_a_far_larger_residual(generated) -> None:
    problem, fields, floor = generated
    noise = torch.randn(
        fields.shape, generator=torch.Generator().manual_seed(0), dtype=fields.dtype
    )
    scale = fields.flatten(2).std(-1).clamp_min(1e-12)  # (B, C)
    bumped = fields + 1e-3 * noise * scale.reshape(*scale.shape, *([1] * (fields.ndim - 2)))
    rel = problem.relative_residual(bumped)
    assert float(rel.min()) > 100 * max(floor, float(problem.relative_residual(fields).max()))


def test_residual_is_differentiable_and_float32_capable(generated) -> None:
    problem, fields, _ = generated
    x = fields.clone().requires_grad_()
    problem.relative_residual(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    r32 = problem.residual(fields.float())
    assert r32.dtype == torch.float32 and torch.isfinite(r32).all()


@pytest.mark.parametrize("name", sorted(CASES))
def test_generation_is_deterministic_per_seed_and_index(name: str) -> None:
    problem = _problem(name)
    a = problem.generate(3, seed=7)
    b = problem.generate(2, seed=7, start=1)
    for f in problem.field_names:
        np.testing.assert_array_equal(a[f].values[1:], b[f].values)
    np.testing.assert_array_equal(a["seed"].values, [sample_seed(7, i) for i in range(3)])
    c = problem.generate(1, seed=8)
    assert not np.array_equal(
        a[problem.field_names[0]].values[0], c[problem.field_names[0]].values[0]
    )


DEFAULT_FLOORS = [
    ("burgers", 1e-12),
    ("heat", 1e-12),
    pytest.param("allen_cahn", 1e-12, marks=pytest.mark.slow),
    pytest.param("kolmogorov", 1e-12, marks=pytest.mark.slow),
    pytest.param("navier_stokes", 1e-12, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "floor"), DEFAULT_FLOORS)
def test_stated_floors_of_the_default_settings(name: str, floor: float) -> None:
    problem = load(name)
    fields = problem.to_tensor(problem.generate(2, seed=1))
    assert float(problem.relative_residual(fields).max()) <= floor


def _noise_ratio(relative: Callable[[torch.Tensor], torch.Tensor], fields: torch.Tensor) -> float:
    """Largest relative residual of ``fields`` over the smallest of ``fields`` × (1 + 0.01 ε)."""
    noise = torch.randn(
        fields.shape, generator=torch.Generator().manual_seed(0), dtype=fields.dtype
    )
    return float(relative(fields).max() / relative(fields * (1 + 0.01 * noise)).min())


def _stored_trajectories(name: str, params: dict) -> tuple[TimeDependentProblem, torch.Tensor]:
    problem = load(name, **params)
    assert isinstance(problem, TimeDependentProblem) and problem.has_solver
    # Read back as from a file: the floor of float32 storage, not of float64 round-off.
    return problem, problem.to_tensor(problem.generate(2, seed=3)).float().double()


def _assert_residual_sees_one_percent_noise(name: str, params: dict, blind: set[str]) -> None:
    problem, fields = _stored_trajectories(name, params)
    # Float32 rounding (relative 6e-8) against 1 % noise on frames that change by O(1 %)
    # to O(1) per interval: the ratio sits near 1e-5 at most, three decades below 1e-2.
    assert _noise_ratio(problem.relative_residual, fields) < 1e-2
    if name in blind:
        # Negative control: the time difference's truncation floor hides the same noise.
        assert _noise_ratio(problem.relative_difference_residual, fields) > 1e-2


@pytest.mark.parametrize("name", sorted(SMALL_TRAJECTORIES))
def test_time_residual_sees_one_percent_noise(name: str) -> None:
    _assert_residual_sees_one_percent_noise(name, SMALL_TRAJECTORIES[name], BLIND_DIFFERENCE)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL_TRAJECTORIES))
def test_time_residual_sees_one_percent_noise_at_the_default_settings(name: str) -> None:
    _assert_residual_sees_one_percent_noise(name, {}, BLIND_DIFFERENCE_DEFAULT)


def test_every_time_dependent_problem_has_a_solver_residual() -> None:
    dependent = [n for n in CASES if isinstance(_problem(n), TimeDependentProblem)]
    assert sorted(dependent) == sorted(SMALL_TRAJECTORIES)


def test_one_step_residual_equals_the_generator_frames() -> None:
    # advance(frame j) reproduces frame j + 1 of the numpy generator to round-off, and the
    # residual is exactly (u_{j+1} − advance(u_j)) / dt_save frame by frame.
    problem = load("burgers", n=32, t_end=0.05)
    fields = problem.to_tensor(problem.generate(2, seed=0))
    stepped = problem.advance(fields[:, :, 0])
    torch.testing.assert_close(stepped, fields[:, :, 1], rtol=0, atol=1e-12)
    shifted = fields.clone()
    shifted[:, :, 3] += 0.5
    r = problem.residual(shifted)
    assert r.shape == (2, 1, fields.shape[2] - 1, 32)
    # Frame 3 is wrong: the defects of intervals 2 → 3 (+0.5/Δt) and 3 → 4 (advanced 0.5) show.
    assert float(r[:, :, 2].sub(0.5 / problem.params.dt_save).abs().max()) < 1e-9
    assert float(r[:, :, 3].abs().min()) > 0 and float(r[:, :, :2].abs().max()) < 1e-9


def test_sample_seeds_are_distinct_and_stable() -> None:
    seeds = {sample_seed(s, i) for s in range(4) for i in range(200)}
    assert len(seeds) == 800
    assert sample_seed(0, 0) == sample_seed(0, 0) and 0 <= sample_seed(3, 9) < 2**63


def test_fields_tensor_shape_is_checked() -> None:
    problem = _problem("sde1d")
    with pytest.raises(ValueError, match=r"fields tensor must be"):
        problem.residual(torch.zeros(2, 2, 101))


def test_constraints_hold_on_generated_data(generated) -> None:
    problem, fields, _ = generated
    for name, violation in problem.constraints(fields).items():
        assert violation.shape == (fields.shape[0],), name
        assert float(violation.max()) <= 1e-6, name


def test_heat_is_exact_in_time() -> None:
    # κ = 0 and one cell of advection per frame: every frame is the first one shifted.
    heat = load("heat", n=16, diffusivity=0.0, velocity=(1.0, 0.0), t_end=0.25, dt_save=1 / 16)
    frames = heat.generate(1, seed=2)["u"].values[0]  # (T, n, n)
    for j in range(1, frames.shape[0]):
        np.testing.assert_allclose(frames[j], np.roll(frames[0], j, axis=0), atol=1e-12)


def test_darcy_coefficient_statistics() -> None:
    darcy = load("darcy", n=32)
    ds = darcy.generate(64, seed=0)
    a, u = ds["a"].values, ds["u"].values
    assert set(np.unique(a)) == {3.0, 12.0}
    # ψ is a centred Gaussian field thresholded at 0: each cell is 12 with probability 1/2.
    frac = (a == 12.0).mean(axis=(1, 2))
    assert abs(frac.mean() - 0.5) < 4 * frac.std() / np.sqrt(len(frac))
    # FNO's 12/3 data peak near u ≈ 0.013 (421² nodes); this 32² FV solution is close.
    assert 0.008 < u.max(axis=(1, 2)).mean() < 0.02

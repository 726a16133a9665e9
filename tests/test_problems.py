"""Every PDE problem: residual of its own data at the floor, perturbed data far above, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from physgen.problem import Problem, available_problems, load, sample_seed

# name → (small parameters for the default suite, stated relative-residual floor, samples).
CASES: dict[str, tuple[dict, float, int]] = {
    "sde1d": ({"n": 101}, 1e-10, 4),
    "darcy": ({"n": 24}, 1e-10, 3),
    "darcy_pidm": ({"n": 16, "modes": 16}, 1e-10, 3),
    "burgers": ({"n": 64, "t_start": 0.1, "t_end": 0.3, "dt_save": 0.002}, 1e-7, 3),
    "heat": ({"n": 32, "t_end": 0.2}, 3e-5, 3),
    "navier_stokes": ({"n": 32, "t_end": 1.0, "dt_save": 0.05}, 3e-4, 2),
    "kolmogorov": ({"n": 32, "reynolds": 100, "t_start": 2.0, "t_end": 2.5}, 3e-5, 2),
    "allen_cahn": ({"n": 32, "t_end": 2.0, "dt_save": 0.05}, 2e-6, 2),
}


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
    ("burgers", 5e-2),
    ("heat", 2e-5),
    pytest.param("allen_cahn", 1e-3, marks=pytest.mark.slow),
    pytest.param("kolmogorov", 5e-2, marks=pytest.mark.slow),
    pytest.param("navier_stokes", 1e-1, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "floor"), DEFAULT_FLOORS)
def test_stated_floors_of_the_default_settings(name: str, floor: float) -> None:
    problem = load(name)
    fields = problem.to_tensor(problem.generate(2, seed=1))
    assert float(problem.relative_residual(fields).max()) <= floor


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

"""Physical-inconsistency penalties and Latin-hypercube sampling of the prior."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from physgen.physics import (
    PhysicsLoss,
    boundary_penalty,
    equality_penalty,
    inequality_penalty,
    latin_hypercube,
    latin_hypercube_normal,
    monotonicity_penalty,
    residual_penalty,
)


class _Poisson:
    """−u'' = f on (0, 1), u(0) = u(1) = 0, 3-point stencil; fields (B, 2, n) = (u, f)."""

    def __init__(self, n: int = 33) -> None:
        self.h = 1.0 / (n - 1)

    def residual(self, fields: Tensor) -> Tensor:
        u, f = fields[:, 0], fields[:, 1]
        interior = -(u[:, 2:] - 2 * u[:, 1:-1] + u[:, :-2]) / self.h**2 - f[:, 1:-1]
        return torch.cat([u[:, :1], interior, u[:, -1:]], dim=1)  # BC rows, then the PDE

    def residual_scale(self, fields: Tensor) -> Tensor:
        return fields[:, 1].pow(2).mean(1).sqrt()

    def constraints(self, fields: Tensor) -> dict[str, Tensor]:
        return {"positive_u": torch.relu(-fields[:, 0])}


def _exact(n: int = 33, batch: int = 4) -> Tensor:
    """Discrete solutions of the stencil: u = a·x(1−x) has −u'' = 2a exactly."""
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    a = torch.linspace(0.5, 2.0, batch, dtype=torch.float64)[:, None]
    u = a * x * (1 - x)
    return torch.stack([u, 2 * a.expand(-1, n)], dim=1)


def test_residual_penalty_is_zero_on_exact_solutions_and_positive_when_perturbed() -> None:
    problem, fields = _Poisson(), _exact()
    assert residual_penalty(problem, fields).max() < 1e-20
    bumped = fields.clone()
    bumped[:, 0, 10] += 1e-3
    penalty = residual_penalty(problem, bumped)
    assert torch.all(penalty > 1e-6)
    # Normalisation divides by the squared scale: doubling f's scale leaves the relative value.
    raw = residual_penalty(problem, bumped, normalize=False)
    torch.testing.assert_close(penalty, raw / problem.residual_scale(bumped) ** 2)


def test_physics_loss_sums_weighted_terms_per_sample() -> None:
    problem, fields = _Poisson(), _exact()
    loss = PhysicsLoss(
        problem,
        residual_weight=2.0,
        extra={"bc": (lambda x: boundary_penalty(x, channel=0, axis=0), 3.0)},
    )
    assert torch.all(loss(fields) < 1e-20)
    bad = fields.clone()
    bad[1, 0] -= 1.0  # negative u and non-zero boundary values on sample 1 only
    terms = loss.terms(bad)
    assert set(terms) == {"residual", "positive_u", "bc"}
    total = loss(bad)
    torch.testing.assert_close(
        total, 2.0 * terms["residual"] + terms["positive_u"] + 3.0 * terms["bc"]
    )
    assert total[1] > 0.1 and torch.all(total[[0, 2, 3]] < 1e-20)


def test_elementary_penalties() -> None:
    x = torch.tensor([[0.0, 1.0, 2.0], [0.0, 2.0, 1.0]])
    assert torch.equal(monotonicity_penalty(x), torch.tensor([0.0, 0.5]))
    assert torch.equal(monotonicity_penalty(x, increasing=False), torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(inequality_penalty(x, 1.0), torch.tensor([1 / 3, 1 / 3]))
    torch.testing.assert_close(equality_penalty(x, 1.0), torch.tensor([2 / 3, 2 / 3]))
    field = torch.zeros(2, 1, 4, 5)
    field[0, 0, :, 0] = 1.0  # violates the condition on the low end of axis 1 only
    torch.testing.assert_close(boundary_penalty(field, 0, axis=1), torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(boundary_penalty(field, 0, axis=0), torch.tensor([0.2, 0.0]))


@pytest.mark.parametrize(("n", "dim"), [(1, 1), (7, 3), (100, 4), (1000, 2)])
def test_latin_hypercube_has_one_point_per_stratum_in_every_dimension(n: int, dim: int) -> None:
    u = latin_hypercube(n, dim, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    assert u.shape == (n, dim)
    assert torch.all((u >= 0) & (u < 1))
    strata = torch.floor(u * n).long()
    for j in range(dim):
        assert torch.equal(strata[:, j].sort().values, torch.arange(n))


def test_latin_hypercube_normal_fills_equal_probability_slabs() -> None:
    n, dim = 500, 3
    z = latin_hypercube_normal(n, dim, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(z).all()
    cdf = 0.5 * (1 + torch.erf(z.double() / math.sqrt(2)))
    for j in range(dim):
        slabs = torch.floor(cdf[:, j] * n).long().clamp(max=n - 1)
        assert torch.equal(slabs.sort().values, torch.arange(n))
    # Stratification makes the sample mean far more accurate than i.i.d. draws (SE 1/√n).
    assert z.double().mean(0).abs().max() < 0.2 / math.sqrt(n)
    ones = torch.ones(dim, dtype=torch.float64)
    torch.testing.assert_close(z.double().var(0), ones, atol=0.05, rtol=0)


def test_latin_hypercube_refuses_empty_requests() -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        latin_hypercube(0, 2)


def test_physics_loss_of_sde1d_is_at_round_off_on_generator_output() -> None:
    from physgen.problem import load

    problem = load("sde1d", n=65)
    fields = problem.to_tensor(problem.generate(6, seed=3))  # (B, 3, 65) float64: k, u, f
    loss = PhysicsLoss(problem)
    exact = loss(fields)
    assert exact.max() < 1e-20  # squared relative residual and constraint violations
    perturbed = fields.clone()
    perturbed[:, 1, 20:40] *= 1.01  # u off by 1 % on part of the domain
    assert torch.all(loss(perturbed) > 1e-6)
    shifted = fields.clone()
    shifted[:, 1] += 0.1  # boundary values violated as well as the interior equation
    assert set(loss.terms(shifted)) == {"residual", "boundary", "positivity"}
    assert torch.all(loss.terms(shifted)["boundary"] > 0.03)

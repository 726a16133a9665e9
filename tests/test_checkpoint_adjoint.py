"""The checkpoint adjoint: the exact gradient of the computed ODE solution."""

from __future__ import annotations

import pytest
import torch

from physgen import checkpoint_adjoint
from physgen.likelihood import adjoint_mode, ode_log_prob, solve_ode
from physgen.models.cnf import CNF
from physgen.nn import MLP


def _problem(generator: torch.Generator) -> tuple[MLP, torch.Tensor]:
    torch.manual_seed(0)
    net = MLP(3, 2, hidden=(16,), act="tanh").double()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.7)  # a clearly non-linear flow
    x = torch.randn(6, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    return net, x


def _log_prob_grads(net: MLP, x: torch.Tensor, adjoint: bool | str, **ode: object) -> torch.Tensor:
    """Gradient of ``sum log p(x)`` with respect to the parameters (and ``x`` if it requires
    one), flattened."""

    def velocity(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return net(torch.cat([y, t[:, None]], 1))

    lp = ode_log_prob(
        velocity, x, lambda z: -0.5 * z.pow(2).sum(1), adjoint=adjoint,
        adjoint_params=tuple(net.parameters()), **ode,  # type: ignore[arg-type]
    ).log_prob  # fmt: skip
    grads = torch.autograd.grad(lp.sum(), [*net.parameters(), *([x] if x.requires_grad else [])])
    return torch.cat([g.flatten() for g in grads])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_fixed_grid_gradient_is_backprop_through_the_same_steps(
    method: str, generator: torch.Generator
) -> None:
    """On a fixed grid both differentiate the same composition of steps: equal to rounding
    (float64, 7 steps of a few hundred flops each: 1e-12 leaves a wide margin)."""
    net, x = _problem(generator)
    ode = {"method": method, "steps": 7}
    direct = _log_prob_grads(net, x, False, **ode)
    assert _rel(_log_prob_grads(net, x, "checkpoint", **ode), direct) < 1e-12
    # The continuous adjoint on the same grid is another (consistent) gradient: it fails.
    assert _rel(_log_prob_grads(net, x, "backsolve", **ode), direct) > 1e-6


def test_a_wrong_tableau_fails(generator: torch.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: retaking the steps with the classic RK4 rule instead of the solver's
    3/8 rule (both fourth order) gives a measurably different gradient."""
    net, x = _problem(generator)
    direct = _log_prob_grads(net, x, False, method="rk4", steps=7)
    classic = ((0.5, 0.5, 1.0), ((0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), (1 / 6, 1 / 3, 1 / 3, 1 / 6))
    monkeypatch.setitem(checkpoint_adjoint._TABLEAUS, "rk4", classic)
    assert _rel(_log_prob_grads(net, x, "checkpoint", method="rk4", steps=7), direct) > 1e-9


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_adaptive_gradient_matches_backprop_to_the_tolerance(
    method: str, tol: float, generator: torch.Generator
) -> None:
    """Adaptive solves: the same accepted steps, except that backpropagation also follows
    the step-size controller (an O(tol) term), so the two agree to within ``tol``."""
    net, x = _problem(generator)
    ode = {"method": method, "rtol": tol, "atol": tol}
    direct = _log_prob_grads(net, x, False, **ode)
    assert _rel(_log_prob_grads(net, x, "checkpoint", **ode), direct) < tol
    # Negative control: a solve 100x coarser is a different computed solution.
    coarse = {"method": method, "rtol": 100 * tol, "atol": 100 * tol}
    assert _rel(_log_prob_grads(net, x, "checkpoint", **coarse), direct) > tol


def test_reverse_time_solve_gradient(generator: torch.Generator) -> None:
    """Integrating from t=1 to t=0 (sampling's direction): gradient of the end state."""
    net, x = _problem(generator)

    def grads(adjoint: bool | str) -> torch.Tensor:
        def velocity(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return net(torch.cat([y, t[:, None]], 1))

        out, _ = solve_ode(velocity, x, 1.0, 0.0, method="rk4", steps=5, adjoint=adjoint,
                           adjoint_params=tuple(net.parameters()))  # fmt: skip
        g = torch.autograd.grad(out.pow(2).sum(), [*net.parameters(), x])
        return torch.cat([v.flatten() for v in g])

    assert _rel(grads("checkpoint"), grads(False)) < 1e-12


def test_adjoint_mode_choices() -> None:
    assert adjoint_mode(False, "dopri5") is None
    assert adjoint_mode(True, "dopri5") == "checkpoint"
    assert adjoint_mode(True, "explicit_adams") == "backsolve"
    with pytest.raises(ValueError, match="needs a Runge–Kutta method"):
        adjoint_mode("checkpoint", "explicit_adams")
    with pytest.raises(ValueError, match="adjoint must be"):
        adjoint_mode("yes", "dopri5")


def test_field_cnf_with_attention_matches_backprop(generator: torch.Generator) -> None:
    """A U-Net velocity with attention (retaken steps keep a differentiable divergence,
    so attention runs on composite kernels): equal to backprop on a fixed grid."""
    x = torch.randn(3, 1, 8, generator=generator, dtype=torch.float64)
    grads = []
    for adjoint in (False, True):
        torch.manual_seed(0)
        model = CNF((1, 8), channels=(8,), attention=[True], trace="hutchinson",
                    method="rk4", steps=3, adjoint=adjoint).double()  # fmt: skip
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.3)  # the zero-initialised output layer too
        loss = model.log_prob(x, generator=torch.Generator().manual_seed(0)).sum()
        grads.append(
            torch.cat([g.flatten() for g in torch.autograd.grad(loss, [*model.parameters()])])
        )
    assert grads[0].norm() > 0
    assert _rel(grads[1], grads[0]) < 1e-12

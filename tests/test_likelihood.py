"""Divergences and ODE likelihoods: exact trace, Hutchinson, closed forms, Fokker–Planck."""

from __future__ import annotations

import math

import pytest
import torch
from gaussian_closed_form import GaussianData, MixtureData1D

from physgen.likelihood import (
    divergence,
    hutchinson_probes,
    ode_log_prob,
    solve_ode,
)
from physgen.nn import MLP
from physgen.sde import build_sde


def _field_net(shape: tuple[int, ...]) -> tuple[torch.nn.Module, callable]:
    d = math.prod(shape)
    net = MLP(d, d, hidden=(16,), act="tanh").double()
    return net, lambda x: net(x.flatten(1)).reshape(x.shape)


def test_exact_divergence_is_the_jacobian_trace(generator: torch.Generator) -> None:
    torch.manual_seed(0)
    _, fn = _field_net((2, 3))
    x = torch.randn(4, 2, 3, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        out, div = divergence(fn, x)
    for b in range(4):
        jac = torch.autograd.functional.jacobian(lambda y: fn(y[None])[0], x[b])  # (2,3,2,3)
        torch.testing.assert_close(div[b], jac.reshape(6, 6).trace())
    torch.testing.assert_close(out, fn(x))
    assert not out.requires_grad and not div.requires_grad  # evaluation: nothing kept


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(kind: str, generator: torch.Generator) -> None:
    torch.manual_seed(0)
    _, fn = _field_net((5,))
    x = torch.randn(1, 5, generator=generator, dtype=torch.float64)
    _, exact = divergence(fn, x)
    n = 20000
    xs = x.expand(n, 5)
    probes = hutchinson_probes(xs, 1, kind, generator)
    _, est = divergence(fn, xs, probes)
    se = est.std() / math.sqrt(n)
    assert abs(est.mean() - exact[0]) < 4 * se
    assert est.std() > 1e-3  # a real estimator, not the exact trace in disguise
    # Several probes average the single-probe estimates.
    probes4 = hutchinson_probes(xs[:8], 4, kind, generator)
    _, avg = divergence(fn, xs[:8], probes4)
    singles = torch.stack([divergence(fn, xs[:8], p[None])[1] for p in probes4])
    torch.testing.assert_close(avg, singles.mean(0))


def test_rademacher_probes_have_lower_variance_than_gaussian(generator: torch.Generator) -> None:
    """For a fixed Jacobian A: Var_gauss = 2‖A_s‖_F², Var_rad = Var_gauss - 2 Σ_i A_ii²."""
    A = torch.randn(4, 4, generator=generator, dtype=torch.float64)
    x = torch.zeros(40000, 4, dtype=torch.float64)
    sym = 0.5 * (A + A.T)
    var_g = 2 * (sym**2).sum()
    var_r = var_g - 2 * (A.diagonal() ** 2).sum()
    for kind, var in (("gaussian", var_g), ("rademacher", var_r)):
        _, est = divergence(lambda y: y @ A.T, x, hutchinson_probes(x, 1, kind, generator))
        assert float(est.var()) == pytest.approx(float(var), rel=0.05)


def test_divergence_is_differentiable_when_recording(generator: torch.Generator) -> None:
    torch.manual_seed(0)
    net, fn = _field_net((3,))
    x = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    _, div = divergence(fn, x)
    assert div.requires_grad
    (grad,) = torch.autograd.grad(div.sum(), net[0].weight)
    jacobian = torch.autograd.functional.jacobian
    ref = sum(jacobian(lambda y: fn(y[None])[0], x[b], create_graph=True).trace() for b in range(5))
    (ref_grad,) = torch.autograd.grad(ref, net[0].weight)
    torch.testing.assert_close(grad, ref_grad)


def _gaussian(name: str, shape: tuple[int, ...]) -> GaussianData:
    mean = torch.tensor([0.8, -1.2], dtype=torch.float64)
    cov = torch.tensor([[0.5, 0.35], [0.35, 1.5]], dtype=torch.float64)
    return GaussianData(mean, cov, build_sde(name), shape)


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_probability_flow_likelihood_is_the_analytic_density(
    name: str, generator: torch.Generator
) -> None:
    data = _gaussian(name, (1, 2))
    sde, eps = data.sde, 1e-3
    x = data.sample(64, eps, generator)
    flow = sde.probability_flow(data.score)
    # Base = the exact terminal marginal, so only the solver's error is left.
    res = ode_log_prob(
        flow.drift,
        x,
        lambda z: data.log_prob(z, sde.T),
        t0=eps,
        t1=sde.T,
        rtol=1e-8,
        atol=1e-8,
    )
    torch.testing.assert_close(res.log_prob, data.log_prob(x, eps), rtol=0, atol=1e-5)
    # With the SDE's own prior the error is exactly the prior's mismatch at the end point.
    res_prior = ode_log_prob(
        flow.drift, x, sde.prior_log_prob, t0=eps, t1=sde.T, rtol=1e-8, atol=1e-8
    )
    mismatch = sde.prior_log_prob(res.z) - data.log_prob(res.z, sde.T)
    torch.testing.assert_close(
        res_prior.log_prob - data.log_prob(x, eps), mismatch, rtol=0, atol=1e-5
    )


def test_hutchinson_likelihood_is_unbiased(generator: torch.Generator) -> None:
    data = _gaussian("vp", (2,))
    x = data.sample(1, 1e-3, generator).expand(2000, 2)
    flow = data.sde.probability_flow(data.score)
    probes = hutchinson_probes(x, 1, "rademacher", generator)
    res = ode_log_prob(
        flow.drift, x, lambda z: data.log_prob(z, 1.0), t0=1e-3, t1=1.0, probes=probes
    )
    exact = data.log_prob(x[:1], 1e-3)
    se = res.log_prob.std() / math.sqrt(x.shape[0])
    assert res.log_prob.std() > 1e-3
    assert abs(res.log_prob.mean() - exact[0]) < 4 * se


def test_probability_flow_density_satisfies_fokker_planck() -> None:
    r"""1-D mixture data; p(x, t) is computed by transporting the exact p_T back along the
    probability-flow ODE (change of variables), then ∂p/∂t + ∂x(f p) - ½g²∂xx p is
    evaluated on the grid by central differences: second order in (h, dx)."""
    sde = build_sde("vp")
    data = MixtureData1D(
        weights=torch.tensor([0.3, 0.7], dtype=torch.float64),
        means=torch.tensor([-1.5, 1.0], dtype=torch.float64),
        stds=torch.tensor([0.3, 0.5], dtype=torch.float64),
        sde=sde,
    )
    flow = sde.probability_flow(data.score)
    t0, T = 0.1, sde.T

    def density(xs: torch.Tensor, t: float) -> torch.Tensor:
        res = ode_log_prob(
            flow.drift,
            xs.reshape(-1, 1),
            lambda z: data.log_prob(z, torch.full((z.shape[0],), T, dtype=z.dtype)),
            t0=t,
            t1=T,
            rtol=1e-9,
            atol=1e-9,
        )
        return res.log_prob.detach().exp()

    def residual(n: int) -> tuple[float, float]:
        xs = torch.linspace(-3.0, 3.0, n, dtype=torch.float64)
        dx = float(xs[1] - xs[0])
        h = dx / 20
        p_m, p_0, p_p = density(xs, t0 - h), density(xs, t0), density(xs, t0 + h)
        tt = torch.full_like(xs, t0)
        a, g2 = sde.drift_coefficient(tt), sde.diffusion(tt) ** 2
        dpdt = (p_p - p_m) / (2 * h)
        flux = a * xs * p_0
        rhs = (
            -(flux[2:] - flux[:-2]) / (2 * dx)
            + 0.5 * g2[1:-1] * (p_0[2:] - 2 * p_0[1:-1] + p_0[:-2]) / dx**2
        )
        res = (dpdt[1:-1] - rhs).abs().max()
        scale = dpdt.abs().max()
        # Without the diffusion term the equation is far from satisfied (the test can fail).
        wrong = (dpdt[1:-1] + (flux[2:] - flux[:-2]) / (2 * dx)).abs().max()
        return float(res / scale), float(wrong / scale)

    coarse, wrong = residual(41)
    fine, _ = residual(81)
    assert fine < 1e-2, f"relative Fokker–Planck residual {fine:.2e}"
    assert 3.5 < coarse / fine < 4.5, f"not second order: {coarse:.2e} -> {fine:.2e}"
    assert wrong > 0.3


def test_adjoint_gradients_match_backprop(generator: torch.Generator) -> None:
    torch.manual_seed(0)
    net = MLP(3, 2, hidden=(8,), act="tanh").double()

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return net(torch.cat([x, t[:, None]], 1))

    x = torch.randn(6, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    normal = torch.distributions.Normal(0.0, 1.0)

    def base(z: torch.Tensor) -> torch.Tensor:
        return normal.log_prob(z).sum(1)

    grads = []
    for adjoint in (False, True, "backsolve"):
        lp = ode_log_prob(
            velocity, x, base, rtol=1e-9, atol=1e-9, adjoint=adjoint,
            adjoint_params=tuple(net.parameters()),
        ).log_prob  # fmt: skip
        grads.append(torch.autograd.grad(lp.sum(), [*net.parameters(), x]))
    for g_direct, *g_adjoints in zip(*grads, strict=True):
        for g_adjoint in g_adjoints:
            torch.testing.assert_close(g_direct, g_adjoint, rtol=1e-5, atol=1e-7)


def test_solve_ode_fixed_grid_orders(generator: torch.Generator) -> None:
    """dx/dt = -x t: Euler is first order and RK4 fourth order in the step."""
    x0 = torch.randn(3, 2, generator=generator, dtype=torch.float64)
    exact = x0 * math.exp(-0.5)

    def err(method: str, steps: int) -> float:
        z, nfe = solve_ode(lambda x, t: -x * t[:, None], x0, 0.0, 1.0, method=method, steps=steps)
        assert nfe == steps * {"euler": 1, "rk4": 4}[method]
        return float((z - exact).abs().max())

    assert 1.8 < err("euler", 20) / err("euler", 40) < 2.2
    assert 15.0 < err("rk4", 10) / err("rk4", 20) < 17.5
    with pytest.raises(ValueError, match="fixed-grid"):
        solve_ode(lambda x, t: x, x0, 0.0, 1.0, method="rk4")

"""Forward SDEs: kernels consistent with drift/diffusion, Monte Carlo, DDPM limit, interpolants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from physgen.sde import (
    SDE,
    VPSDE,
    DiscreteVPSDE,
    build_interpolant,
    build_sde,
)

SDES = ["vp", "subvp", "ve", "cosine", "ddpm-linear", "ddpm-cosine"]


def _coeffs(sde: SDE, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return sde.coefficients(t.to(torch.float64))


@pytest.mark.parametrize("name", SDES)
def test_kernel_solves_the_moment_equations(name: str) -> None:
    """Fokker–Planck for a linear SDE closes on the moments: α' = aα, (σ²)' = 2aσ² + g²."""
    sde = build_sde(name)
    # Off the DDPM grid points i/N, where beta(t) jumps.
    t = torch.linspace(0.0504, 0.9404, 41, dtype=torch.float64) * sde.T
    h = 1e-6
    alpha, sigma = _coeffs(sde, t)
    (alpha_p, sigma_p), (alpha_m, sigma_m) = _coeffs(sde, t + h), _coeffs(sde, t - h)
    dalpha = (alpha_p - alpha_m) / (2 * h)
    dvar = (sigma_p**2 - sigma_m**2) / (2 * h)
    a, g = sde.drift_coefficient(t), sde.diffusion(t)
    torch.testing.assert_close(dalpha, a * alpha, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(dvar, 2 * a * sigma**2 + g**2, rtol=1e-6, atol=1e-8)
    alpha0, sigma0 = _coeffs(sde, torch.zeros(1))
    assert float(alpha0) == pytest.approx(1.0) and float(sigma0) == pytest.approx(0.0, abs=1e-12)


def _euler_maruyama_moments(sde: SDE, t_end: float, steps: int) -> tuple[float, float]:
    """Exact mean factor and variance of the forward Euler–Maruyama chain from a point mass."""
    mean, var = 1.0, 0.0
    dt = t_end / steps
    for k in range(steps):
        t = torch.tensor([k * dt], dtype=torch.float64)
        a, g = float(sde.drift_coefficient(t)), float(sde.diffusion(t))
        mean, var = (1 + a * dt) * mean, (1 + a * dt) ** 2 * var + g**2 * dt
    return mean, var


@pytest.mark.parametrize("name", ["vp", "subvp", "ve", "ddpm-linear"])
def test_marginal_is_the_limit_of_forward_euler_maruyama(name: str) -> None:
    """The EM chain's moments converge to ``marginal`` at first order in dt."""
    sde = build_sde(name)
    t_end = 0.6
    alpha, sigma = _coeffs(sde, torch.tensor([t_end]))
    errors = []
    for steps in (100, 200, 400, 800):
        mean, var = _euler_maruyama_moments(sde, t_end, steps)
        errors.append(abs(mean - float(alpha)) + abs(var - float(sigma) ** 2))
    order = np.polyfit(np.log([100, 200, 400, 800]), np.log(errors), 1)[0]
    assert -1.15 < order < -0.85, f"EM weak order {-order:.3f}, errors {errors}"


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_monte_carlo_forward_sde_matches_marginal(name: str, generator: torch.Generator) -> None:
    """Simulated forward paths (drift + diffusion) have the kernel's mean and variance."""
    sde = build_sde(name)
    n, steps, t_end = 20000, 200, 0.6
    x0 = torch.tensor([[1.5, -2.0]], dtype=torch.float64).expand(n, 2).reshape(n, 1, 2)
    x = x0.clone()
    dt = t_end / steps
    for k in range(steps):
        t = torch.full((n,), k * dt, dtype=torch.float64)
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float64)
        x = x + sde.drift(x, t) * dt + sde.diffusion(t)[:1] * math.sqrt(dt) * noise
    # Compare with the chain's exact moments (sampling error only) ...
    m_factor, var = _euler_maruyama_moments(sde, t_end, steps)
    se_mean, se_var = math.sqrt(var / n), var * math.sqrt(2 / (n - 1))
    assert (x.mean(0) - m_factor * x0[0]).abs().max() < 4 * se_mean
    assert (x.var(0) - var).abs().max() < 4 * se_var
    # ... and the kernel itself, up to the chain's O(dt) bias.
    mean_k, std_k = sde.marginal(x0[:1], torch.tensor([t_end], dtype=torch.float64))
    bias_mean = abs(m_factor - float(_coeffs(sde, torch.tensor([t_end]))[0])) * 2.0
    assert (x.mean(0) - mean_k[0]).abs().max() < 4 * se_mean + bias_mean
    assert (x.var(0) - std_k**2).abs().max() < 4 * se_var + abs(var - float(std_k) ** 2)


def test_ddpm_chain_converges_to_vp_sde() -> None:
    """DDPM's linear betas ``beta_min/N .. beta_max/N``: ᾱ at t = i/N → VP's α(t)², O(1/N)."""
    vp = VPSDE(0.1, 20.0)
    errors = []
    ns = [100, 200, 400, 800, 1600]
    for n in ns:
        ddpm = DiscreteVPSDE.linear(n, 0.1 / n, 20.0 / n)
        t = torch.arange(1, n + 1, dtype=torch.float64) / n
        abar = torch.cumprod(1 - ddpm.betas, 0)
        torch.testing.assert_close(ddpm.coefficients(t)[0] ** 2, abar)  # the grid is exact DDPM
        errors.append(float((abar - vp.coefficients(t)[0] ** 2).abs().max()))
    order = np.polyfit(np.log(ns), np.log(errors), 1)[0]
    assert -1.1 < order < -0.9, f"order {-order:.3f}, errors {errors}"
    assert max(e * n for e, n in zip(errors, ns, strict=True)) < 1.0  # error <= 1/N


def test_ddpm_default_schedule_is_the_vp_sde_discretization() -> None:
    """DDPM(1e-4..0.02, N=1000) ≈ VPSDE(0.1, 20) everywhere on [0, 1]."""
    t = torch.linspace(0, 1, 333, dtype=torch.float64)
    a_d, s_d = DiscreteVPSDE.linear().coefficients(t)
    a_c, s_c = VPSDE().coefficients(t)
    assert (a_d - a_c).abs().max() < 2e-3 and (s_d - s_c).abs().max() < 2e-3


@pytest.mark.parametrize("name", SDES)
@pytest.mark.parametrize("shape", [(3,), (2, 5), (1, 4, 3), (2, 2, 3, 2)])
def test_shapes_are_generic(name: str, shape: tuple[int, ...], generator: torch.Generator) -> None:
    sde = build_sde(name)
    x = torch.randn(4, *shape, generator=generator, dtype=torch.float64)
    t = torch.rand(4, generator=generator, dtype=torch.float64) * sde.T
    mean, std = sde.marginal(x, t)
    assert mean.shape == x.shape and std.shape == (4,)
    assert sde.drift(x, t).shape == x.shape and sde.diffusion(t).shape == (4,)
    z = sde.prior_sample((4, *shape), generator=generator, dtype=torch.float64)
    assert z.shape == x.shape
    ref = torch.distributions.Normal(0.0, sde.prior_std()).log_prob(z).flatten(1).sum(1)
    torch.testing.assert_close(sde.prior_log_prob(z), ref)
    rev = sde.reverse(lambda y, s: -y).drift(x, t)
    assert rev.shape == x.shape


@pytest.mark.parametrize("name", SDES[:4])
def test_prior_matches_the_terminal_marginal(name: str) -> None:
    sde = build_sde(name)
    alpha, sigma = _coeffs(sde, torch.tensor([sde.T]))
    assert float(alpha) < 1e-2 or name == "ve"
    assert float(sigma) == pytest.approx(sde.prior_std(), rel=1e-2)


@pytest.mark.parametrize("name", ["linear", "vp"])
def test_interpolant_velocity_is_the_path_derivative(name: str, generator: torch.Generator) -> None:
    path = build_interpolant(name)
    x0 = torch.randn(6, 2, 3, generator=generator, dtype=torch.float64)
    noise = torch.randn(6, 2, 3, generator=generator, dtype=torch.float64)
    t = torch.rand(6, generator=generator, dtype=torch.float64) * 0.9 + 0.05
    h = 1e-6
    fd = (path.sample(x0, noise, t + h) - path.sample(x0, noise, t - h)) / (2 * h)
    torch.testing.assert_close(path.target_velocity(x0, noise, t), fd, rtol=1e-7, atol=1e-7)
    a0, s0 = path.coefficients(torch.zeros(1, dtype=torch.float64))
    a1, s1 = path.coefficients(torch.ones(1, dtype=torch.float64))
    assert (float(a0), float(s0)) == (1.0, 0.0)
    assert float(a1) == pytest.approx(0.0, abs=1e-12) and float(s1) == pytest.approx(1.0)
    torch.testing.assert_close(path.mean_t(x0, t), path.sample(x0, torch.zeros_like(x0), t))


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="unknown sde 'vq'"):
        build_sde("vq")
    with pytest.raises(ValueError, match="unknown interpolant"):
        build_interpolant("curvy")
    with pytest.raises(ValueError, match="beta_min"):
        VPSDE(1.0, 0.5)
    with pytest.raises(ValueError, match="betas"):
        DiscreteVPSDE(torch.tensor([0.1, 1.5]))
    with pytest.raises(ValueError, match="offset s must be positive"):
        build_sde("cosine", s=0.0)

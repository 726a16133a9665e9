r"""Posterior sampling with an unconditional diffusion prior, guided by the observation.

The posterior score splits by Bayes' rule into the prior score and a likelihood score,

.. math:: \nabla_{x_t}\log p_t(x_t \mid y) = \nabla_{x_t}\log p_t(x_t)
          + \nabla_{x_t}\log p_t(y \mid x_t),

and :math:`p_t(y \mid x_t) = \int p(y \mid x_0)\,p(x_0 \mid x_t)\,dx_0` is approximated by
replacing :math:`p(x_0 \mid x_t)` with a Gaussian around Tweedie's denoised estimate
:math:`\hat x_0 = (x_t + \sigma_t^2 s(x_t, t))/\alpha_t` with covariance :math:`C_t`. For a
linear observation :math:`y = Ax_0 + \varepsilon`, :math:`\varepsilon \sim N(0, \sigma_y^2 I)`:

.. math:: p_t(y \mid x_t) \approx N\big(y;\ A\hat x_0,\ A C_t A^\top + \sigma_y^2 I\big),\qquad
          \nabla_{x_t}\log p_t(y \mid x_t) \approx
          J^\top A^\top (A C_t A^\top + \sigma_y^2 I)^{-1}(y - A\hat x_0),

with :math:`J = \partial\hat x_0/\partial x_t` applied by automatic differentiation. The
choice of :math:`C_t` is the ``covariance`` option:

* ``"exact"`` — :math:`C_t = \operatorname{Cov}[x_0 \mid x_t] = (\sigma_t^2/\alpha_t) J`
  (second-order Tweedie; Boys et al., "Tweedie Moment Projected Diffusions", 2023), built
  from the full Jacobian: exact for Gaussian priors, cost grows with the dimension, so for
  small problems and for checking the others;
* ``"pgdm"`` — :math:`C_t = r_t^2 I`, :math:`r_t^2 = \sigma_t^2/(\alpha_t^2 + \sigma_t^2)`
  (ΠGDM, Song et al., ICLR 2023): the posterior covariance of a standard-normal prior, right
  for z-scored data at high noise; uses ``A Aᵀ = γ I`` (the operator's ``gram``);
* ``"isotropic"`` — ΠGDM's :math:`C_t` with the Jacobian that goes with it,
  :math:`J = (\alpha_t/\sigma_t^2) C_t = \alpha_t/(\alpha_t^2+\sigma_t^2) I`, in place of the
  network's: no back-propagation through the network, and the Tweedie shift
  :math:`r_t^2 A^\top(\gamma r_t^2 + \sigma_y^2)^{-1}(y - A\hat x_0)` is a soft projection onto
  :math:`\{Ax = y\}`, bounded whatever the denoiser's error (the network Jacobian of an
  imperfect denoiser carries a :math:`1/\alpha_t` factor that blows up at high noise). Exact for
  a standard-normal prior; the physics term uses :math:`C_R = r_t^2\lambda I` with
  :math:`\lambda` the largest eigenvalue of :math:`GG^\top`, :math:`G = \partial R/\partial\hat
  x_0` (power iteration), so the linearized residual contracts in every direction
  (a Levenberg–Marquardt-like step) instead of overshooting along stiff modes;
* ``"dps"`` — :math:`C_t = 0` (DPS, Chung et al., ICLR 2023), which needs :math:`\sigma_y > 0`.

An optional physics term treats the PDE residual of the denoised estimate as a further
observation, :math:`0 = R(\hat x_0) + \eta`, :math:`\eta \sim N(0, \sigma_R^2 I)`, applied
on :math:`\hat x_0` and never on the noisy :math:`x_t` (DiffusionPDE, Huang et al., NeurIPS
2024, arXiv:2406.17763; Shu et al., arXiv:2211.14680). With ``covariance="exact"`` it joins
the observation in one joint Gaussian (exact for a linear residual); otherwise its gradient
is :math:`-J^\top \nabla R^\top R/\sigma_R^2`, switched on for :math:`t \le` ``residual_until``
(DiffusionPDE applies it over the last 20 % of the trajectory).

The guided score plugs into every sampler of :mod:`physgen.samplers` unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from physgen.sde import SDE, ScoreFn
from physgen.utils import append_dims

__all__ = ["Covariance", "ScorePrior", "posterior_score"]

Covariance = Literal["exact", "pgdm", "isotropic", "dps"]


@dataclass(frozen=True)
class ScorePrior:
    """An unconditional diffusion prior: its forward SDE and its score ``s(x, t)``."""

    sde: SDE
    score: ScoreFn


def _jacobian(out: Tensor, x: Tensor) -> Tensor:
    """Per-sample Jacobians ``(B, M, D)`` of ``out (B, M)`` w.r.t. ``x (B, D)`` (M backward passes).

    Samples of the batch are independent, so one backward pass per output row gives that row
    for every sample at once.
    """
    rows = [
        torch.autograd.grad(out[:, k].sum(), x, retain_graph=True)[0] for k in range(out.shape[1])
    ]
    return torch.stack(rows, dim=1)


def posterior_score(
    prior: ScorePrior,
    observe: Callable[[Tensor], Tensor],
    y: Tensor,
    *,
    noise_std: float = 0.0,
    covariance: Covariance = "isotropic",
    gram: float = 1.0,
    scale: float = 1.0,
    residual: Callable[[Tensor], Tensor] | None = None,
    residual_std: float = 1.0,
    residual_until: float | None = None,
) -> ScoreFn:
    r"""The guided score :math:`s(x_t, t) + \nabla_{x_t}\log \tilde p_t(y \mid x_t)`.

    Args:
        prior: the unconditional prior (SDE and score, in the units the model was trained in).
        observe: the observation operator ``A`` (linear), batch ``(B, *shape)`` → ``(B, *obs)``.
        y: the observation, ``(B, *obs)`` for a batch of ``B`` samples (repeat one observation
            to draw several posterior samples of it).
        noise_std: σ_y of the observation noise.
        covariance: ``"exact"``, ``"pgdm"``, ``"isotropic"`` or ``"dps"`` (see the module
            docstring).
        gram: γ with ``A Aᵀ = γ I`` (used by ``"pgdm"`` and ``"isotropic"``).
        scale: a multiplier of the likelihood score (1 = Bayes' rule; larger values trade
            calibration for data consistency).
        residual: optional PDE residual ``R``, ``(B, *shape)`` → ``(B, ...)``, evaluated on
            the denoised estimate.
        residual_std: σ_R, the residual size the physics term tolerates.
        residual_until: apply the physics term only for ``t ≤ residual_until`` (default: all t).

    Returns:
        A score function ``(x, t) -> (B, *shape)`` that works under ``torch.no_grad``.
    """
    if covariance not in ("exact", "pgdm", "isotropic", "dps"):
        raise ValueError(
            f"covariance must be 'exact', 'pgdm', 'isotropic' or 'dps', got {covariance!r}"
        )
    if covariance == "dps" and noise_std <= 0:
        raise ValueError("covariance='dps' needs noise_std > 0 (it assumes Cov[x0 | xt] = 0)")
    if noise_std < 0 or residual_std <= 0 or gram <= 0:
        raise ValueError("noise_std must be ≥ 0, residual_std and gram > 0")
    sde, prior_score = prior.sde, prior.score
    y_flat = y.flatten(1)  # (B, m)

    def active(t: Tensor) -> bool:
        return residual is not None and (
            residual_until is None or bool((t <= residual_until).all())
        )

    def isotropic(x: Tensor, t: Tensor) -> Tensor:
        with torch.no_grad():
            s = prior_score(x, t)
        alpha, sigma = sde.coefficients(t)  # (B,) each
        x0 = (x + append_dims(sigma**2, x.ndim) * s) / append_dims(alpha, x.ndim)
        c = (sigma**2 / (alpha**2 + sigma**2))[:, None]  # r_t², (B, 1)
        with torch.enable_grad():
            x0 = x0.detach().requires_grad_(True)
            r = observe(x0).flatten(1) - y_flat  # (B, m)
            objective = (r * (r / (gram * c + noise_std**2)).detach()).sum()
            if active(t):
                res = residual(x0).flatten(1)  # (B, k)
                lam = _top_eigenvalue(residual, x0.detach())  # (B, 1): largest of GGᵀ
                weights = res / (c * lam + residual_std**2)
                objective = objective + (res * weights.detach()).sum()
            (grad,) = torch.autograd.grad(objective, x0)  # Gᵀ Σ⁻¹ r
        jac = append_dims(alpha / (alpha**2 + sigma**2), x.ndim)
        return (s - scale * jac * grad).detach()

    def score(x: Tensor, t: Tensor) -> Tensor:
        if covariance == "isotropic":
            return isotropic(x, t)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            s = prior_score(xg, t)
            alpha, sigma = sde.coefficients(t)  # (B,) each
            x0 = (xg + append_dims(sigma**2, x.ndim) * s) / append_dims(alpha, x.ndim)
            physics = active(t)
            r = observe(x0).flatten(1) - y_flat  # (B, m)
            var = torch.full_like(r, noise_std**2)
            if physics and covariance == "exact":
                res = residual(x0).flatten(1)  # (B, k)
                r = torch.cat([r, res], dim=1)
                var = torch.cat([var, torch.full_like(res, residual_std**2)], dim=1)
            if covariance == "exact":
                weights = _exact_weights(xg, x0, r, var, alpha, sigma)
            else:
                cov = (sigma**2 / (alpha**2 + sigma**2)) if covariance == "pgdm" else 0 * sigma
                weights = r / (gram * cov[:, None] + var)
            # ∇ of Σ r·w with w = Σ⁻¹r held fixed is Kᵀ Σ⁻¹ r = −∇ log p̃(y | x_t).
            objective = (r * weights.detach()).sum()
            if physics and covariance != "exact":
                res = residual(x0).flatten(1)
                objective = objective + 0.5 * res.square().sum() / residual_std**2
            grad = torch.autograd.grad(objective, xg)[0]
        return (s - scale * grad).detach()

    return score


def _top_eigenvalue(fn: Callable[[Tensor], Tensor], x0: Tensor, iters: int = 8) -> Tensor:
    """Largest eigenvalue ``(B, 1)`` of GᵀG per sample, G = ∂fn/∂x0, by power iteration.

    Samples are independent, so G is block-diagonal over the batch and the Rayleigh quotient
    of each sample's block comes from one batched JVP and VJP per iteration.
    """
    flat = lambda z: fn(z).flatten(1)  # noqa: E731
    _, vjp = torch.func.vjp(flat, x0)
    gen = torch.Generator(device=x0.device).manual_seed(0)
    v = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
    lam = x0.new_zeros(x0.shape[0], 1)
    for _ in range(iters):
        v = v / append_dims(v.flatten(1).norm(dim=1).clamp_min(1e-30), v.ndim)
        _, gv = torch.func.jvp(flat, (x0,), (v,))
        (w,) = vjp(gv)  # GᵀG v
        lam = (v * w).flatten(1).sum(1, keepdim=True)
        v = w
    return lam.clamp_min(0)


def _exact_weights(
    x: Tensor, x0: Tensor, r: Tensor, var: Tensor, alpha: Tensor, sigma: Tensor
) -> Tensor:
    r"""``Σ⁻¹ r`` for :math:`\Sigma = G C_t G^\top + \operatorname{diag}(v)`.

    :math:`C_t = (\sigma_t^2/\alpha_t) J` and :math:`G = \partial r/\partial\hat x_0`, so
    :math:`G C_t G^\top = (\sigma_t^2/\alpha_t)\,K G^\top` with :math:`K = G J =
    \partial r/\partial x_t` (chain rule).
    """
    b = x.shape[0]
    K = _jacobian(r, x).reshape(b, r.shape[1], -1)  # (B, m, D): ∂r/∂x_t
    G = _jacobian(r, x0).reshape(b, r.shape[1], -1)  # (B, m, D): ∂r/∂x̂0
    c = (sigma**2 / alpha)[:, None, None]
    cov = c * K @ G.transpose(1, 2)  # (B, m, m)
    cov = 0.5 * (cov + cov.transpose(1, 2)) + torch.diag_embed(var)
    return torch.linalg.solve(cov, r.detach().unsqueeze(-1)).squeeze(-1)

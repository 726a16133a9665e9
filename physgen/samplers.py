"""Reverse-time samplers for an ``SDE`` driven by a score, as plain functions with one signature.

Every sampler is called as ``sampler(sde, score, x, *, steps, eps, generator, callback,
**knobs)``: ``x`` is a draw from the prior at ``t = sde.T`` (``sde.prior_sample``), the
process runs down a uniform grid of ``steps`` intervals to ``t = eps``, and the result is
``Sample(x, nfe)`` with ``x`` an approximate draw from :math:`p_{eps}` and ``nfe`` the number
of score evaluations (each on the whole batch). ``callback(i, t, x)`` sees every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from .likelihood import solve_ode
from .sde import SDE, ScoreFn
from .utils import append_dims

__all__ = [
    "SAMPLERS",
    "Sample",
    "ddim",
    "ddpm_ancestral",
    "euler_maruyama",
    "get_sampler",
    "predictor_corrector",
    "probability_flow_ode",
    "time_grid",
]

Callback = Callable[[int, Tensor, Tensor], None]


class Sample(NamedTuple):
    """A sampler's result: the samples and the number of score (network) evaluations."""

    x: Tensor
    nfe: int


def time_grid(sde: SDE, steps: int, eps: float, x: Tensor) -> Tensor:
    """``steps + 1`` times from ``sde.T`` down to ``eps``, on ``x``'s device and dtype."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0 <= eps < sde.T:
        raise ValueError(f"eps must lie in [0, T={sde.T}), got {eps}")
    return torch.linspace(sde.T, eps, steps + 1, dtype=x.dtype, device=x.device)


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def _bcast(v: Tensor, x: Tensor) -> Tensor:
    """A scalar time-dependent coefficient broadcast per sample against ``x``."""
    return append_dims(v.expand(x.shape[0]), x.ndim)


@torch.no_grad()
def euler_maruyama(
    sde: SDE,
    score: ScoreFn,
    x: Tensor,
    *,
    steps: int = 1000,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Sample:
    r"""Euler–Maruyama on the reverse-time SDE :math:`dx = [f - g^2\nabla\log p_t]dt + g\,d\bar w`
    (Song et al. 2021, eq. 6); strong order 1/2, weak order 1. The last step adds no noise
    (its mean is returned), as in score_sde."""
    rsde = sde.reverse(score)
    ts = time_grid(sde, steps, eps, x)
    for i in range(steps):
        t, dt = ts[i], ts[i] - ts[i + 1]
        tb = t.expand(x.shape[0])
        x = x - rsde.drift(x, tb) * dt
        if i < steps - 1:
            x = x + _bcast(rsde.diffusion(tb) * dt.sqrt(), x) * _noise(x, generator)
        if callback is not None:
            callback(i, ts[i + 1], x)
    return Sample(x, steps)


def _transition(sde: SDE, t: Tensor, s: Tensor) -> tuple[Tensor, ...]:
    r"""Kernel coefficients at ``t > s`` (``alpha_s, sigma_s, alpha_t, sigma_t``) and the std
    of DDPM's posterior ``q(x_s | x_t, x_0)``, :math:`\sigma_{t|s}\sigma_s/\sigma_t`."""
    alpha_t, sigma_t = sde.coefficients(t.reshape(1))
    alpha_s, sigma_s = sde.coefficients(s.reshape(1))
    var_ts = sigma_t**2 - (alpha_t / alpha_s) ** 2 * sigma_s**2
    posterior_std = (var_ts * sigma_s**2 / sigma_t**2).clamp(min=0).sqrt()
    return alpha_s, sigma_s, alpha_t, sigma_t, posterior_std


def _denoise(
    score: ScoreFn, x: Tensor, t: Tensor, alpha_t: Tensor, sigma_t: Tensor
) -> tuple[Tensor, Tensor]:
    r"""``(eps_hat, x0_hat)`` from the score: :math:`\hat\varepsilon = -\sigma_t s` and
    Tweedie's :math:`\hat x_0 = (x_t - \sigma_t\hat\varepsilon)/\alpha_t`."""
    eps_hat = -_bcast(sigma_t, x) * score(x, t.expand(x.shape[0]))
    return eps_hat, (x - _bcast(sigma_t, x) * eps_hat) / _bcast(alpha_t, x)


@torch.no_grad()
def ddpm_ancestral(
    sde: SDE,
    score: ScoreFn,
    x: Tensor,
    *,
    steps: int = 1000,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Sample:
    r"""Ancestral sampling from the Gaussian posterior :math:`q(x_s \mid x_t, \hat x_0)`
    (Ho et al. 2020, eq. 7; in the general form of Kingma et al., "Variational Diffusion
    Models", 2021, for any kernel :math:`x_t = \alpha_t x_0 + \sigma_t\varepsilon`):

    .. math:: \mu = \frac{\alpha_{t|s}\sigma_s^2}{\sigma_t^2} x_t
              + \frac{\alpha_s\sigma_{t|s}^2}{\sigma_t^2}\hat x_0,\quad
              \operatorname{var} = \frac{\sigma_{t|s}^2\sigma_s^2}{\sigma_t^2},

    with :math:`\alpha_{t|s} = \alpha_t/\alpha_s`,
    :math:`\sigma_{t|s}^2 = \sigma_t^2 - \alpha_{t|s}^2\sigma_s^2` and Tweedie's
    :math:`\hat x_0 = (x_t + \sigma_t^2 s(x_t, t))/\alpha_t`. On a ``DiscreteVPSDE`` with
    ``steps = N`` and ``eps = 0`` this is exactly DDPM's chain (the last step is noise-free)."""
    ts = time_grid(sde, steps, eps, x)
    for i in range(steps):
        alpha_s, sigma_s, alpha_t, sigma_t, std = _transition(sde, ts[i], ts[i + 1])
        _, x0_hat = _denoise(score, x, ts[i], alpha_t, sigma_t)
        alpha_ts = alpha_t / alpha_s
        var_ts = sigma_t**2 - alpha_ts**2 * sigma_s**2
        mean = (
            _bcast(alpha_ts * sigma_s**2 / sigma_t**2, x) * x
            + _bcast(alpha_s * var_ts / sigma_t**2, x) * x0_hat
        )
        x = mean + _bcast(std, x) * _noise(x, generator) if i < steps - 1 else mean
        if callback is not None:
            callback(i, ts[i + 1], x)
    return Sample(x, steps)


@torch.no_grad()
def ddim(
    sde: SDE,
    score: ScoreFn,
    x: Tensor,
    *,
    steps: int = 50,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    eta: float = 0.0,
) -> Sample:
    r"""DDIM (Song, Meng & Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, eq. 12):

    .. math:: x_s = \alpha_s\hat x_0 + \sqrt{\sigma_s^2 - c^2}\,\hat\varepsilon + c\,z,\qquad
              c = \eta\,\sigma_{t|s}\sigma_s/\sigma_t,

    with :math:`\hat\varepsilon = -\sigma_t s(x_t, t)`. ``eta = 0`` is deterministic (a
    first-order solver of the probability-flow ODE in :math:`\sigma/\alpha`), ``eta = 1``
    has DDPM's ancestral variance."""
    ts = time_grid(sde, steps, eps, x)
    for i in range(steps):
        alpha_s, sigma_s, alpha_t, sigma_t, std = _transition(sde, ts[i], ts[i + 1])
        eps_hat, x0_hat = _denoise(score, x, ts[i], alpha_t, sigma_t)
        c = eta * std
        direction = (sigma_s**2 - c**2).clamp(min=0).sqrt()
        x = _bcast(alpha_s, x) * x0_hat + _bcast(direction, x) * eps_hat
        if eta > 0 and i < steps - 1:
            x = x + _bcast(c, x) * _noise(x, generator)
        if callback is not None:
            callback(i, ts[i + 1], x)
    return Sample(x, steps)


@torch.no_grad()
def predictor_corrector(
    sde: SDE,
    score: ScoreFn,
    x: Tensor,
    *,
    steps: int = 1000,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    langevin_rate: float = 1.0,
    snr: float | None = None,
    corrector_steps: int = 1,
) -> Sample:
    r"""Predictor–corrector sampling (Song et al. 2021, Algorithms 2–3).

    Predictor: the reverse-diffusion step :math:`x \leftarrow x - f\Delta t + g^2 s\,\Delta t
    + g\sqrt{\Delta t}\,z`. Corrector: ``corrector_steps`` Langevin steps
    :math:`x \leftarrow x + \epsilon s + \sqrt{2\epsilon}\,z` at the new time, with
    :math:`\hat v = (\overline{\|z\|}/\overline{\|s\|})^2` (norms averaged over the batch;
    for :math:`p_t = N(m, vI)` it is :math:`v`) and :math:`a = \alpha_{t|s}^2`
    (``1 - beta_i`` for VP, 1 for VE). The step is

    * default, ``snr=None``: :math:`\epsilon = a\,\lambda\,\hat v\,\Delta t / (T K)` with
      :math:`\lambda` = ``langevin_rate`` and :math:`K` = ``corrector_steps``. The corrector
      then runs Langevin dynamics for a time :math:`\lambda\Delta t/T` (in units of
      :math:`\hat v`) per predictor step, which leaves :math:`p_t` invariant, so the scheme
      is a first-order discretisation of the reverse SDE plus a Langevin term and converges as
      ``steps`` grows. A Langevin step on :math:`N(m, v)` has stationary variance
      :math:`v/(1 - \epsilon/2v)`: its relative bias :math:`\approx \lambda\Delta t/2`
      (times :math:`\hat v/v` per direction) vanishes like ``1/steps``.
    * ``snr`` given: Song et al.'s fixed ratio :math:`\epsilon = 2a\,\text{snr}^2\hat v`.
      Its bias does not vanish with ``steps``: the variance plateaus a relative
      :math:`\approx \text{snr}^2\,\hat v/v` too high (about 4 % at their ``snr = 0.16`` on
      an anisotropic Gaussian).

    The last predictor step is noise-free and is not corrected."""
    if snr is None and langevin_rate < 0:
        raise ValueError(f"langevin_rate must be >= 0, got {langevin_rate}")
    rsde = sde.reverse(score)
    ts = time_grid(sde, steps, eps, x)
    nfe = 0
    for i in range(steps):
        t, dt = ts[i], ts[i] - ts[i + 1]
        tb = t.expand(x.shape[0])
        x = x - rsde.drift(x, tb) * dt
        nfe += 1
        if i == steps - 1:
            break
        x = x + _bcast(rsde.diffusion(tb) * dt.sqrt(), x) * _noise(x, generator)
        alpha_s, _, alpha_t, _, _ = _transition(sde, ts[i], ts[i + 1])
        a = (alpha_t / alpha_s) ** 2
        scale = 2 * snr**2 if snr is not None else langevin_rate * dt / (sde.T * corrector_steps)
        sb = ts[i + 1].expand(x.shape[0])
        for _ in range(corrector_steps):
            grad = score(x, sb)
            nfe += 1
            z = _noise(x, generator)
            # Batch-averaged norms (as score_sde): per-sample ratios blow up where the score
            # vanishes, which in low dimension happens often enough to diverge.
            grad_norm = grad.flatten(1).norm(dim=1).mean()
            if grad_norm == 0:  # a vanishing score gives no direction to correct along
                break
            step = a * scale * (z.flatten(1).norm(dim=1).mean() / grad_norm) ** 2
            x = x + step * grad + (2 * step).sqrt() * z
        if callback is not None:
            callback(i, ts[i + 1], x)
    return Sample(x, nfe)


@torch.no_grad()
def probability_flow_ode(
    sde: SDE,
    score: ScoreFn,
    x: Tensor,
    *,
    steps: int | None = None,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Sample:
    r"""Integrate the probability-flow ODE :math:`dx/dt = f - \tfrac12 g^2 s(x, t)` from ``T``
    to ``eps`` with torchdiffeq (Song et al. 2021, eq. 13): adaptive ``dopri5`` by default,
    or fixed-grid ``euler``/``midpoint``/``rk4`` with ``steps`` steps. Deterministic
    (``generator`` is unused); ``callback`` is called once, at the end."""
    flow = sde.probability_flow(score)
    z, nfe = solve_ode(flow.drift, x, sde.T, eps, method=method, rtol=rtol, atol=atol, steps=steps)
    if callback is not None:
        callback(0, torch.as_tensor(eps), z)
    return Sample(z, nfe)


SAMPLERS: dict[str, Callable[..., Sample]] = {
    "euler-maruyama": euler_maruyama,
    "pc": predictor_corrector,
    "ddpm": ddpm_ancestral,
    "ddim": ddim,
    "ode": probability_flow_ode,
}


def get_sampler(name: str) -> Callable[..., Sample]:
    """A sampler by name: ``euler-maruyama``, ``pc``, ``ddpm``, ``ddim`` or ``ode``."""
    try:
        return SAMPLERS[name]
    except KeyError:
        names = ", ".join(SAMPLERS)
        raise ValueError(f"unknown sampler {name!r}; expected one of {names}") from None

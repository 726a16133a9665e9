"""Forward SDEs with Gaussian perturbation kernels (VP, sub-VP, VE, DDPM) and their reversals."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor

from .utils import append_dims

__all__ = [
    "SDE",
    "VESDE",
    "VPSDE",
    "CosineVPSDE",
    "DiscreteVPSDE",
    "Interpolant",
    "LinearInterpolant",
    "ReverseSDE",
    "ScoreFn",
    "SubVPSDE",
    "VPInterpolant",
    "build_interpolant",
    "build_sde",
]

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""A score ``s(x, t) ≈ ∇_x log p_t(x)``: ``x`` of shape ``(B, *shape)``, ``t`` of shape ``(B,)``."""


def _as_time(t: Tensor | float, x: Tensor) -> Tensor:
    """A per-sample time vector ``(B,)`` on ``x``'s device and dtype."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.expand(x.shape[0]) if t.ndim == 0 else t


class SDE(ABC):
    r"""A forward Itô SDE :math:`dx = f(x, t)\,dt + g(t)\,dw` on :math:`t \in [0, T]`.

    Every SDE here has an affine drift, so its perturbation kernel is Gaussian,

    .. math:: p_{0t}(x_t \mid x_0) = \mathcal N(\alpha(t)\, x_0,\ \sigma(t)^2 I),

    and ``coefficients(t)`` returns :math:`(\alpha(t), \sigma(t))`. One object serves the
    training loss (``marginal``), the samplers (``reverse``) and the likelihood
    (``probability_flow``), after Song et al., "Score-Based Generative Modeling through
    Stochastic Differential Equations" (ICLR 2021). Shapes are generic: ``x`` is
    ``(B, *shape)`` (vectors, or fields ``(B, C, *grid)`` in 1-, 2- or 3-D) and time is
    ``(B,)``, broadcast with ``append_dims``.
    """

    T: float = 1.0

    @abstractmethod
    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """The kernel's mean scale ``alpha(t)`` and standard deviation ``sigma(t)``, ``(B,)``."""

    @abstractmethod
    def drift_coefficient(self, t: Tensor) -> Tensor:
        r"""The scalar :math:`a(t)` of the affine drift :math:`f(x, t) = a(t)\, x`, ``(B,)``."""

    @abstractmethod
    def diffusion(self, t: Tensor) -> Tensor:
        """The diffusion coefficient ``g(t)``, shape ``(B,)``."""

    @abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the Gaussian prior ``p_T = N(0, std² I)``."""

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """The drift ``f(x, t)``, same shape as ``x``."""
        return append_dims(self.drift_coefficient(_as_time(t, x)), x.ndim) * x

    def marginal(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``alpha(t) x0`` (shape of ``x0``) and std ``sigma(t)`` ``(B,)`` of ``x_t | x0``."""
        alpha, sigma = self.coefficients(_as_time(t, x0))
        return append_dims(alpha, x0.ndim) * x0, sigma

    def prior_sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Draw ``x_T ~ N(0, prior_std² I)`` of ``shape`` (batch first)."""
        z = torch.randn(shape, generator=generator, dtype=dtype)
        return (self.prior_std() * z).to(device) if device is not None else self.prior_std() * z

    def prior_log_prob(self, z: Tensor) -> Tensor:
        """Log-density of the prior at ``z``, summed over all but the batch dimension."""
        s = self.prior_std()
        d = z[0].numel()
        return -0.5 * (z / s).pow(2).flatten(1).sum(1) - d * (
            math.log(s) + 0.5 * math.log(2 * math.pi)
        )

    def reverse(self, score: ScoreFn, ode: bool = False) -> ReverseSDE:
        r"""The reverse-time SDE :math:`dx = [f - g^2 s]\,dt + g\,d\bar w` (``ode=False``) or
        the probability-flow ODE :math:`dx = [f - \tfrac12 g^2 s]\,dt` (``ode=True``), both
        integrated from ``T`` down to 0 (Song et al. 2021, eqs. 6 and 13)."""
        return ReverseSDE(self, score, ode)

    def probability_flow(self, score: ScoreFn) -> ReverseSDE:
        """The probability-flow ODE sharing the marginals of this SDE (``reverse(score, True)``)."""
        return self.reverse(score, ode=True)


class ReverseSDE:
    """The reverse-time process of an ``SDE`` driven by a score (see ``SDE.reverse``).

    ``drift(x, t)`` is written for forward time: a step from ``t`` to ``t - dt`` moves by
    ``-drift(x, t) dt`` plus ``diffusion(t) sqrt(dt) z`` for the SDE.
    """

    def __init__(self, sde: SDE, score: ScoreFn, ode: bool) -> None:
        self.sde, self.score, self.ode = sde, score, ode
        self.T = sde.T

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        t = _as_time(t, x)
        g2 = append_dims(self.sde.diffusion(t) ** 2, x.ndim)
        return self.sde.drift(x, t) - (0.5 if self.ode else 1.0) * g2 * self.score(x, t)

    def diffusion(self, t: Tensor) -> Tensor:
        g = self.sde.diffusion(t)
        return torch.zeros_like(g) if self.ode else g


class _VPFamily(SDE):
    r"""VP SDEs :math:`dx = -\tfrac12\beta(t)x\,dt + \sqrt{\beta(t)}\,dw` for a schedule
    :math:`\beta(t)`; :math:`\alpha(t) = e^{-\frac12\int_0^t\beta}`, :math:`\sigma^2 = 1-\alpha^2`,
    prior ``N(0, I)``."""

    @abstractmethod
    def beta(self, t: Tensor) -> Tensor:
        """The noise rate ``beta(t)``, ``(B,)``."""

    @abstractmethod
    def log_alpha(self, t: Tensor) -> Tensor:
        """``log alpha(t) = -1/2 ∫_0^t beta``, ``(B,)``."""

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        log_alpha = self.log_alpha(t).clamp(max=0)  # rounding can leave +1e-17 at t = 0
        return log_alpha.exp(), (-torch.expm1(2 * log_alpha)).sqrt()

    def drift_coefficient(self, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t)

    def diffusion(self, t: Tensor) -> Tensor:
        return self.beta(t).sqrt()

    def prior_std(self) -> float:
        return 1.0


class VPSDE(_VPFamily):
    r"""Variance-preserving SDE :math:`dx = -\tfrac12\beta(t)x\,dt + \sqrt{\beta(t)}\,dw`,
    :math:`\beta(t) = \beta_{min} + t(\beta_{max}-\beta_{min})` (Song et al. 2021, eq. 11):
    the continuous limit of DDPM with linear betas ``beta_min/N .. beta_max/N``.

    :math:`\log\alpha(t) = -\tfrac14 t^2(\beta_{max}-\beta_{min}) - \tfrac12 t\beta_{min}`,
    :math:`\sigma(t)^2 = 1 - \alpha(t)^2`; prior ``N(0, I)``.

    Example:
        >>> sde = VPSDE()
        >>> mean, std = sde.marginal(torch.ones(2, 1, 8, 8), torch.tensor([0.0, 1.0]))
        >>> round(float(std[1]), 4)
        1.0
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        if not 0 <= beta_min <= beta_max:
            raise ValueError(f"VPSDE: need 0 <= beta_min <= beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = beta_min, beta_max

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_alpha(self, t: Tensor) -> Tensor:
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min


class CosineVPSDE(_VPFamily):
    r"""VP SDE whose kernel follows the cosine schedule of Nichol & Dhariwal (2021):
    :math:`\alpha(t) = \cos(\tfrac{t+s}{1+s}\tfrac\pi2) / \cos(\tfrac{s}{1+s}\tfrac\pi2)`, so
    :math:`\beta(t) = -2\,d\log\alpha/dt = \tfrac{\pi}{1+s}\tan(\tfrac{t+s}{1+s}\tfrac\pi2)`.

    ``beta`` diverges at ``t = 1``, so the process ends at ``T`` (default 0.9946, where the
    discrete cosine schedule's ``beta`` reaches 0.999 at N = 1000).
    """

    def __init__(self, s: float = 0.008, T: float = 0.9946) -> None:
        if not 0 < T < 1:
            raise ValueError(f"CosineVPSDE: T must lie in (0, 1), got {T}")
        if s <= 0:
            raise ValueError(f"CosineVPSDE: the offset s must be positive, got {s}")
        self.s, self.T = s, T

    def _angle(self, t: Tensor) -> Tensor:
        return (t + self.s) / (1 + self.s) * (math.pi / 2)

    def beta(self, t: Tensor) -> Tensor:
        return math.pi / (1 + self.s) * torch.tan(self._angle(t))

    def log_alpha(self, t: Tensor) -> Tensor:
        return torch.log(torch.cos(self._angle(t))) - math.log(
            math.cos(self.s / (1 + self.s) * math.pi / 2)
        )


class SubVPSDE(SDE):
    r"""Sub-VP SDE :math:`dx = -\tfrac12\beta x\,dt + \sqrt{\beta(t)(1 - e^{-2\int_0^t\beta})}\,dw`
    (Song et al. 2021, eq. 12): same drift and mean as ``VPSDE(beta_min, beta_max)``,
    :math:`\sigma(t) = 1 - \alpha(t)^2`; prior ``N(0, I)``."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        self._vp = VPSDE(beta_min, beta_max)
        self.beta, self.log_alpha = self._vp.beta, self._vp.log_alpha

    def drift_coefficient(self, t: Tensor) -> Tensor:
        return self._vp.drift_coefficient(t)

    def prior_std(self) -> float:
        return 1.0

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        log_alpha = self.log_alpha(t)
        return log_alpha.exp(), -torch.expm1(2 * log_alpha)

    def diffusion(self, t: Tensor) -> Tensor:
        return (self.beta(t) * -torch.expm1(4 * self.log_alpha(t))).sqrt()


class VESDE(SDE):
    r"""Variance-exploding SDE :math:`dx = \sqrt{d\sigma^2/dt}\,dw` with
    :math:`\sigma(t) = \sigma_{min}(\sigma_{max}/\sigma_{min})^t` (Song et al. 2021, eq. 9).

    The kernel started at ``x0`` at ``t = 0`` has :math:`\alpha = 1` and variance
    :math:`\sigma(t)^2 - \sigma_{min}^2` exactly (so ``marginal`` and the SDE agree to the
    last digit); the prior is ``N(0, sigma_max² I)``.
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0) -> None:
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"VESDE: need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self._log_ratio = math.log(sigma_max / sigma_min)

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        std = self.sigma_min * torch.expm1(2 * t * self._log_ratio).sqrt()
        return torch.ones_like(t), std

    def drift_coefficient(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def diffusion(self, t: Tensor) -> Tensor:
        return self.sigma(t) * math.sqrt(2 * self._log_ratio)

    def prior_std(self) -> float:
        return self.sigma_max


class DiscreteVPSDE(_VPFamily):
    r"""DDPM's discrete chain (Ho et al. 2020) as a VP SDE through its grid values.

    :math:`\log\alpha(t)` is the monotone cubic (PCHIP, Fritsch & Carlson 1980) interpolant
    of :math:`\tfrac12\log\bar\alpha_i` at :math:`t_i = i/N`, and
    :math:`\beta(t) = -2\,d\log\alpha/dt \ge 0`. At the grid times the kernel is exactly
    DDPM's, :math:`\alpha(t_i)^2 = \bar\alpha_i = \prod_{j\le i}(1-\beta_j)`, so the
    ancestral sampler on that grid is the DDPM chain; between them ``beta`` is continuous,
    so adaptive ODE solvers (likelihood, probability flow) are not stalled by jumps. With
    ``linear(N, beta_min/N, beta_max/N)`` it converges to ``VPSDE(beta_min, beta_max)``.
    """

    def __init__(self, betas: Tensor) -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("DiscreteVPSDE: betas must be a 1-D tensor with entries in (0, 1)")
        self.betas = betas
        self.N = betas.numel()
        # log alpha at the grid (N + 1,), and monotone Hermite slopes in t.
        self._y = torch.cat([betas.new_zeros(1), 0.5 * torch.log1p(-betas).cumsum(0)])
        delta = torch.diff(self._y) * self.N  # (N,) secant slopes, all negative
        inner = 2.0 / (1.0 / delta[:-1] + 1.0 / delta[1:])  # harmonic mean: monotone
        self._m = torch.cat([delta[:1], inner, delta[-1:]])

    @classmethod
    def linear(
        cls, N: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> DiscreteVPSDE:
        """DDPM's linear schedule ``betas = linspace(beta_start, beta_end, N)``."""
        return cls(torch.linspace(beta_start, beta_end, N, dtype=torch.float64))

    @classmethod
    def cosine(cls, N: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> DiscreteVPSDE:
        """The cosine schedule of Nichol & Dhariwal (2021), betas clipped at ``max_beta``."""
        t = torch.arange(N + 1, dtype=torch.float64) / N
        abar = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        return cls((1 - abar[1:] / abar[:-1]).clamp(max=max_beta))

    def _hermite(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``log alpha(t)`` and its time derivative, from the cubic on ``t``'s interval."""
        u = (t.to(torch.float64) * self.N).clamp(0, self.N)
        i = u.floor().long().clamp(max=self.N - 1)  # interval [i/N, (i+1)/N]
        u = u - i
        y, m = self._y.to(t.device), self._m.to(t.device)
        y0, y1, m0, m1 = y[i], y[i + 1], m[i] / self.N, m[i + 1] / self.N
        u2, u3 = u * u, u * u * u
        value = (
            (2 * u3 - 3 * u2 + 1) * y0 + (u3 - 2 * u2 + u) * m0 + (3 * u2 - 2 * u3) * y1
            + (u3 - u2) * m1
        )  # fmt: skip
        slope = (
            (6 * u2 - 6 * u) * y0 + (3 * u2 - 4 * u + 1) * m0 + (6 * u - 6 * u2) * y1
            + (3 * u2 - 2 * u) * m1
        ) * self.N  # fmt: skip
        return value.to(t.dtype), slope.to(t.dtype)

    def beta(self, t: Tensor) -> Tensor:
        return (-2 * self._hermite(t)[1]).clamp(min=0)

    def log_alpha(self, t: Tensor) -> Tensor:
        return self._hermite(t)[0]


_SDES: dict[str, Callable[..., SDE]] = {
    "vp": VPSDE,
    "subvp": SubVPSDE,
    "ve": VESDE,
    "cosine": CosineVPSDE,
    "ddpm-linear": DiscreteVPSDE.linear,
    "ddpm-cosine": DiscreteVPSDE.cosine,
}


def build_sde(name: str, **kwargs: float) -> SDE:
    """An SDE by name (``vp``, ``subvp``, ``ve``, ``cosine``, ``ddpm-linear``, ``ddpm-cosine``)."""
    try:
        factory = _SDES[name]
    except KeyError:
        raise ValueError(f"unknown sde {name!r}; expected one of {', '.join(_SDES)}") from None
    return factory(**kwargs)


class Interpolant(ABC):
    r"""A Gaussian probability path :math:`x_t = \alpha(t)\,x_0 + \sigma(t)\,\varepsilon` from
    data (``t = 0``) to noise ``N(0, I)`` (``t = 1``) for flow matching (Lipman et al.,
    "Flow Matching for Generative Modeling", ICLR 2023; Liu et al. 2023; Albergo &
    Vanden-Eijnden 2023).

    The same time convention as ``SDE`` and the CNF (data at 0, noise at 1), so a learned
    velocity is integrated by the same ODE code. The conditional target velocity is
    :math:`u_t = \dot\alpha(t)\,x_0 + \dot\sigma(t)\,\varepsilon`.
    """

    T: float = 1.0

    @abstractmethod
    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha(t), sigma(t))``, each ``(B,)``."""

    @abstractmethod
    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(d alpha/dt, d sigma/dt)``, each ``(B,)``."""

    def mean_t(self, x0: Tensor, t: Tensor) -> Tensor:
        """``alpha(t) x0``, the mean of ``x_t | x0``."""
        return append_dims(self.coefficients(_as_time(t, x0))[0], x0.ndim) * x0

    def std_t(self, t: Tensor) -> Tensor:
        """``sigma(t)``, the standard deviation of ``x_t | x0``, ``(B,)``."""
        return self.coefficients(t)[1]

    def sample(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """The point ``x_t = alpha(t) x0 + sigma(t) noise`` on the path."""
        alpha, sigma = self.coefficients(_as_time(t, x0))
        return append_dims(alpha, x0.ndim) * x0 + append_dims(sigma, x0.ndim) * noise

    def target_velocity(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """The conditional velocity ``u_t = alpha'(t) x0 + sigma'(t) noise``."""
        dalpha, dsigma = self.derivatives(_as_time(t, x0))
        return append_dims(dalpha, x0.ndim) * x0 + append_dims(dsigma, x0.ndim) * noise


class LinearInterpolant(Interpolant):
    r"""The straight (conditional optimal-transport) path :math:`\alpha = 1 - t`,
    :math:`\sigma = \sigma_{min} + (1 - \sigma_{min})\,t` (Lipman et al. 2023, eq. 20; the
    rectified flow of Liu et al. 2023 at :math:`\sigma_{min} = 0`)."""

    def __init__(self, sigma_min: float = 0.0) -> None:
        if not 0 <= sigma_min < 1:
            raise ValueError(f"LinearInterpolant: sigma_min must lie in [0, 1), got {sigma_min}")
        self.sigma_min = sigma_min

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return 1 - t, self.sigma_min + (1 - self.sigma_min) * t

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return -torch.ones_like(t), torch.full_like(t, 1 - self.sigma_min)


class VPInterpolant(Interpolant):
    r"""The variance-preserving path :math:`\alpha = \cos(\pi t/2)`, :math:`\sigma = \sin(\pi t/2)`
    (:math:`\alpha^2 + \sigma^2 = 1`, as a VP SDE's kernel; Albergo & Vanden-Eijnden 2023)."""

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.cos(0.5 * math.pi * t), torch.sin(0.5 * math.pi * t)

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t), 0.5 * math.pi * torch.cos(
            0.5 * math.pi * t
        )


_INTERPOLANTS: dict[str, Callable[..., Interpolant]] = {
    "linear": LinearInterpolant,
    "vp": VPInterpolant,
}


def build_interpolant(name: str, **kwargs: float) -> Interpolant:
    """A flow-matching path by name (``linear``, ``vp``)."""
    try:
        factory = _INTERPOLANTS[name]
    except KeyError:
        raise ValueError(
            f"unknown interpolant {name!r}; expected one of {', '.join(_INTERPOLANTS)}"
        ) from None
    return factory(**kwargs)

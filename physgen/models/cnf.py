"""Continuous normalizing flows: FFJORD maximum likelihood and flow matching, one ODE path."""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..distributions import NormalizingFlow, expand_context, standard_normal
from ..likelihood import adjoint_mode, ode_log_prob, solve_ode, trace_probes
from ..nn import time_network
from ..pairing import ot_pairing
from ..sde import build_interpolant
from ..transforms.base import Transform
from ..utils import append_dims
from .base import DensityModel, register_model

__all__ = ["CNF", "FIELD_TIME_SCALE", "FlowMatching", "ot_pairing"]

#: The time-embedding scale of a field CNF's U-Net (``CNF.for_shape``): smooth in t.
FIELD_TIME_SCALE = 10.0


class _ODETransform(Transform):
    """The flow map of a ``_ContinuousFlow`` (data at t=0 -> noise at t=1) as a physgen
    ``Transform``; leading sample dimensions are flattened into the batch, with the context
    broadcast along them."""

    def __init__(self, model: _ContinuousFlow, cond: Tensor | None) -> None:
        super().__init__(event_dim=len(model.sample_shape))
        self.model, self.cond = model, cond

    def _run(self, x: Tensor, t0: float, t1: float, with_ladj: bool) -> tuple[Tensor, Tensor]:
        event = self.model.sample_shape
        lead = x.shape[: x.ndim - len(event)]
        flat = x.reshape(-1, *event)
        cond = self.cond
        if cond is not None:
            cshape = self.model.cond_shape
            cond = cond.expand(*lead[: len(lead) - cond.ndim + len(cshape)], *cond.shape)
            cond = cond.reshape(-1, *cshape)

        def velocity(y: Tensor, t: Tensor) -> Tensor:
            return self.model.net(y, t, cond)

        if not with_ladj:
            out, _ = solve_ode(velocity, flat, t0, t1, **self.model.ode)
            return out.reshape(x.shape), flat.new_zeros(())
        probes = trace_probes(flat, self.model.trace, self.model.probe)
        res = ode_log_prob(
            velocity, flat, lambda z: z.new_zeros(z.shape[0]), t0=t0, t1=t1, probes=probes,
            **self.model.ode,
        )  # fmt: skip
        return res.z.reshape(x.shape), res.log_prob.reshape(lead)

    def _call(self, x: Tensor) -> Tensor:
        return self._run(x, 0.0, 1.0, with_ladj=False)[0]

    def _inverse(self, y: Tensor) -> Tensor:
        return self._run(y, 1.0, 0.0, with_ladj=False)[0]

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(x, 0.0, 1.0, with_ladj=True)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(y, 1.0, 0.0, with_ladj=True)


class _ContinuousFlow(DensityModel):
    r"""A flow :math:`dx/dt = v_\theta(x, t, c)` from data (``t = 0``) to ``N(0, I)`` (``t = 1``).

    ``log_prob`` integrates the instantaneous change of variables (``ode_log_prob``) and
    ``sample`` integrates from noise back to data (``solve_ode``), both with torchdiffeq.
    Subclasses define the training objective.
    """

    example_shape = (2,)
    #: The U-Net's time-embedding scale ``for_shape`` gives fields (``None``: the U-Net's).
    field_time_scale: float | None = None

    def __init__(
        self,
        sample_shape: list[int] | tuple[int, ...],
        cond_shape: list[int] | tuple[int, ...] | None = None,
        *,
        hidden: list[int] | tuple[int, ...] = (64, 64, 64),
        act: str = "tanh",
        freqs: int = 3,
        channels: list[int] | tuple[int, ...] = (32, 64),
        blocks: int = 1,
        attention: list[bool] | None = None,
        periodic: bool = False,
        trace: str = "exact",
        probe: str = "rademacher",
        method: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        steps: int | None = None,
        adjoint: bool | str = False,
        time_scale: float = 1000.0,
        **config: Any,
    ) -> None:
        adjoint_mode(adjoint, method)  # a clear error for a bad value, before building
        if trace not in ("exact", "hutchinson"):
            raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}")
        if probe not in ("rademacher", "gaussian"):
            raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {probe!r}")
        super().__init__()
        self.sample_shape = tuple(sample_shape)
        self.cond_shape = tuple(cond_shape) if cond_shape else None
        self.trace, self.probe = trace, probe
        self.ode = {"method": method, "rtol": rtol, "atol": atol, "steps": steps}
        self.adjoint = adjoint
        self.net = time_network(
            self.sample_shape, self.cond_shape, hidden=list(hidden), act=act, freqs=freqs,
            channels=list(channels), blocks=blocks, attention=attention, periodic=periodic,
            time_scale=time_scale,
        )  # fmt: skip

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> _ContinuousFlow:
        # The exact trace costs one VJP per dimension: only for small vectors.
        defaults: dict[str, Any] = {
            "trace": "exact" if math.prod(sample_shape) <= 8 else "hutchinson"
        }
        if len(sample_shape) > 1 and cls.field_time_scale is not None:
            defaults["time_scale"] = cls.field_time_scale
        return cls(sample_shape, cond_shape, **{**defaults, **overrides})

    def _check(self, x: Tensor, cond: Tensor | None) -> None:
        if tuple(x.shape[1:]) != self.sample_shape:
            raise ValueError(
                f"{type(self).__name__}: x has sample shape {tuple(x.shape[1:])}, "
                f"expected {self.sample_shape}"
            )
        self._check_cond(cond)

    def _check_cond(self, cond: Tensor | None) -> None:
        if (cond is None) != (self.cond_shape is None) or (
            cond is not None and tuple(cond.shape[1:]) != self.cond_shape
        ):
            need = f"cond of shape (B, *{self.cond_shape})" if self.cond_shape else "no cond"
            got = "none" if cond is None else f"shape {tuple(cond.shape)}"
            raise ValueError(f"{type(self).__name__}: expected {need}, got {got}")

    def velocity(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """The learned velocity ``v(x, t, cond)``; ``t`` of shape ``(B,)``."""
        return self.net(x, t, cond)

    def forward(self, cond: Tensor | None = None) -> NormalizingFlow:
        """``model(cond)``: the flow as a ``torch.distributions.Distribution`` (``log_prob``,
        ``sample``, ``rsample``), batch shape ``(B,)`` for a context batch ``(B, ...)``."""
        self._check_cond(cond)
        ref = next(self.parameters())
        batch = () if cond is None else (cond.shape[0],)
        base = standard_normal(self.sample_shape, batch, device=ref.device, dtype=ref.dtype)
        return NormalizingFlow(_ODETransform(self, cond), base)

    def _base_log_prob(self, z: Tensor) -> Tensor:
        d = z[0].numel()
        return -0.5 * z.pow(2).flatten(1).sum(1) - 0.5 * d * math.log(2 * math.pi)

    def log_prob(
        self,
        x: Tensor,
        cond: Tensor | None = None,
        *,
        trace: str | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        r""":math:`\log p(x \mid c) = \log\mathcal N(z; 0, I) + \int_0^1 \nabla\cdot v\,dt`,
        with the configured (or given) trace: ``exact`` or ``hutchinson`` (one probe per
        sample, fixed over the solve, drawn from ``generator``)."""
        self._check(x, cond)
        probes = trace_probes(x, trace or self.trace, self.probe, generator)
        params = tuple(p for p in self.parameters() if p.requires_grad)
        return ode_log_prob(
            lambda y, t: self.net(y, t, cond), x, self._base_log_prob, t0=0.0, t1=1.0,
            probes=probes, adjoint=self.adjoint, adjoint_params=params, **self.ode,
        ).log_prob  # fmt: skip

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **ode: Any,
    ) -> Tensor:
        """Integrate from ``z ~ N(0, I)`` at ``t = 1`` to data at ``t = 0``; ``ode`` overrides
        the solver options (``method``, ``rtol``, ``atol``, ``steps``)."""
        self._check_cond(cond)
        cond = expand_context(cond, n)
        dtype = next(self.parameters()).dtype
        z = torch.randn((n, *self.sample_shape), generator=generator, dtype=dtype).to(self.device)
        x, _ = solve_ode(lambda y, t: self.net(y, t, cond), z, 1.0, 0.0, **{**self.ode, **ode})
        return x

    @abstractmethod
    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Per-sample training loss."""


@register_model("cnf")
class CNF(_ContinuousFlow):
    r"""FFJORD: a continuous normalizing flow trained by maximum likelihood (Grathwohl et
    al., ICLR 2019; Chen et al. 2018). ``loss = -log p(x | c)`` through the ODE, with the
    exact trace (small D) or Hutchinson's estimator (``trace="hutchinson"``), gradients by
    backpropagation through the solver or an adjoint (``adjoint=True``: a discrete adjoint
    through the solver's accepted steps; ``"backsolve"``: the continuous adjoint, see
    :func:`physgen.likelihood.solve_ode`).

    Vectors use an MLP on ``[cos πkt, sin πkt, x, c]``; fields use the U-Net, which
    ``for_shape`` gives a time embedding smooth in t (``time_scale=10``) so that the
    adaptive solve stays cheap.

    Example:
        >>> cnf = CNF((2,), hidden=(16, 16))
        >>> cnf.log_prob(torch.zeros(3, 2)).shape
        torch.Size([3])
    """

    # Fields embed the time at FIELD_TIME_SCALE (10) instead of the U-Net's 1000. At 1000 the
    # fastest time feature turns through 1000 radians over the solve, and the adaptive solver
    # follows it: on a 16-point field CNF whose last layer is drawn at random, dopri5 at the
    # default 1e-5 takes ~600 velocity evaluations per log-likelihood and is still ~1e-2 nats
    # off a tight-tolerance solve. At 10 (about the 3π of the vector CNF's time features) the
    # same solve takes 50 evaluations and is within 7e-4 nats (tests/test_cnf_field_solver.py
    # bounds it by 1e-3 nats and 100 evaluations).
    field_time_scale = FIELD_TIME_SCALE

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return -self.log_prob(x, cond)


@register_model("flow-matching")
class FlowMatching(_ContinuousFlow):
    r"""A continuous flow trained by conditional flow matching (Lipman et al., ICLR 2023):

    .. math:: \mathcal L = \mathbb E_{t, x_0, \varepsilon}
              \| v_\theta(\alpha_t x_0 + \sigma_t\varepsilon, t) - (\dot\alpha_t x_0
              + \dot\sigma_t\varepsilon) \|^2,

    averaged over dimensions, along a ``linear`` (optimal-transport) or ``vp`` path.
    ``coupling="ot"`` pairs each minibatch of data with its noise draws by an exact
    optimal assignment under squared Euclidean cost (:func:`physgen.pairing.ot_pairing`;
    minibatch OT-CFM, Tong et al., TMLR 2024;
    Pooladian et al., ICML 2023), which straightens the learned paths; ``"independent"``
    (default) is I-CFM. Likelihoods and samples use the same ODE code as ``CNF``.

    **Physics-based flow matching** (Baldan, Liu, Guardone & Thuerey, "Flow matching meets
    PDEs", arXiv:2506.08604): with ``physics_weight`` λ > 0 and a per-sample
    ``physics_penalty`` P (e.g. :class:`physgen.physics.ResidualPenalty`), the loss gains

    .. math:: \lambda\,(1 - t)^k\,P(\hat x_0), \qquad
              \hat x_0 = \frac{\sigma_t v_\theta - \dot\sigma_t x_t}
                              {\dot\alpha_t\sigma_t - \dot\sigma_t\alpha_t}

    (for the linear path :math:`\hat x_0 = x_t - t\,v_\theta`), the data estimate implied by
    the predicted velocity; the weight :math:`(1 - t)^k` (PBFM's k = 1,
    ``physics_time_power``) silences the term where :math:`\hat x_0` is only the data mean,
    and a larger k keeps it to the low noise levels where :math:`\hat x_0` is close to a
    sample. ``physics_unroll`` = n > 1 first takes n − 1 Euler steps of the learned ODE from
    t towards 0 (PBFM's unrolling: a sharper :math:`\hat x_0` at high noise, at n network
    calls per sample). ``gradient_combination="config"`` makes
    :func:`physgen.training.fit` combine the two terms' gradients conflict-free (ConFIG, see
    :func:`physgen.training.conflict_free_direction`) instead of summing them. The penalty
    is a callable and is not part of the saved config: pass it again after loading.
    """

    config_exclude = ("physics_penalty",)  # a callable: passed again after loading

    def __init__(
        self,
        sample_shape: list[int] | tuple[int, ...],
        cond_shape: list[int] | tuple[int, ...] | None = None,
        *,
        path: str = "linear",
        sigma_min: float = 0.0,
        coupling: str = "independent",
        physics_weight: float = 0.0,
        physics_unroll: int = 1,
        physics_time_power: float = 1.0,
        gradient_combination: str = "sum",
        physics_penalty: Callable[[Tensor], Tensor] | None = None,
        **config: Any,
    ) -> None:
        if coupling not in ("independent", "ot"):
            raise ValueError(f"coupling must be 'independent' or 'ot', got {coupling!r}")
        if sigma_min and path != "linear":
            raise ValueError(f"sigma_min applies to the 'linear' path only, got path={path!r}")
        if physics_weight < 0:
            raise ValueError(f"physics_weight must be >= 0, got {physics_weight}")
        if physics_unroll < 1:
            raise ValueError(f"physics_unroll must be >= 1, got {physics_unroll}")
        if physics_time_power < 0:
            raise ValueError(f"physics_time_power must be >= 0, got {physics_time_power}")
        if gradient_combination not in ("sum", "config"):
            raise ValueError(
                f"gradient_combination must be 'sum' or 'config', got {gradient_combination!r}"
            )
        super().__init__(
            sample_shape, cond_shape, path=path, sigma_min=sigma_min, coupling=coupling,
            physics_weight=physics_weight, physics_unroll=physics_unroll,
            physics_time_power=physics_time_power, gradient_combination=gradient_combination,
            **config,
        )  # fmt: skip
        self.coupling = coupling
        kwargs = {"sigma_min": sigma_min} if path == "linear" else {}
        self.path = build_interpolant(path, **kwargs)
        self.physics_weight, self.physics_unroll = physics_weight, physics_unroll
        self.physics_time_power = physics_time_power
        self.gradient_combination = gradient_combination
        self.physics_penalty = physics_penalty

    def denoised(self, xt: Tensor, t: Tensor, velocity: Tensor) -> Tensor:
        r"""The data estimate :math:`\hat x_0` implied by ``velocity`` at ``(xt, t)``."""
        alpha, sigma = (append_dims(c, xt.ndim) for c in self.path.coefficients(t))
        d_alpha, d_sigma = (append_dims(c, xt.ndim) for c in self.path.derivatives(t))
        return (sigma * velocity - d_sigma * xt) / (d_alpha * sigma - d_sigma * alpha)

    def _unrolled_x0(self, xt: Tensor, t: Tensor, v: Tensor, cond: Tensor | None) -> Tensor:
        """``physics_unroll − 1`` Euler steps from t towards 0, then the data estimate."""
        n = self.physics_unroll
        x, s, dt = xt, t, t / n  # n equal steps of the learned ODE from t to 0
        for _ in range(n - 1):
            x = x - append_dims(dt, x.ndim) * v
            s = s - dt
            v = self.net(x, s, cond)
        return self.denoised(x, s, v)

    def loss_terms(self, x: Tensor, cond: Tensor | None = None) -> dict[str, Tensor]:
        """``{"flow": ..., "physics": ...}`` per sample, each ``(B,)``; the physics term
        (already weighted by λ(1 − t)^k) only when ``physics_weight`` and a penalty are set."""
        self._check(x, cond)
        t = torch.rand(x.shape[0], device=x.device, dtype=x.dtype)
        noise = torch.randn_like(x)
        if self.coupling == "ot":
            noise = noise[ot_pairing(x, noise)]
        xt = self.path.sample(x, noise, t)
        target = self.path.target_velocity(x, noise, t)
        v = self.net(xt, t, cond)
        terms = {"flow": (v - target).pow(2).flatten(1).mean(1)}
        if self.physics_weight and self.physics_penalty is not None:
            x0_hat = self._unrolled_x0(xt, t, v, cond)
            weight = self.physics_weight * (1 - t) ** self.physics_time_power
            terms["physics"] = weight * self.physics_penalty(x0_hat)
        return terms

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return sum(self.loss_terms(x, cond).values())  # type: ignore[return-value]

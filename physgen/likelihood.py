"""Divergences (exact and Hutchinson) and log-likelihoods through an ODE (CNF, probability flow)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from .checkpoint_adjoint import CHECKPOINT_METHODS, checkpoint_odeint
from .nn.unet import twice_differentiable
from .utils import fp32, full_precision

__all__ = [
    "FIXED_GRID_METHODS",
    "LogProb",
    "VelocityFn",
    "adjoint_mode",
    "divergence",
    "hutchinson_probes",
    "ode_log_prob",
    "solve_ode",
    "trace_probes",
]

VelocityFn = Callable[[Tensor, Tensor], Tensor]
"""A velocity ``v(x, t)``: ``x`` of shape ``(B, *shape)``, ``t`` of shape ``(B,)``."""

FIXED_GRID_METHODS = ("euler", "midpoint", "rk4", "explicit_adams", "implicit_adams")


def hutchinson_probes(
    like: Tensor, n: int = 1, kind: str = "rademacher", generator: torch.Generator | None = None
) -> Tensor:
    """``n`` probe vectors ``v`` with ``E[v v^T] = I``, shape ``(n, *like.shape)``.

    ``kind="rademacher"`` draws ±1 entries (the lower-variance choice, Hutchinson 1990);
    ``kind="gaussian"`` draws ``N(0, 1)`` entries (Grathwohl et al., FFJORD, ICLR 2019).
    Draws come from ``generator`` (CPU) and move to ``like``'s device.
    """
    if n < 1:
        raise ValueError(f"hutchinson_probes: n must be >= 1, got {n}")
    shape = (n, *like.shape)
    if kind == "rademacher":
        v = torch.randint(0, 2, shape, generator=generator, dtype=like.dtype) * 2 - 1
    elif kind == "gaussian":
        v = torch.randn(shape, generator=generator, dtype=like.dtype)
    else:
        raise ValueError(
            f"hutchinson_probes: kind must be 'rademacher' or 'gaussian', got {kind!r}"
        )
    return v.to(like.device)


def trace_probes(
    like: Tensor,
    trace: str,
    kind: str = "rademacher",
    generator: torch.Generator | None = None,
) -> Tensor | None:
    """The ``probes`` argument of ``divergence`` for a trace mode: ``None`` for ``"exact"``,
    one Hutchinson probe per sample (``hutchinson_probes(like, 1, kind, generator)``) for
    ``"hutchinson"``."""
    if trace == "exact":
        return None
    if trace == "hutchinson":
        return hutchinson_probes(like, 1, kind, generator)
    raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}")


def divergence(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    probes: Tensor | None = None,
    create_graph: bool | None = None,
) -> tuple[Tensor, Tensor]:
    r"""``fn(x)`` and its divergence :math:`\nabla\cdot f = \mathrm{tr}(\partial f/\partial x)`.

    With ``probes=None`` the trace is exact: one vector-Jacobian product per dimension, so
    use it for small ``D``. With ``probes`` of shape ``(n, *x.shape)`` it is Hutchinson's
    unbiased estimate :math:`\frac1n\sum_k v_k^\top (\partial f/\partial x) v_k` (one VJP per
    probe; Hutchinson 1990, as in FFJORD). Both are per sample, shape ``(B,)``.

    ``create_graph`` (default: whether autograd is recording at the call) keeps the graph
    of the divergence so it can be differentiated (training); off, the outputs are detached.

    Both ``fn`` and the trace run in float32 even under autocast (a bf16 vector-Jacobian
    product loses the trace's small terms); reduced-precision ``x`` is promoted first.

    Example:
        >>> x = torch.randn(4, 3)
        >>> _, div = divergence(lambda y: 2 * y, x)
        >>> div
        tensor([6., 6., 6., 6.])
    """
    if create_graph is None:
        create_graph = torch.is_grad_enabled()
    if probes is not None and probes.shape[1:] != x.shape:
        raise ValueError(
            f"divergence: probes must have shape (n, *x.shape) = (n, {tuple(x.shape)}), "
            f"got {tuple(probes.shape)}"
        )
    with torch.enable_grad(), fp32():
        x = full_precision(x)
        if probes is not None:
            probes = probes.to(x.dtype)
        # Without a kept graph nothing flows back through x: a fresh leaf also serves an x
        # that requires grad but was made where autograd was off (torchdiffeq's adjoint).
        if not x.requires_grad or not create_graph:
            x = x.detach().requires_grad_(True)
        # A kept divergence is differentiated again in training: fused attention kernels
        # have no second derivative, so the network runs on composite operations then.
        with twice_differentiable() if create_graph else contextlib.nullcontext():
            out = fn(x)
        # One VJP per dimension (exact) or per probe (Hutchinson). Without a kept graph the
        # last VJP may free it.
        if probes is None:
            flat = out.flatten(1)  # (B, D)
            last = flat.shape[1] - 1
            terms = (
                torch.autograd.grad(
                    flat[:, i].sum(), x, create_graph=create_graph,
                    retain_graph=create_graph or i < last,
                )[0].flatten(1)[:, i]
                for i in range(last + 1)
            )  # fmt: skip
        else:
            last = probes.shape[0] - 1
            terms = (
                (torch.autograd.grad(
                    out, x, grad_outputs=v, create_graph=create_graph,
                    retain_graph=create_graph or k < last,
                )[0] * v).flatten(1).sum(1)
                for k, v in enumerate(probes)
            )  # fmt: skip
        div = functools.reduce(torch.add, terms)
        if probes is not None and last > 0:
            div = div / probes.shape[0]
    if not create_graph:
        out, div = out.detach(), div.detach()
    return out, div


class _Counted(nn.Module):
    """Wraps a velocity for torchdiffeq: scalar ``t`` -> per-sample ``t``; counts calls."""

    def __init__(self, velocity: VelocityFn, probes: Tensor | None, with_divergence: bool) -> None:
        super().__init__()
        self.velocity, self.probes, self.with_divergence = velocity, probes, with_divergence
        self.nfe = 0

    def forward(self, t: Tensor, state: Tensor | tuple[Tensor, Tensor]) -> object:
        self.nfe += 1
        if not self.with_divergence:
            return self.velocity(state, t.expand(state.shape[0]))
        x = state[0]
        tb = t.expand(x.shape[0])
        v, div = divergence(lambda y: self.velocity(y, tb), x, self.probes)
        return v, div


def _integrate(
    func: _Counted,
    state: Tensor | tuple[Tensor, ...],
    t0: float,
    t1: float,
    *,
    method: str,
    rtol: float,
    atol: float,
    steps: int | None,
    adjoint: bool | str,
    adjoint_params: tuple[Tensor, ...] | None,
) -> object:
    first = state[0] if isinstance(state, tuple) else state
    times = torch.tensor([t0, t1], dtype=first.dtype, device=first.device)
    options: dict[str, object] = {}
    if method in FIXED_GRID_METHODS:
        if steps is None or steps < 1:
            raise ValueError(f"ODE method {method!r} is fixed-grid: give steps >= 1, got {steps}")
        options["step_size"] = abs(t1 - t0) / steps
    else:
        # Adaptive steps may overshoot the end time and interpolate back; an SDE's
        # coefficients are undefined before 0 (VP: beta < 0), so the last step must land on t1.
        options["step_t"] = times[1:]
    kwargs = {"method": method, "rtol": rtol, "atol": atol, "options": options}
    mode = adjoint_mode(adjoint, method)
    if mode is None:
        out = odeint(func, state, times, **kwargs)
        return tuple(o[-1] for o in out) if isinstance(out, tuple) else out[-1]
    params = adjoint_params
    if params is None:
        params = tuple(p for p in _parameters_of(func.velocity) if p.requires_grad)
    if mode == "backsolve":
        out = odeint_adjoint(func, state, times, adjoint_params=params, **kwargs)
        return tuple(o[-1] for o in out) if isinstance(out, tuple) else out[-1]
    if isinstance(state, tuple):
        return checkpoint_odeint(func, state, times, params, **kwargs)
    (out,) = checkpoint_odeint(lambda t, y: (func(t, y[0]),), (state,), times, params, **kwargs)
    return out


def adjoint_mode(adjoint: bool | str, method: str) -> str | None:
    """How gradients of an ODE solve are taken: ``None`` (backpropagation through the
    solver, ``adjoint=False``), ``"checkpoint"`` (``checkpoint_odeint``; what ``True``
    means for the Runge–Kutta methods) or ``"backsolve"`` (torchdiffeq's continuous
    adjoint, O(1) memory in the steps; what ``True`` means for the Adams methods)."""
    if adjoint is False:
        return None
    if adjoint is True:
        return "checkpoint" if method in CHECKPOINT_METHODS else "backsolve"
    if adjoint == "checkpoint" and method not in CHECKPOINT_METHODS:
        raise ValueError(
            f"adjoint='checkpoint' needs a Runge–Kutta method {CHECKPOINT_METHODS}, "
            f"got method={method!r}; use adjoint='backsolve'"
        )
    if adjoint in ("checkpoint", "backsolve"):
        return adjoint
    raise ValueError(f"adjoint must be False, True, 'checkpoint' or 'backsolve', got {adjoint!r}")


def _parameters_of(fn: object) -> list[Tensor]:
    """Parameters reachable from ``fn``: a module, or a bound method of a module."""
    owner = fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)
    return list(owner.parameters()) if isinstance(owner, nn.Module) else []


def solve_ode(
    velocity: VelocityFn,
    x: Tensor,
    t0: float,
    t1: float,
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    steps: int | None = None,
    adjoint: bool | str = False,
    adjoint_params: tuple[Tensor, ...] | None = None,
) -> tuple[Tensor, int]:
    r"""Integrate :math:`dx/dt = v(x, t)` from ``t0`` to ``t1`` (either direction) with
    torchdiffeq; returns ``(x(t1), nfe)``.

    ``method`` is any torchdiffeq solver: adaptive (``dopri5`` default, ``bosh3``,
    ``tsit5``, ...) with ``rtol``/``atol``, or fixed-grid (``euler``, ``midpoint``, ``rk4``)
    with ``steps`` equal steps. ``adjoint`` picks how gradients are taken (see
    ``adjoint_mode``): ``True`` or ``"checkpoint"``, a discrete adjoint through the
    accepted steps (``checkpoint_odeint``); ``"backsolve"``, torchdiffeq's
    ``odeint_adjoint`` (memory O(1) in the number of steps; Chen et al., "Neural Ordinary
    Differential Equations", 2018).
    """
    func = _Counted(velocity, None, with_divergence=False)
    out = _integrate(
        func, x, t0, t1, method=method, rtol=rtol, atol=atol, steps=steps,
        adjoint=adjoint, adjoint_params=adjoint_params,
    )  # fmt: skip
    return out, func.nfe


class LogProb(NamedTuple):
    """Result of ``ode_log_prob``: log-density (nats, ``(B,)``), end state ``z``, and NFE."""

    log_prob: Tensor
    z: Tensor
    nfe: int


def ode_log_prob(
    velocity: VelocityFn,
    x: Tensor,
    base_log_prob: Callable[[Tensor], Tensor],
    *,
    t0: float = 0.0,
    t1: float = 1.0,
    probes: Tensor | None = None,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    steps: int | None = None,
    adjoint: bool | str = False,
    adjoint_params: tuple[Tensor, ...] | None = None,
) -> LogProb:
    r"""Log-density of ``x`` under the flow of :math:`dx/dt = v(x, t)` from data at ``t0`` to
    the base distribution at ``t1``, by the instantaneous change of variables

    .. math:: \log p_{t_0}(x) = \log p_{t_1}(z) + \int_{t_0}^{t_1} \nabla\cdot v(x(t), t)\,dt,

    (Chen et al. 2018, thm. 1; Grathwohl et al., FFJORD, 2019). The state ``(x, ∫ div)`` is
    integrated jointly, so the solver's error control covers the log-density too. The
    divergence is exact (``probes=None``) or Hutchinson's with fixed ``probes`` for the
    whole solve (see ``divergence``). Serves the CNF (``t0=0, t1=1``) and diffusion's
    probability-flow ODE (``t0=eps, t1=T``) alike. Differentiable (training by maximum
    likelihood) by backpropagation through the solver or, with ``adjoint``, by an adjoint
    method (``True``/``"checkpoint"`` or ``"backsolve"``, as in ``solve_ode``).

    The whole solve runs in float32 even under autocast: the log-density integrates the
    divergence, and an adaptive solver's error control needs more than bf16's 8 bits.
    """
    func = _Counted(velocity, probes, with_divergence=True)
    with fp32():
        x = full_precision(x)
        zero = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        z, integral = _integrate(
            func, (x, zero), t0, t1, method=method, rtol=rtol, atol=atol, steps=steps,
            adjoint=adjoint, adjoint_params=adjoint_params,
        )  # fmt: skip
        return LogProb(base_log_prob(z) + integral, z, func.nfe)

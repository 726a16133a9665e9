"""ODE gradients by a discrete adjoint through checkpoints at the solver's accepted steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torchdiffeq import odeint

# torchdiffeq keeps its solver table (and so the adaptive methods' Butcher tableaus)
# internal. Should a release move it, only the fixed-grid methods are retaken here and
# ``adjoint=True`` on an adaptive method falls back to the continuous adjoint
# (``physgen.likelihood.adjoint_mode``): slower, never wrong.
try:
    from torchdiffeq._impl.odeint import SOLVERS
except ImportError:  # pragma: no cover - depends on the installed torchdiffeq
    SOLVERS = {}

__all__ = ["CHECKPOINT_METHODS", "checkpoint_odeint"]

State = tuple[Tensor, ...]
Dynamics = Callable[[Tensor, State], State]
Tableau = tuple[tuple[float, ...], tuple[tuple[float, ...], ...], tuple[float, ...]]

# Butcher tableaus (nodes, rows, weights) of torchdiffeq's fixed-grid Runge–Kutta methods,
# step for step as it takes them ("rk4" is its 3/8-rule variant).
_FIXED_GRID: dict[str, Tableau] = {
    "euler": ((), (), (1.0,)),
    "midpoint": ((0.5,), ((0.5,),), (0.0, 1.0)),
    "rk4": (
        (1 / 3, 2 / 3, 1.0),
        ((1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
        (1 / 8, 3 / 8, 3 / 8, 1 / 8),
    ),
}


def _adaptive_tableau(method: str) -> Tableau | None:
    """The tableau of one of torchdiffeq's adaptive Runge–Kutta solvers (None otherwise)."""
    tab = getattr(SOLVERS.get(method), "tableau", None)
    if tab is None:
        return None
    rows = tuple(tuple(float(b) for b in row) for row in tab.beta)
    return tuple(float(a) for a in tab.alpha), rows, tuple(float(c) for c in tab.c_sol)


_TABLEAUS: dict[str, Tableau] = {
    **{m: t for m in SOLVERS if (t := _adaptive_tableau(m)) is not None},
    **_FIXED_GRID,
}
CHECKPOINT_METHODS = tuple(sorted(_TABLEAUS))
"""The torchdiffeq methods whose steps ``checkpoint_odeint`` can retake (Runge–Kutta)."""


def _combine(y: State, h: Tensor, coeffs: tuple[float, ...], ks: list[State]) -> State:
    r""":math:`y + h \sum_j a_j k_j`, per state component, skipping zero coefficients."""
    terms = [(a, k) for a, k in zip(coeffs, ks, strict=False) if a != 0.0]
    if not terms:
        return y
    return tuple(
        y[n] + h * sum((a * k[n] for a, k in terms[1:]), terms[0][0] * terms[0][1][n])
        for n in range(len(y))
    )


def _rk_step(f: Dynamics, tableau: Tableau, t0: Tensor, h: Tensor, y0: State) -> State:
    """One explicit Runge–Kutta step of size ``h`` from ``(t0, y0)``; stages after the last
    one with a non-zero weight (Dormand–Prince's FSAL stage) are not evaluated."""
    nodes, rows, weights = tableau
    last = max(i for i, c in enumerate(weights) if c != 0.0)
    ks = [f(t0, y0)]
    for i in range(last):
        ks.append(f(t0 + nodes[i] * h, _combine(y0, h, rows[i], ks)))
    return _combine(y0, h, weights, ks)


class _Recorder(nn.Module):
    """The dynamics for torchdiffeq, keeping the start ``(t, dt, y)`` of every step it
    accepts (adaptive methods) or takes (fixed grid)."""

    def __init__(self, f: Dynamics, adaptive: bool) -> None:
        super().__init__()
        self.f = f
        self.steps: list[tuple[Tensor, Tensor, State]] = []
        name = "callback_accept_step" if adaptive else "callback_step"
        setattr(self, name, self._record)

    def _record(self, t0: Tensor, y0: State, dt: Tensor) -> None:
        self.steps.append((t0, dt, tuple(y0)))

    def forward(self, t: Tensor, y: State) -> State:
        return self.f(t, y)


class _CheckpointAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, f: Dynamics, solve: dict[str, Any], n_state: int, *inputs: Tensor
    ) -> State:
        state, params = inputs[:n_state], inputs[n_state:]
        method, times = solve["method"], solve["times"]
        recorder = _Recorder(f, adaptive=method not in _FIXED_GRID)
        with torch.no_grad():
            out = odeint(recorder, state, times, method=method, rtol=solve["rtol"],
                         atol=solve["atol"], options=solve["options"])  # fmt: skip
        ctx.f, ctx.tableau, ctx.params = f, _TABLEAUS[method], params
        ctx.steps = recorder.steps
        ctx.sign = 1.0 if float(times[-1]) >= float(times[0]) else -1.0
        return tuple(o[-1] for o in out)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        params: State = ctx.params
        adj = grads
        grad_params = [torch.zeros_like(p) for p in params]
        for t0, dt, start in reversed(ctx.steps):
            y0 = tuple(s.detach().requires_grad_(True) for s in start)
            t = t0.to(y0[0].dtype)
            h = (ctx.sign * dt).to(y0[0].dtype)  # torchdiffeq reports |dt| on reversed solves
            with torch.enable_grad():
                y1 = _rk_step(ctx.f, ctx.tableau, t, h, y0)
                out = torch.autograd.grad(y1, (*y0, *params), adj, allow_unused=True)
            adj = tuple(
                torch.zeros_like(y) if g is None else g
                for g, y in zip(out[: len(y0)], y0, strict=True)
            )
            for gp, g in zip(grad_params, out[len(y0) :], strict=True):
                if g is not None:
                    gp += g
        return (None, None, None, *adj, *grad_params)


def checkpoint_odeint(
    f: Dynamics,
    state: State,
    times: Tensor,
    params: tuple[Tensor, ...],
    *,
    method: str,
    rtol: float,
    atol: float,
    options: dict[str, Any],
) -> State:
    r"""``state`` at ``times[-1]`` after integrating :math:`dy/dt = f(t, y)` with torchdiffeq,
    differentiable with respect to ``state`` and ``params`` by a discrete adjoint.

    The forward solve runs without a graph and keeps only the state at the start of each
    accepted step. The backward pass walks those steps in reverse, retakes each one with a
    graph and pulls the adjoint :math:`\lambda` back through it,
    :math:`\lambda_k = (\partial y_{k+1}/\partial y_k)^\top \lambda_{k+1}`, summing
    :math:`(\partial y_{k+1}/\partial\theta)^\top \lambda_{k+1}` for the parameters (the
    adaptive checkpoint adjoint: Zhuang et al., ICML 2020). This is the exact gradient of
    the computed solution (step sizes held fixed), at one step's graph of memory plus one
    state per step, and its backward pass costs the accepted steps' stages only, where
    the continuous adjoint (Chen et al. 2018) re-solves an augmented ODE with its own
    error control.
    """
    if method not in _TABLEAUS:
        raise ValueError(
            f"checkpoint adjoint: method must be one of {CHECKPOINT_METHODS}, got {method!r}"
        )
    solve = {"method": method, "times": times, "rtol": rtol, "atol": atol, "options": options}
    return _CheckpointAdjoint.apply(f, solve, len(state), *state, *params)

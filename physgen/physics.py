"""Physical-inconsistency losses (per-sample penalties) and Latin-hypercube prior samples."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from physgen.utils import append_dims, fp32

if TYPE_CHECKING:
    from physgen.problem import Problem

__all__ = [
    "PhysicsLoss",
    "ResidualPenalty",
    "boundary_penalty",
    "equality_penalty",
    "inequality_penalty",
    "latin_hypercube",
    "latin_hypercube_normal",
    "monotonicity_penalty",
    "residual_penalty",
]


def _per_sample_mean(x: Tensor) -> Tensor:
    return x.flatten(1).mean(1) if x.ndim > 1 else x


def residual_penalty(problem: Problem, fields: Tensor, normalize: bool = True) -> Tensor:
    r"""Mean-square PDE residual per sample, optionally relative to the problem's scale.

    .. math:: P(x) = \frac{1}{N}\sum_i r_i(x)^2 \;/\; s(x)^2

    where r is ``problem.residual`` (the generator's discrete operator) and s is
    ``problem.residual_scale`` when ``normalize`` (so the penalty is the squared relative
    residual and is comparable across problems). ``fields`` are in physical units,
    ``(B, C, *grid)``. Zero on exact discrete solutions.
    """
    msq = _per_sample_mean(problem.residual(fields).pow(2))
    if normalize:
        msq = msq / problem.residual_scale(fields).pow(2)
    return msq


def equality_penalty(value: Tensor, target: Tensor | float = 0.0) -> Tensor:
    r"""Equality constraint h(x) = target: per-sample mean of :math:`(h - t)^2`, shape ``(B,)``."""
    return _per_sample_mean((value - target).pow(2))


def inequality_penalty(value: Tensor, bound: Tensor | float = 0.0) -> Tensor:
    r"""Inequality constraint g(x) ≤ bound: per-sample mean of :math:`\max(0, g - b)^2`."""
    return _per_sample_mean(torch.relu(value - bound).pow(2))


def monotonicity_penalty(value: Tensor, dim: int = -1, increasing: bool = True) -> Tensor:
    r"""Monotonicity along ``dim``: mean of :math:`\max(0, -\Delta g)^2` (PGNN-style).

    Zero when ``value`` is non-decreasing (``increasing``) or non-increasing along ``dim``.
    """
    diff = torch.diff(value, dim=dim)
    return inequality_penalty(-diff if increasing else diff)


def boundary_penalty(
    fields: Tensor, channel: int, axis: int, value: float | tuple[float, float] = 0.0
) -> Tensor:
    """Dirichlet condition on both ends of grid ``axis`` for one channel of ``(B, C, *grid)``.

    Per-sample mean square of the boundary values minus ``value`` (or ``(low, high)``).
    ``axis`` counts grid axes only (0 is the first; -1 the last).
    """
    low, high = value if isinstance(value, tuple) else (value, value)
    n_grid = fields.ndim - 2
    if not -n_grid <= axis < n_grid:
        raise ValueError(
            f"boundary_penalty: axis={axis} is not a grid axis of fields with shape "
            f"{tuple(fields.shape)} (B, C, *grid); expected -{n_grid} <= axis < {n_grid}"
        )
    field = fields[:, channel]  # (B, *grid)
    ends = field.movedim(axis % n_grid + 1, -1)  # (B, ..., n_axis)
    return 0.5 * (equality_penalty(ends[..., 0], low) + equality_penalty(ends[..., -1], high))


class PhysicsLoss:
    r"""Weighted sum of a problem's physical-inconsistency penalties, per sample.

    .. math:: L_{phy}(x) = w_r\,P_{res}(x) + \sum_c w_c\,P_c(x) + \sum_k w_k\,Q_k(x)

    with the PDE residual penalty (`residual_penalty`), the problem's own constraint
    violations (``problem.constraints``, e.g. positivity or conservation) and any ``extra``
    penalties (callables ``fields -> (B,)`` built from `boundary_penalty`,
    `monotonicity_penalty`, ...). The multi-level constraints of Zhu et al. (2025), as one
    object any family can add to its loss.

    Args:
        problem: supplies ``residual``, ``residual_scale`` and ``constraints``.
        residual_weight: weight of the PDE residual (0 disables it).
        constraint_weight: weight of every entry of ``problem.constraints``.
        normalize: make the residual relative to ``problem.residual_scale``.
        extra: additional named penalties and their weights.
    """

    def __init__(
        self,
        problem: Problem,
        residual_weight: float = 1.0,
        constraint_weight: float = 1.0,
        normalize: bool = True,
        extra: Mapping[str, tuple[Callable[[Tensor], Tensor], float]] | None = None,
    ) -> None:
        self.problem = problem
        self.residual_weight = residual_weight
        self.constraint_weight = constraint_weight
        self.normalize = normalize
        self.extra = dict(extra or {})

    def terms(self, fields: Tensor) -> dict[str, Tensor]:
        """Every unweighted penalty by name, each ``(B,)``."""
        out: dict[str, Tensor] = {}
        if self.residual_weight:
            out["residual"] = residual_penalty(self.problem, fields, self.normalize)
        if self.constraint_weight:
            for name, violation in self.problem.constraints(fields).items():
                out[name] = _per_sample_mean(violation.pow(2))
        for name, (fn, _) in self.extra.items():
            out[name] = fn(fields)
        return out

    def __call__(self, fields: Tensor) -> Tensor:
        """Weighted total ``(B,)``."""
        total = torch.zeros(fields.shape[0], device=fields.device, dtype=fields.dtype)
        for name, value in self.terms(fields).items():
            if name == "residual":
                weight = self.residual_weight
            elif name in self.extra:
                weight = self.extra[name][1]
            else:
                weight = self.constraint_weight
            total = total + weight * value
        return total


class ResidualPenalty:
    r"""Per-sample PDE-residual penalty of **normalized** fields, for training losses.

    .. math:: P(x) = \frac{1}{N}\sum_i \Big|\frac{r_i(\mu + s \odot x)}{c}\Big|^p

    where x are the model's z-scored fields ``(B, C, *grid)``, μ and s the per-channel mean
    and scale that de-normalize them, r the problem's discrete residual (the generator's
    operator) in physical units, and c the problem's ``residual_scale`` when ``relative``
    (else 1). ``power=1`` is the mean absolute residual of PBFM and PIDM's RE; ``power=2`` the
    mean square. ``bounds`` clamps named channels to a physical range before the residual,
    e.g. a permeability to positive values, where the operator is undefined outside it (a
    clamped entry passes no gradient). Zero on exact discrete solutions.

    Args:
        problem: supplies ``residual``, ``residual_scale`` and ``field_names``.
        mean: per-channel means μ, ``(C,)``.
        scale: per-channel scales s, ``(C,)``.
        power: exponent p ≥ 1.
        relative: divide the residual by ``problem.residual_scale``.
        bounds: ``{field name: (low, high)}`` in physical units; either end may be ``None``.
    """

    def __init__(
        self,
        problem: Problem,
        mean: Tensor | list[float],
        scale: Tensor | list[float],
        *,
        power: float = 1.0,
        relative: bool = True,
        bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    ) -> None:
        names = list(problem.field_names)
        self.mean = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        self.scale = torch.as_tensor(scale, dtype=torch.float64).reshape(-1)
        for label, value in (("mean", self.mean), ("scale", self.scale)):
            if value.numel() != len(names):
                raise ValueError(
                    f"ResidualPenalty: {label} has {value.numel()} entries; the problem "
                    f"{problem.name!r} has {len(names)} fields {names}"
                )
        if not bool((self.scale > 0).all()):
            raise ValueError(f"ResidualPenalty: scale must be positive, got {self.scale.tolist()}")
        if power < 1:
            raise ValueError(f"ResidualPenalty: power must be >= 1, got {power}")
        unknown = sorted(set(bounds or {}) - set(names))
        if unknown:
            raise ValueError(
                f"ResidualPenalty: bounds name unknown fields {unknown}; fields: {names}"
            )
        self.problem, self.power, self.relative = problem, power, relative
        self.bounds = {names.index(k): v for k, v in (bounds or {}).items()}

    def physical(self, x: Tensor) -> Tensor:
        """De-normalized fields ``μ + s ⊙ x``, with ``bounds`` applied."""
        shape = (1, -1) + (1,) * (x.ndim - 2)
        out = x * self.scale.to(x).reshape(shape) + self.mean.to(x).reshape(shape)
        if self.bounds:
            channels = list(out.unbind(1))
            for c, (low, high) in self.bounds.items():
                channels[c] = channels[c].clamp(low, high)
            out = torch.stack(channels, dim=1)
        return out

    def __call__(self, x: Tensor) -> Tensor:
        """The penalty per sample, ``(B,)``, computed in at least float32 (also under bf16
        autocast: a discrete second derivative of a bf16 field is mostly rounding error)."""
        with fp32():
            fields = self.physical(x.to(torch.promote_types(x.dtype, torch.float32)))
            r = self.problem.residual(fields)
            if self.relative:
                r = r / append_dims(self.problem.residual_scale(fields), r.ndim)
            return _per_sample_mean(r.abs().pow(self.power))


def _lhs_strata(n: int, dim: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Stratum index (a permutation per dimension) and uniform position in it, float64."""
    if n < 1 or dim < 1:
        raise ValueError(f"latin_hypercube needs n >= 1 and dim >= 1, got n={n}, dim={dim}")
    perms = torch.stack([torch.randperm(n, generator=generator) for _ in range(dim)], dim=1)
    jitter = torch.rand(n, dim, generator=generator, dtype=torch.float64)
    return perms.double(), jitter  # (n, dim) each


def _cast_within(values: Tensor, low: Tensor, high: Tensor, dtype: torch.dtype) -> Tensor:
    """Cast float64 ``values`` in ``[low, high)`` to ``dtype``, keeping each in its interval.

    Rounding to a narrower dtype can carry a point lying just inside a stratum onto its edge
    (into the neighbouring stratum, or onto 1); such points move back by one unit in the last
    place, which by round-to-nearest lands inside the interval again.
    """
    out = values.to(dtype)
    wide = out.double()
    out = torch.where(wide >= high, torch.nextafter(out, torch.full_like(out, -math.inf)), out)
    return torch.where(wide < low, torch.nextafter(out, torch.full_like(out, math.inf)), out)


def latin_hypercube(
    n: int,
    dim: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Latin-hypercube sample of ``n`` points in :math:`[0, 1)^{dim}` (McKay et al. 1979).

    For each dimension j, a random permutation π_j assigns the n strata
    :math:`[k/n, (k+1)/n)` to the points and a uniform draw places each point inside its
    stratum: :math:`u_{ij} = (\pi_j(i) + U_{ij}) / n`. Every stratum of every dimension holds
    exactly one point (Zhu et al. 2025, Algorithm 1), also after rounding to ``dtype``.
    """
    perms, jitter = _lhs_strata(n, dim, generator)
    return _cast_within((perms + jitter) / n, perms / n, (perms + 1) / n, dtype)  # (n, dim)


def latin_hypercube_normal(
    n: int,
    dim: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Latin-hypercube sample of the standard normal prior: :math:`z = \Phi^{-1}(u)`.

    The uniform LHS is mapped through the inverse CDF, so each of the n equal-probability
    slabs of N(0, 1) holds exactly one point per latent dimension (also after rounding to
    ``dtype``). Computed in float64 and kept away from 0 and 1 so no point is infinite.
    """
    perms, jitter = _lhs_strata(n, dim, generator)
    u = ((perms + jitter) / n).clamp(1e-12, 1 - 1e-12)
    ndtri = torch.special.ndtri
    return _cast_within(ndtri(u), ndtri(perms / n), ndtri((perms + 1) / n), dtype)

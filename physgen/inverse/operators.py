"""Observation operators y = A(x) + ε for inverse tasks: coarsening, channel masks, sensors.

Every operator acts on a fields tensor ``(B, C, *grid)`` (``ndim`` trailing spatial axes) and
is a linear map with ``A Aᵀ = gram · I``, which posterior-sampling guidance uses
(:mod:`physgen.inverse.guided`). Each also states how much of the field it sees
(:meth:`ObservationOperator.fraction`) and how to *lift* an observation back onto the target
grid as input channels of a conditional model (:meth:`ObservationOperator.lift`): coarse
fields are interpolated (bicubic in 2-D), channel masks pass the observed channels, sensors
scatter their values into a zero field with an indicator channel.

Coarsening is periodic-aware: on periodic axes the coarse grid may sit at any ``offset`` of
the fine one (block windows and interpolation stencils wrap around), while on bounded axes
windows never cross the boundary and interpolation clamps to the edge values.

Example:
    >>> op = BlockAverage(4, ndim=2)
    >>> op(torch.ones(3, 1, 32, 32)).shape
    torch.Size([3, 1, 8, 8])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from physgen.problem import Observation, SensorSet

__all__ = [
    "BlockAverage",
    "ChannelMask",
    "ObservationOperator",
    "Sensors",
    "Subsample",
    "interpolate",
]

Interpolation = Literal["cubic", "linear", "nearest"]


class ObservationOperator(Observation):
    """A linear observation operator with additive Gaussian noise, ``y = A(x) + σ ε``.

    Subclasses implement ``__call__`` (the noise-free forward map ``A``), ``gram`` (the
    constant γ with ``A Aᵀ = γ I``) and :meth:`lift`.

    Attributes:
        noise_std: σ of the observation noise, in the units of the fields it observes.
    """

    noise_std: float = 0.0

    @property
    def gram(self) -> float:
        """γ with ``A Aᵀ = γ I`` (1 for selections, ``1/s^d`` for a block mean)."""
        return 1.0

    def observe(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A noisy observation ``A(x) + σ ε`` with ε ~ N(0, I) drawn from ``generator``."""
        y = self(x)
        if self.noise_std > 0:
            eps = torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
            y = y + self.noise_std * eps
        return y

    def observed_shape(self, sample_shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of one observation (no batch dim) of a sample of ``sample_shape``."""
        probe = torch.zeros(1, *sample_shape, dtype=torch.float64)
        return tuple(self(probe).shape[1:])

    def fraction(self, sample_shape: Sequence[int]) -> float:
        """Observed values per unknown value: ``numel(A x) / numel(x)``."""
        return math.prod(self.observed_shape(sample_shape)) / math.prod(sample_shape)

    def lift(self, y: Tensor, sample_shape: Sequence[int]) -> Tensor:
        """The observation as fields on the target grid ``(B, C_lift, *grid)``."""
        raise NotImplementedError


def _flags(value: bool | Sequence[bool], ndim: int, name: str) -> tuple[bool, ...]:
    flags = (bool(value),) * ndim if isinstance(value, bool) else tuple(bool(v) for v in value)
    if len(flags) != ndim:
        raise ValueError(f"{name}: need one flag per spatial axis ({ndim}), got {value!r}")
    return flags


def _ints(value: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    ints = (int(value),) * ndim if isinstance(value, int) else tuple(int(v) for v in value)
    if len(ints) != ndim:
        raise ValueError(f"{name}: need one value per spatial axis ({ndim}), got {value!r}")
    return ints


class _Coarsen(ObservationOperator):
    """Shared parts of block averaging and subsampling by an integer factor per axis."""

    def __init__(
        self,
        factor: int | Sequence[int],
        ndim: int,
        *,
        periodic: bool | Sequence[bool] = False,
        offset: int | Sequence[int] = 0,
        noise_std: float = 0.0,
    ) -> None:
        if not 1 <= ndim <= 3:
            raise ValueError(f"{type(self).__name__}: ndim must be 1, 2 or 3, got {ndim}")
        self.ndim = ndim
        self.factor = _ints(factor, ndim, f"{type(self).__name__} factor")
        self.periodic = _flags(periodic, ndim, f"{type(self).__name__} periodic")
        self.offset = _ints(offset, ndim, f"{type(self).__name__} offset")
        if any(s < 1 for s in self.factor):
            raise ValueError(f"{type(self).__name__}: factors must be ≥ 1, got {self.factor}")
        for s, o, p in zip(self.factor, self.offset, self.periodic, strict=True):
            if not 0 <= o < s:
                raise ValueError(f"{type(self).__name__}: offset {o} must lie in [0, {s})")
            if o and not p and isinstance(self, BlockAverage):
                raise ValueError(
                    "BlockAverage: a nonzero offset needs a periodic axis (a shifted block "
                    "would cross the boundary)"
                )
        if noise_std < 0:
            raise ValueError(f"noise_std must be ≥ 0, got {noise_std}")
        self.noise_std = float(noise_std)

    def _grid(self, x: Tensor) -> tuple[int, ...]:
        if x.ndim < self.ndim + 1:
            raise ValueError(
                f"{type(self).__name__}: expected fields (B, ..., {self.ndim} grid axes), "
                f"got shape {tuple(x.shape)}"
            )
        return tuple(x.shape[x.ndim - self.ndim :])

    def origin(self) -> tuple[float, ...]:
        """Fine-grid index (fractional) of coarse point 0 along each axis."""
        raise NotImplementedError

    def lift(
        self, y: Tensor, sample_shape: Sequence[int], method: Interpolation = "cubic"
    ) -> Tensor:
        """Interpolate the coarse observation back to the fine grid of ``sample_shape``."""
        fine = tuple(sample_shape[len(sample_shape) - self.ndim :])
        return interpolate(
            y, self.factor, fine, origin=self.origin(), periodic=self.periodic, method=method
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(factor={self.factor}, periodic={self.periodic}, "
            f"offset={self.offset}, noise_std={self.noise_std})"
        )


class BlockAverage(_Coarsen):
    r"""Mean over non-overlapping blocks of ``s`` points per axis (the finite-volume restriction).

    .. math:: (Ax)_J = \frac{1}{s^d}\sum_{k \in \{0..s-1\}^d} x_{o + sJ + k}

    On periodic axes the windows start at ``offset`` o and wrap around the end; the grid size
    must be a multiple of ``s``. ``A Aᵀ = s^{-d} I``. The coarse value sits at the block centre,
    fine index ``o + sJ + (s − 1)/2``.

    Args:
        factor: ``s`` (one for all axes or one per axis).
        ndim: number of trailing spatial axes.
        periodic: per-axis periodicity (windows may wrap only there).
        offset: start of the first block, ``0 ≤ o < s`` (nonzero only on periodic axes).
        noise_std: observation-noise σ.
    """

    @property
    def gram(self) -> float:
        return 1.0 / math.prod(self.factor)

    def origin(self) -> tuple[float, ...]:
        return tuple(o + (s - 1) / 2 for s, o in zip(self.factor, self.offset, strict=True))

    def __call__(self, x: Tensor) -> Tensor:
        grid = self._grid(x)
        for n, s in zip(grid, self.factor, strict=True):
            if n % s:
                raise ValueError(f"BlockAverage: grid {grid} is not divisible by {self.factor}")
        lead = x.ndim - self.ndim
        if any(self.offset):
            # Windows that wrap around: shift the periodic grid so the first block starts at 0.
            x = torch.roll(x, [-o for o in self.offset], list(range(lead, x.ndim)))
        blocks = [v for n, s in zip(grid, self.factor, strict=True) for v in (n // s, s)]
        x = x.reshape(*x.shape[:lead], *blocks)  # (..., n1/s1, s1, n2/s2, s2, ...)
        return x.mean(dim=tuple(range(lead + 1, x.ndim, 2)))


class Subsample(_Coarsen):
    r"""Point values every ``s``-th grid point: ``(Ax)_J = x_{o + sJ}`` (strided injection).

    On bounded axes any grid size works (points ``o, o + s, ...`` inside the grid); on periodic
    axes the size must be a multiple of ``s`` so the coarse grid is uniform across the wrap.
    ``A Aᵀ = I``.
    """

    def origin(self) -> tuple[float, ...]:
        return tuple(float(o) for o in self.offset)

    def __call__(self, x: Tensor) -> Tensor:
        grid = self._grid(x)
        for n, s, p in zip(grid, self.factor, self.periodic, strict=True):
            if p and n % s:
                raise ValueError(
                    f"Subsample: periodic grid {grid} is not divisible by {self.factor}"
                )
        index = tuple(slice(o, None, s) for o, s in zip(self.offset, self.factor, strict=True))
        return x[(..., *index)]


def _keys_weights(t: Tensor, a: float = -0.5) -> Tensor:
    """Cubic-convolution weights of taps −1, 0, 1, 2 at fraction ``t`` (Keys 1981, a = −½)."""
    d = torch.stack([1 + t, t, 1 - t, 2 - t], dim=-1).abs()  # distances to the 4 taps
    near = (a + 2) * d**3 - (a + 3) * d**2 + 1
    far = a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
    return torch.where(d <= 1, near, torch.where(d < 2, far, torch.zeros_like(d)))


def interpolate(
    y: Tensor,
    factor: int | Sequence[int],
    fine_shape: Sequence[int],
    *,
    origin: float | Sequence[float] = 0.0,
    periodic: bool | Sequence[bool] = False,
    method: Interpolation = "cubic",
) -> Tensor:
    r"""Separable interpolation from a uniform coarse grid onto a fine grid.

    Coarse point ``j`` of an axis sits at fine index ``origin + j·s``; fine point ``i`` reads
    the coarse coordinate ``u = (i − origin)/s``. ``cubic`` is Keys' cubic convolution
    (a = −½; third order, exact for quadratics away from bounded edges — "bicubic" in 2-D),
    ``linear`` is (bi)linear and ``nearest`` takes the closest coarse point. Stencils wrap
    around on periodic axes and are clamped to the edge values on bounded ones (as image
    libraries do).

    Args:
        y: coarse fields ``(..., *coarse_grid)``.
        factor: ``s`` per axis.
        fine_shape: the target grid shape (its length = number of spatial axes).
        origin: fine index of coarse point 0, per axis.
        periodic: per-axis periodicity.
        method: ``"cubic"``, ``"linear"`` or ``"nearest"``.

    Returns:
        ``(..., *fine_shape)``.
    """
    fine_shape = tuple(int(n) for n in fine_shape)
    d = len(fine_shape)
    factors = _ints(factor, d, "interpolate factor")
    wrap = _flags(periodic, d, "interpolate periodic")
    origins = (float(origin),) * d if isinstance(origin, (int, float)) else tuple(origin)
    if method not in ("cubic", "linear", "nearest"):
        raise ValueError(f"interpolate: method must be cubic, linear or nearest, got {method!r}")
    out = y
    for axis in range(d):
        dim = y.ndim - d + axis
        n_c = out.shape[dim]
        u = (torch.arange(fine_shape[axis], dtype=torch.float64) - origins[axis]) / factors[axis]
        if method == "nearest":
            base, taps, w = torch.round(u), torch.zeros(1), torch.ones(u.shape[0], 1)
        else:
            base = torch.floor(u)
            t = u - base
            if method == "cubic":
                taps, w = torch.arange(-1.0, 3.0), _keys_weights(t)
            else:
                taps, w = torch.arange(0.0, 2.0), torch.stack([1 - t, t], dim=-1)
        idx = base[:, None] + taps[None, :]  # (n_fine, n_taps)
        idx = idx.remainder(n_c) if wrap[axis] else idx.clamp(0, n_c - 1)
        moved = out.movedim(dim, -1)  # (..., n_c)
        gathered = moved[..., idx.long().to(y.device)]  # (..., n_fine, n_taps)
        out = (gathered * w.to(y.device, y.dtype)).sum(-1).movedim(-1, dim)
    return out


class ChannelMask(ObservationOperator):
    """Observe some channels by field name and infer the others ("colorization").

    ``A(x) = x[:, observed]``; ``A Aᵀ = I``. ``lift`` returns the observed channels unchanged
    (they already live on the target grid).

    Args:
        field_names: the channel names of the fields tensor, in order.
        observed: names of the observed channels.
        noise_std: observation-noise σ.

    Example:
        >>> mask = ChannelMask(["a", "u"], observed=["a"])
        >>> mask.missing
        ('u',)
    """

    def __init__(
        self, field_names: Sequence[str], observed: Sequence[str], *, noise_std: float = 0.0
    ) -> None:
        self.field_names = tuple(field_names)
        self.observed = tuple(observed)
        unknown = [f for f in self.observed if f not in self.field_names]
        if unknown or not self.observed:
            raise KeyError(
                f"ChannelMask: observed fields {list(self.observed)} must be a non-empty subset "
                f"of {list(self.field_names)} (unknown: {unknown})"
            )
        if len(set(self.observed)) != len(self.observed):
            raise ValueError(f"ChannelMask: observed fields repeat a name: {self.observed}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be ≥ 0, got {noise_std}")
        self.noise_std = float(noise_std)
        self.index = tuple(self.field_names.index(f) for f in self.observed)
        self.missing = tuple(f for f in self.field_names if f not in self.observed)

    @property
    def missing_index(self) -> tuple[int, ...]:
        """Channel positions of the inferred fields."""
        return tuple(self.field_names.index(f) for f in self.missing)

    def __call__(self, x: Tensor) -> Tensor:
        if x.ndim < 2 or x.shape[1] != len(self.field_names):
            raise ValueError(
                f"ChannelMask: expected (B, {len(self.field_names)}, *grid) with channels "
                f"{list(self.field_names)}, got {tuple(x.shape)}"
            )
        return x[:, list(self.index)]

    def lift(self, y: Tensor, sample_shape: Sequence[int]) -> Tensor:
        return y

    def __repr__(self) -> str:
        return f"ChannelMask(observed={list(self.observed)}, missing={list(self.missing)})"


class Sensors(ObservationOperator):
    """Point sensors with Gaussian noise: each sensor reads some channels at one grid point.

    Output ``(B, m)`` in the order of :attr:`sensor_set` points. ``lift`` scatters the values
    into zero fields ``(B, k, *grid)`` for the ``k`` observed channels, followed by ``k``
    indicator channels (1 where a sensor reads that channel).

    Build one from random positions (:meth:`random`) or from a problem's default sensors
    (:meth:`from_sensor_set`).
    """

    def __init__(
        self, field_names: Sequence[str], sensor_set: SensorSet, *, noise_std: float = 0.0
    ) -> None:
        if len(sensor_set) == 0:
            raise ValueError("Sensors: need at least one sensor")
        if noise_std < 0:
            raise ValueError(f"noise_std must be ≥ 0, got {noise_std}")
        self.field_names = tuple(field_names)
        self.sensor_set = sensor_set
        self.noise_std = float(noise_std)
        self.channels = tuple(sorted({c for c, _ in sensor_set.points}))

    @classmethod
    def random(
        cls,
        field_names: Sequence[str],
        grid_shape: Sequence[int],
        n: int,
        *,
        fields: Sequence[str] | None = None,
        seed: int = 0,
        noise_std: float = 0.0,
    ) -> Sensors:
        """``n`` distinct grid points drawn uniformly with ``seed``; each reads ``fields``."""
        total = math.prod(grid_shape)
        if not 1 <= n <= total:
            raise ValueError(f"Sensors: n must lie in [1, {total}] for grid {tuple(grid_shape)}")
        flat = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
        points = [tuple(int(v) for v in np.unravel_index(i, tuple(grid_shape))) for i in flat]
        names = list(field_names) if fields is None else list(fields)
        sensor_set = SensorSet.from_indices(field_names, {f: points for f in names})
        return cls(field_names, sensor_set, noise_std=noise_std)

    @classmethod
    def from_sensor_set(
        cls, field_names: Sequence[str], sensor_set: SensorSet, *, noise_std: float = 0.0
    ) -> Sensors:
        """Wrap a problem's default :class:`~physgen.problem.SensorSet` (its ``observations``)."""
        return cls(field_names, sensor_set, noise_std=noise_std)

    def __call__(self, x: Tensor) -> Tensor:
        return self.sensor_set(x)

    def __len__(self) -> int:
        return len(self.sensor_set)

    def lift(self, y: Tensor, sample_shape: Sequence[int]) -> Tensor:
        grid = tuple(sample_shape[1:])
        k = len(self.channels)
        out = y.new_zeros(y.shape[0], 2 * k, *grid)  # (B, 2k, *grid): values, then indicators
        for j, (c, point) in enumerate(self.sensor_set.points):
            slot = self.channels.index(c)
            out[(slice(None), slot, *point)] = y[:, j]
            out[(slice(None), k + slot, *point)] = 1.0
        return out

    def __repr__(self) -> str:
        names = [self.field_names[c] for c in self.channels]
        return f"Sensors(m={len(self)}, fields={names}, noise_std={self.noise_std})"

"""Uniform Cartesian grids: shape, domain, node/cell centring and a boundary condition per axis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["AXIS_NAMES", "BOUNDARY_CONDITIONS", "CENTERINGS", "Grid"]

BOUNDARY_CONDITIONS = ("periodic", "dirichlet", "neumann")
CENTERINGS = ("node", "cell")
AXIS_NAMES = ("x", "y", "z")


@dataclass(frozen=True)
class Grid:
    """A uniform grid on a box, with one boundary condition per axis.

    Point positions along an axis of length ``L = hi - lo`` with ``n`` points:

    * ``cell``: cell centres ``x_i = lo + (i + 1/2) h`` with ``h = L / n`` (finite volumes);
    * ``node`` on a periodic axis: ``x_i = lo + i h`` with ``h = L / n`` (the end point is the
      start point again, so it is not stored — the FFT grid);
    * ``node`` on a Dirichlet/Neumann axis: both end nodes are stored, ``h = L / (n - 1)``.

    Boundary conditions are homogeneous and act through ghost values (see
    ``physgen.operators.pad``): ``periodic`` wraps, ``dirichlet`` reflects oddly about the
    boundary (u = 0 there), ``neumann`` reflects evenly (zero normal derivative).

    Args:
        shape: points per axis, ``(nx,)``, ``(nx, ny)`` or ``(nx, ny, nz)``.
        domain: ``((lo, hi), ...)`` per axis; default ``(0, 1)`` on every axis.
        bc: one boundary condition for all axes, or one per axis.
        centering: ``"node"`` or ``"cell"``.

    Example:
        >>> g = Grid((64, 64), domain=((0, 1), (0, 1)), bc="periodic")
        >>> g.spacing
        (0.015625, 0.015625)
    """

    shape: tuple[int, ...]
    domain: tuple[tuple[float, float], ...] | None = None
    bc: tuple[str, ...] | str = "periodic"
    centering: str = "cell"

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in np.atleast_1d(self.shape))
        if not 1 <= len(shape) <= 3:
            raise ValueError(f"Grid: shape must have 1 to 3 axes, got {self.shape!r}")
        d = len(shape)
        domain = ((0.0, 1.0),) * d if self.domain is None else self.domain
        domain = tuple((float(lo), float(hi)) for lo, hi in domain)
        if len(domain) != d or any(hi <= lo for lo, hi in domain):
            raise ValueError(
                f"Grid: domain must be {d} pairs (lo, hi) with hi > lo, got {self.domain!r}"
            )
        bc = (self.bc,) * d if isinstance(self.bc, str) else tuple(self.bc)
        if len(bc) != d or any(b not in BOUNDARY_CONDITIONS for b in bc):
            raise ValueError(
                f"Grid: bc must be one of {BOUNDARY_CONDITIONS} (or one per axis), got {self.bc!r}"
            )
        if self.centering not in CENTERINGS:
            raise ValueError(f"Grid: centering must be one of {CENTERINGS}, got {self.centering!r}")
        minimum = 2 if self.centering == "cell" else 3
        if any(n < minimum for n in shape):
            raise ValueError(f"Grid: need at least {minimum} points per axis, got {shape}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "bc", bc)

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.shape)

    @property
    def axis_names(self) -> tuple[str, ...]:
        """Dimension names of the axes in physgen-field/1 files (``x``, ``y``, ``z``)."""
        return AXIS_NAMES[: self.ndim]

    @property
    def lengths(self) -> tuple[float, ...]:
        """Domain length per axis."""
        return tuple(hi - lo for lo, hi in self.domain)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Grid spacing ``h`` per axis."""
        return tuple(
            length / (n - 1 if self._stores_both_ends(i) else n)
            for i, (length, n) in enumerate(zip(self.lengths, self.shape, strict=True))
        )

    @property
    def periodic(self) -> bool:
        """True when every axis is periodic (spectral operators apply)."""
        return all(b == "periodic" for b in self.bc)

    def _stores_both_ends(self, axis: int) -> bool:
        return self.centering == "node" and self.bc[axis] != "periodic"

    def coords(self, axis: int) -> np.ndarray:
        """Point positions along ``axis`` (float64)."""
        (lo, _), n, h = self.domain[axis], self.shape[axis], self.spacing[axis]
        offset = 0.5 if self.centering == "cell" else 0.0
        return lo + (np.arange(n, dtype=np.float64) + offset) * h

    def mesh(self) -> tuple[np.ndarray, ...]:
        """Coordinate arrays of shape ``shape`` (``indexing="ij"``)."""
        return tuple(np.meshgrid(*(self.coords(i) for i in range(self.ndim)), indexing="ij"))

    def cell_volume(self) -> float:
        """Product of the spacings (the quadrature weight of one point)."""
        return float(np.prod(self.spacing))

    def attrs(self) -> dict[str, Any]:
        """Global attributes of a physgen-field/1 file describing this grid."""
        attrs: dict[str, Any] = {
            "indexing": "ij",
            "grid": "cell_centered" if self.centering == "cell" else "node",
            "domain": [v for pair in self.domain for v in pair],
        }
        for name, bc in zip(self.axis_names, self.bc, strict=True):
            attrs[f"bc_{name}"] = bc
        return attrs

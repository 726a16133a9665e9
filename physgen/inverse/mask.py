r"""Inpainting: observe a field everywhere except on a masked (missing) region of the grid.

The :class:`Mask` operator keeps the values at the observed points of a fixed boolean mask,

.. math:: (Ax)_{c,j} = x_{c,\,p_j},\qquad A A^\top = I,

with :math:`p_j` the observed points in row-major order and :math:`c` every channel of the
task. Missing regions come from a random pixel draw (:func:`random_mask`), a centred box
(:func:`box_mask`) or a file (:func:`read_mask`), as cloud masks or failed sensors give them.

Example:
    >>> op = Mask(box_mask((8, 8), 0.25))
    >>> op(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 1, 48])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from physgen.inverse.operators import ObservationOperator

__all__ = ["MASK_VARIABLE", "Mask", "box_mask", "random_mask", "read_mask"]

MASK_VARIABLE = "mask"
"""Name of the variable of a mask file: 1 where a value is missing, 0 where it is observed."""


class Mask(ObservationOperator):
    """Observe every channel at the grid points where ``observed`` is true.

    ``A(x)`` is ``(B, C, m)`` for ``m`` observed points; ``lift`` puts the values back on the
    grid (zero where missing) followed by one indicator channel (1 where observed), so a
    conditional model sees both the observed values and the mask.

    Args:
        observed: boolean mask of the grid, true where a value is observed.
        noise_std: observation-noise σ.
    """

    def __init__(self, observed: Tensor | np.ndarray, *, noise_std: float = 0.0) -> None:
        mask = torch.as_tensor(np.asarray(observed))
        if mask.dtype != torch.bool:
            raise ValueError(f"Mask: observed must be a boolean grid mask, got dtype {mask.dtype}")
        if mask.ndim < 1 or not bool(mask.any()) or bool(mask.all()):
            raise ValueError(
                f"Mask: need some observed and some missing points, got {int(mask.sum())} "
                f"observed of {mask.numel()}"
            )
        if noise_std < 0:
            raise ValueError(f"noise_std must be ≥ 0, got {noise_std}")
        self.observed = mask
        self.noise_std = float(noise_std)

    @property
    def missing(self) -> Tensor:
        """Boolean grid mask of the points to infer (the complement of ``observed``)."""
        return ~self.observed

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """The grid the mask lives on."""
        return tuple(self.observed.shape)

    def _check(self, x: Tensor) -> None:
        d = self.observed.ndim
        if x.ndim < d + 1 or tuple(x.shape[-d:]) != self.grid_shape:
            raise ValueError(
                f"Mask: expected fields (B, C, {', '.join(map(str, self.grid_shape))}), "
                f"got {tuple(x.shape)}"
            )

    def __call__(self, x: Tensor) -> Tensor:
        self._check(x)
        return x[..., self.observed.to(x.device)]

    def complete(self, y: Tensor, x: Tensor) -> Tensor:
        """``x`` ``(..., C, *grid)`` with its observed points set to ``y`` ``(..., C, m)``."""
        self._check(x)
        out = x.clone()
        out[..., self.observed.to(x.device)] = y.to(x)
        return out

    def lift(self, y: Tensor, sample_shape: Sequence[int]) -> Tensor:
        values = self.complete(y, y.new_zeros(y.shape[0], *sample_shape))
        indicator = self.observed.to(y).expand(y.shape[0], 1, *self.grid_shape)
        return torch.cat([values, indicator], dim=1)  # (B, C + 1, *grid)

    def __repr__(self) -> str:
        missing = int(self.missing.sum())
        return (
            f"Mask(grid={self.grid_shape}, missing={missing}/{self.observed.numel()}, "
            f"noise_std={self.noise_std})"
        )


def _check_fraction(fraction: float, name: str) -> None:
    if not 0 < fraction < 1:
        raise ValueError(f"{name}: the missing fraction must lie in (0, 1), got {fraction}")


def random_mask(shape: Sequence[int], missing: float, *, seed: int = 0) -> Tensor:
    """Observed-point mask with ``round(missing · N)`` points missing, drawn with ``seed``."""
    _check_fraction(missing, "random_mask")
    total = math.prod(shape)
    n = round(missing * total)
    if not 0 < n < total:
        raise ValueError(
            f"random_mask: {missing} of {total} points leaves none missing or observed"
        )
    drop = np.random.default_rng(seed).choice(total, size=n, replace=False)
    observed = np.ones(total, dtype=bool)
    observed[drop] = False
    return torch.as_tensor(observed.reshape(tuple(shape)))


def box_mask(shape: Sequence[int], missing: float = 0.25) -> Tensor:
    """Observed-point mask missing a centred box of about ``missing`` of the grid.

    The box has ``round(n_i · missing^{1/d})`` points along axis ``i`` (16 × 16 of 32 × 32
    for a quarter).
    """
    _check_fraction(missing, "box_mask")
    shape = tuple(int(n) for n in shape)
    sides = [max(1, min(n - 1, round(n * missing ** (1 / len(shape))))) for n in shape]
    observed = torch.ones(shape, dtype=torch.bool)
    box = tuple(slice((n - s) // 2, (n - s) // 2 + s) for n, s in zip(shape, sides, strict=True))
    observed[box] = False
    return observed


def read_mask(path: str | Path, shape: Sequence[int]) -> Tensor:
    """Observed-point mask from a netCDF file whose variable ``mask`` is 1 where missing.

    The variable must have the grid's shape (its dims in the file's order); any nonzero value
    marks a missing point.
    """
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such mask file")
    with xr.open_dataset(path) as ds:
        if MASK_VARIABLE not in ds.data_vars:
            raise KeyError(f"{path}: no variable {MASK_VARIABLE!r} (1 = missing, 0 = observed)")
        values = np.asarray(ds[MASK_VARIABLE].values)
    if values.shape != tuple(shape):
        raise ValueError(f"{path}: mask has shape {values.shape}, the grid is {tuple(shape)}")
    if not np.isfinite(values).all():
        raise ValueError(f"{path}: mask has NaN/Inf values; expected 1 = missing, 0 = observed")
    return torch.as_tensor(values == 0)

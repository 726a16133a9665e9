r"""Residual inpainting around a strong mean: members = fill + drawn residual, observations kept.

A deterministic fill :math:`f(y)` (harmonic or kriging) carries the mean; a conditional
generative model draws only its error :math:`r = x - f(y)` in the missing region, and the
members are

.. math:: x_k = A^\top y + P_m\big(f(y) + \bar r + s\,(r_k - \bar r)\big),

with :math:`P_m` the restriction to the missing points, :math:`\bar r` the mean of the drawn
residuals and :math:`s` a spread inflation that leaves the ensemble mean alone: a scalar, or
a field :math:`s(x)` that shapes the spread point by point (e.g. in proportion to a kriging
posterior standard deviation). This is the regression-plus-generative-residual split of
CorrDiff (Mardani et al. 2023, arXiv:2309.15214). :func:`spread_inflation` picks a scalar
:math:`s` on held-out cases: spread scales by :math:`s` and the mean does not move, so the
corrected spread–skill ratio becomes :math:`s\,\mathrm{SSR}` and :math:`s = 1/\mathrm{SSR}`
calibrates it on those cases.
"""

from __future__ import annotations

import torch
from torch import Tensor

from physgen.inverse.mask import Mask
from physgen.metrics.ensemble import spread_skill_ratio

__all__ = ["complete_residual", "spread_inflation"]


def complete_residual(
    op: Mask, y: Tensor, fill: Tensor, residual: Tensor, *, inflation: float | Tensor = 1.0
) -> Tensor:
    """Members ``(B, M, C, *grid)`` from a fill ``(B, C, *grid)``, drawn residuals
    ``(B, M, C, *grid)`` and observations ``y`` ``(B, C, m)`` (see the module docstring).

    The residuals only act on the missing points; the observed points are set to ``y``.
    ``inflation`` is a scalar > 0 or a field of the fill's shape, finite and ≥ 0 (its values
    at observed points do not matter).
    """
    if residual.ndim != fill.ndim + 1 or residual.shape[2:] != fill.shape[1:]:
        raise ValueError(
            f"complete_residual: residual {tuple(residual.shape)} must be fill "
            f"{tuple(fill.shape)} with a member axis at 1"
        )
    if isinstance(inflation, Tensor):
        if inflation.shape != fill.shape or not bool(
            (torch.isfinite(inflation) & (inflation >= 0)).all()
        ):
            raise ValueError(
                f"complete_residual: an inflation field must be finite, >= 0 and of the fill's "
                f"shape {tuple(fill.shape)}, got {tuple(inflation.shape)}"
            )
        scale: float | Tensor = inflation[:, None].to(residual)
    elif not inflation > 0:
        raise ValueError(f"complete_residual: inflation must be > 0, got {inflation}")
    else:
        scale = inflation
    mean = residual.mean(1, keepdim=True)
    members = fill[:, None] + mean + scale * (residual - mean)
    return op.complete(y[:, None].to(members), members)


def spread_inflation(members: Tensor, truth: Tensor, missing: Tensor) -> float:
    """The factor ``s`` that makes the corrected spread–skill ratio of ``members``
    ``(B, M, C, *grid)`` against ``truth`` ``(B, C, *grid)`` on the ``missing`` points 1:
    ``1 / SSR``."""
    xm = members.double()[..., missing]
    ym = truth.double()[..., missing]
    ratio = float(spread_skill_ratio(xm, ym, member_dim=1))
    if not ratio > 0:
        raise ValueError("spread_inflation: the members have no spread on the missing points")
    return 1.0 / ratio

"""Scores of an inpainting ensemble on the missing region only (the observed part is given).

CRPS and the spread–skill ratio (:mod:`physgen.metrics.ensemble`) and the relative L2 error
of the ensemble mean, all over the missing points; the PDE residual is taken on the
completed fields, since it couples missing and observed points.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from physgen.metrics._common import ArrayLike, as_float64
from physgen.metrics.ensemble import crps_fair, spread_skill_ratio

__all__ = ["missing_region_scores"]


def missing_region_scores(
    members: ArrayLike,
    truth: ArrayLike,
    missing: ArrayLike,
    *,
    residual_rms: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, float]:
    r"""Ensemble scores over the missing points of an inpainting task.

    Args:
        members: ensembles ``(B, M, C, *grid)`` of completed fields (M ≥ 2).
        truth: true fields ``(B, C, *grid)``.
        missing: boolean grid mask ``(*grid)``, true on the points scored.
        residual_rms: optional per-sample residual RMS of fields ``(N, C, *grid)`` → ``(N,)``.

    Returns:
        ``crps`` (fair CRPS averaged over missing points), ``spread_skill`` (corrected ratio),
        ``rel_l2`` (mean over cases of :math:`\|\bar X - y\|/\|y\|` on the missing points),
        and with ``residual_rms`` the mean residual RMS of the members (``residual``).
    """
    x = as_float64(members, name="members")
    y = as_float64(truth, name="truth").to(x.device)
    mask = torch.as_tensor(missing, device=x.device)
    d = mask.ndim
    if x.ndim != y.ndim + 1 or x.shape[:1] + x.shape[2:] != y.shape:
        raise ValueError(
            f"members {tuple(x.shape)} must be truth {tuple(y.shape)} with a member axis at 1"
        )
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(y.shape[-d:]) or not mask.any():
        raise ValueError(
            f"missing must be a non-empty boolean mask of the grid {tuple(y.shape[-d:])}, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    xm, ym = x[..., mask], y[..., mask]  # (B, M, C, n), (B, C, n)
    err = (xm.mean(1) - ym).flatten(1).norm(dim=1) / ym.flatten(1).norm(dim=1).clamp_min(1e-300)
    scores = {
        "crps": float(crps_fair(xm, ym, member_dim=1).mean()),
        "spread_skill": float(spread_skill_ratio(xm, ym, member_dim=1)),
        "rel_l2": float(err.mean()),
    }
    if residual_rms is not None:
        scores["residual"] = float(residual_rms(x.flatten(0, 1)).mean())
    return scores

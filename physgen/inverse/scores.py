"""Scores of an inpainting ensemble on the missing region only (the observed part is given).

CRPS and the spread–skill ratio (:mod:`physgen.metrics.ensemble`) and the relative L2 error
of the ensemble mean, all over the missing points; the PDE residual is taken on the
completed fields, since it couples missing and observed points. The spread–skill ratio of a
few cases is noisy: :func:`spread_skill_interval` gives its bootstrap interval over cases.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from physgen.metrics._common import ArrayLike, as_float64
from physgen.metrics.ensemble import crps_fair, spread_skill_bootstrap, spread_skill_ratio

__all__ = ["missing_region_scores", "spread_skill_interval"]


def _missing(members: ArrayLike, truth: ArrayLike, missing: ArrayLike) -> tuple[Tensor, Tensor]:
    """Members ``(B, M, C, n)`` and truth ``(B, C, n)`` on the ``n`` missing points."""
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
    return x[..., mask], y[..., mask]


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
    xm, ym = _missing(x, truth, missing)  # (B, M, C, n), (B, C, n)
    err = (xm.mean(1) - ym).flatten(1).norm(dim=1) / ym.flatten(1).norm(dim=1).clamp_min(1e-300)
    scores = {
        "crps": float(crps_fair(xm, ym, member_dim=1).mean()),
        "spread_skill": float(spread_skill_ratio(xm, ym, member_dim=1)),
        "rel_l2": float(err.mean()),
    }
    if residual_rms is not None:
        scores["residual"] = float(residual_rms(x.flatten(0, 1)).mean())
    return scores


def spread_skill_interval(
    members: ArrayLike,
    truth: ArrayLike,
    missing: ArrayLike,
    *,
    level: float = 0.9,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    r"""Percentile bootstrap interval over cases of the corrected spread–skill ratio.

    The ratio pools over cases b and missing points, :math:`\sqrt{\sum_b S_b / \sum_b E_b}
    \cdot\sqrt{(M+1)/M}` with :math:`S_b` the summed member variance (ddof 1) and :math:`E_b`
    the summed squared error of the ensemble mean of case b; cases are the independent units
    (neighbouring points are not), so they are what is resampled with replacement, ``n_boot``
    times (Efron & Tibshirani 1993, ch. 13). Returns the ``(1 ∓ level)/2`` quantiles.
    """
    xm, ym = _missing(members, truth, missing)
    if xm.shape[1] < 2:
        raise ValueError(f"spread_skill_interval: needs at least 2 members, got {xm.shape[1]}")
    spread = xm.var(1, correction=1).flatten(1).sum(1)  # S_b
    skill = (xm.mean(1) - ym).square().flatten(1).sum(1)  # E_b
    try:  # the resampling is physgen.metrics.spread_skill_bootstrap's
        lo, hi = spread_skill_bootstrap(
            spread, skill, xm.shape[1], n_boot=n_boot, level=level, seed=seed
        )
    except ValueError as err:
        raise ValueError(f"spread_skill_interval: {err}") from None
    return float(lo), float(hi)

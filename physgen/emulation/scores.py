"""Scores of trajectory ensembles per lead time: fair CRPS, spread–skill, ensemble-mean RMSE."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from physgen.metrics._common import ArrayLike, as_float64
from physgen.metrics.ensemble import crps_fair, spread_skill_ratio

__all__ = ["correlation_horizon", "lead_time_scores", "score_forecast"]


def lead_time_scores(members: ArrayLike, truth: ArrayLike) -> dict[str, list[float]]:
    r"""Ensemble scores at every lead time of a rollout against the true trajectories.

    ``members`` ``(B, M, T, ...)`` are M forecasts of each of B cases over T lead times,
    ``truth`` ``(B, T, ...)``. At lead time τ, over all cases and points:

    * ``crps``: mean fair CRPS (:func:`physgen.metrics.crps_fair`; Ferro 2014); with one
      member, the CRPS of a point forecast, the mean absolute error;
    * ``spread``: :math:`\sqrt{\overline{s^2}}`, s² the unbiased member variance;
    * ``rmse``: RMSE of the ensemble mean, :math:`\sqrt{\overline{(\bar X - y)^2}}`;
    * ``spread_skill``: :func:`physgen.metrics.spread_skill_ratio` with the finite-ensemble
      correction √((M+1)/M) (1 for a reliable ensemble; 0 with one member);
    * ``correlation``: mean over cases of the Pearson correlation, over the points, between
      the ensemble mean and the truth (the anomaly correlation about each field's own mean).

    For members and truth drawn from one Gaussian N(μ, s²) per point, E crps = s/√π,
    E spread² = s², E rmse² = s²(1 + 1/M) (tested on an AR(1) process).

    Returns:
        One list of T floats per score.
    """
    x = as_float64(members, name="members")
    y = as_float64(truth, name="truth").to(x.device)
    if x.ndim < 3 or x.shape[:1] + x.shape[2:] != y.shape:
        raise ValueError(
            f"members must be (B, M, T, ...) and truth (B, T, ...) with the same B, T and "
            f"points; got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    m = x.shape[1]
    out: dict[str, list[float]] = {
        k: [] for k in ("crps", "spread", "rmse", "spread_skill", "correlation")
    }
    for tau in range(x.shape[2]):
        xt, yt = x[:, :, tau], y[:, tau]
        mean = xt.mean(1)
        if m > 1:
            crps = float(crps_fair(xt, yt, member_dim=1).mean())
            spread = float(xt.var(1, correction=1).mean().sqrt())
            ratio = float(spread_skill_ratio(xt, yt, member_dim=1))
        else:
            crps, spread, ratio = float((mean - yt).abs().mean()), 0.0, 0.0
        out["crps"].append(crps)
        out["spread"].append(spread)
        out["rmse"].append(float((mean - yt).square().mean().sqrt()))
        out["spread_skill"].append(ratio)
        out["correlation"].append(float(_correlation(mean, yt).mean()))
    return out


def _correlation(a: Tensor, b: Tensor) -> Tensor:
    """Per-case Pearson correlation over every axis but the first."""
    a = a.flatten(1) - a.flatten(1).mean(1, keepdim=True)
    b = b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    denominator = (a.norm(dim=1) * b.norm(dim=1)).clamp_min(torch.finfo(a.dtype).tiny)
    return (a * b).sum(1) / denominator


def correlation_horizon(correlation: list[float], times: list[float], level: float = 0.5) -> float:
    """The first lead time whose correlation is below ``level`` (``inf`` if none is)."""
    if len(correlation) != len(times):
        raise ValueError(f"{len(correlation)} correlations but {len(times)} lead times")
    return next((t for c, t in zip(correlation, times, strict=True) if c < level), math.inf)


def score_forecast(
    forecast: xr.Dataset, reference: xr.Dataset, fields: list[str] | None = None
) -> dict[str, Any]:
    """:func:`lead_time_scores` of a rollout file against the reference trajectories.

    ``forecast`` fields have dims ``(sample, member, time, *grid)`` (``physgen rollout``);
    each is compared with the ``reference`` field of the same ``sample`` index at the same
    ``time`` coordinate (matched to 1e-6 of the frame spacing), so a forecast of any part of
    the reference trajectories scores against the right frames.

    Returns:
        ``{"time": [forecast times], "fields": {field: {score: [one value per time]}}}``.

    Raises:
        ValueError: no shared sample, a forecast time the reference lacks, or wrong dims.
    """
    names = fields or [str(f) for f in forecast.attrs.get("fields", list(forecast.data_vars))]
    common = np.intersect1d(forecast["sample"].values, reference["sample"].values)
    if common.size == 0:
        raise ValueError("the forecast and the reference share no 'sample' index")
    times = forecast["time"].values.astype(np.float64)
    ref_times = reference["time"].values.astype(np.float64)
    spacing = float(np.diff(ref_times).min()) if len(ref_times) > 1 else 1.0
    position = np.abs(ref_times[None, :] - times[:, None]).argmin(1)
    if np.abs(ref_times[position] - times).max() > 1e-6 * spacing:
        raise ValueError(
            f"forecast times {times.tolist()} are not all reference times {ref_times.tolist()}"
        )
    scores: dict[str, dict[str, list[float]]] = {}
    for name in names:
        gen = forecast[name]
        if gen.dims[:3] != ("sample", "member", "time"):
            raise ValueError(
                f"forecast field {name!r} has dims {gen.dims}, expected "
                "('sample', 'member', 'time', *grid)"
            )
        truth = reference[name].sel(sample=common).isel(time=position)
        members = gen.sel(sample=common).values
        scores[name] = lead_time_scores(members, truth.transpose("sample", "time", ...).values)
    return {"time": times.tolist(), "fields": scores}

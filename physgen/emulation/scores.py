"""Scores of trajectory ensembles per lead time: fair CRPS, spread–skill, ensemble-mean RMSE."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from physgen.metrics._common import ArrayLike, as_float64
from physgen.metrics.ensemble import crps_fair, spread_skill_bootstrap, spread_skill_ratio
from physgen.metrics.spectra import energy_spectrum, log_spectral_distance

__all__ = [
    "correlation_horizon",
    "lead_time_residuals",
    "lead_time_scores",
    "lead_time_spectrum_error",
    "lead_time_ssr_interval",
    "score_forecast",
    "stability_horizon",
]


def _ensemble_and_truth(members: ArrayLike, truth: ArrayLike) -> tuple[Tensor, Tensor]:
    """``members (B, M, T, ...)`` and ``truth (B, T, ...)`` as float64, shapes checked."""
    x = as_float64(members, name="members")
    y = as_float64(truth, name="truth").to(x.device)
    if x.ndim < 3 or x.shape[:1] + x.shape[2:] != y.shape:
        raise ValueError(
            f"members must be (B, M, T, ...) and truth (B, T, ...) with the same B, T and "
            f"points; got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    return x, y


def lead_time_ssr_interval(
    members: ArrayLike,
    truth: ArrayLike,
    *,
    n_boot: int = 1000,
    level: float = 0.9,
    seed: int = 0,
) -> dict[str, list[float]]:
    r"""A case-bootstrap interval of the spread–skill ratio at every lead time.

    For ``members (B, M, T, ...)`` and ``truth (B, T, ...)``, with :math:`V_{b\tau}` the
    point-mean unbiased member variance of case b at lead τ and :math:`E_{b\tau}` its
    point-mean squared ensemble-mean error, the ratio of :func:`lead_time_scores` is
    :math:`R_\tau = \sqrt{(M+1)/M}\,\sqrt{\sum_b V_{b\tau} / \sum_b E_{b\tau}}`. Each of
    ``n_boot`` resamples draws B cases with replacement (counts :math:`w_b`, the same cases
    at every lead time, since a case's errors are correlated over the lead times) and gives
    :math:`\sqrt{(M+1)/M}\,\sqrt{\sum_b w_b V_{b\tau} / \sum_b w_b E_{b\tau}}`; the
    interval is the percentile interval of these (Efron & Tibshirani 1993, ch. 13) at
    ``level``. It measures how much the pooled ratio of B cases varies between sets of cases
    like these, e.g. whether a test ratio outside [0.8, 1.2] is beyond sampling noise.

    Returns:
        ``{"low": [...], "high": [...]}``, T floats each.
    """
    x, y = _ensemble_and_truth(members, truth)
    if x.shape[1] < 2:
        raise ValueError(f"members must have at least 2 members, got {x.shape[1]}")
    variance = x.var(1, correction=1).flatten(2).mean(2)  # (B, T)
    error = (x.mean(1) - y).square().flatten(2).mean(2)  # (B, T)
    low, high = spread_skill_bootstrap(
        variance, error, x.shape[1], n_boot=n_boot, level=level, seed=seed
    )
    return {"low": low.tolist(), "high": high.tolist()}


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
    x, y = _ensemble_and_truth(members, truth)
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


def lead_time_spectrum_error(
    members: ArrayLike,
    truth: ArrayLike,
    *,
    spatial_dims: int,
    periodic: bool = True,
    splits: int = 5,
    seed: int = 0,
) -> dict[str, list[float]]:
    r"""Energy-spectrum error of a rollout at every lead time, beside the data's own floor.

    ``members`` ``(B, M, T, *grid)``, ``truth`` ``(B, T, *grid)``, one field. At lead time τ
    the cases are split into two disjoint random halves A and B' of ⌊B/2⌋ cases; the value
    is the log-spectral distance (:func:`physgen.metrics.log_spectral_distance`, Harris et
    al. 2022) between the mean energy spectrum of A's members and that of B''s true frames,
    the floor the same distance between A's and B''s true frames: what two independent sets
    of true states at that time differ by. Both are means over ``splits`` splits (seeds
    ``seed``, ``seed + 1``, ...; ``floor_std`` is the floor's spread across them), so value
    and floor compare the same number of cases (A's M members per case only lower the value's
    noise). Spectra are Hann-windowed unless ``periodic``, as in ``physgen evaluate``.

    Returns:
        ``{"value", "floor", "floor_std"}``, one list of T floats each.

    Raises:
        ValueError: fewer than 4 cases (no two halves of 2) or mismatched shapes.
    """
    x, y = _ensemble_and_truth(members, truth)
    b = x.shape[0]
    if b < 4:
        raise ValueError(f"the spectrum floor needs at least 4 cases, got {b}")
    window = None if periodic else "hann"
    _, px = energy_spectrum(x, spatial_dims=spatial_dims, window=window)  # (B, M, T, K)
    _, py = energy_spectrum(y, spatial_dims=spatial_dims, window=window)  # (B, T, K)
    half = b // 2
    values, floors = [], []
    for k in range(splits):
        perm = torch.randperm(b, generator=torch.Generator().manual_seed(seed + k))
        a, other = perm[:half].to(x.device), perm[half : 2 * half].to(x.device)
        ref = py[other].mean(0)  # (T, K)
        values.append(log_spectral_distance(px[a].mean((0, 1)), ref))
        floors.append(log_spectral_distance(py[a].mean(0), ref))
    value, floor = torch.stack(values), torch.stack(floors)  # (splits, T)
    spread = floor.std(0) if splits > 1 else torch.zeros_like(floor[0])
    return {"value": value.mean(0).tolist(), "floor": floor.mean(0).tolist(),
            "floor_std": spread.tolist()}  # fmt: skip


def stability_horizon(
    error: list[float], floor: list[float], times: list[float], factor: float = 10.0
) -> float:
    """The first lead time whose error exceeds ``factor`` × its floor (``inf`` if none does)."""
    if not len(error) == len(floor) == len(times):
        raise ValueError(f"{len(error)} errors, {len(floor)} floors, {len(times)} lead times")
    crossed = (t for e, f, t in zip(error, floor, times, strict=True) if e > factor * f)
    return next(crossed, math.inf)


def _relative_defects(problem: Any, before: Tensor, after: Tensor, batch: int = 256) -> Tensor:
    """Per-field RMS(after − S before) / RMS(after − before), ``(N,)``: the relative one-step
    defect of :meth:`~physgen.problem.TimeDependentProblem.step_residual` (Δt cancels)."""
    stepped = torch.cat([problem.advance(part) for part in before.split(batch)])
    defect = (after - stepped).flatten(1).square().mean(1).sqrt()
    change = (after - before).flatten(1).square().mean(1).sqrt()
    return defect / change.clamp_min(torch.finfo(change.dtype).tiny)


def lead_time_residuals(problem: Any, members: ArrayLike, truth: ArrayLike) -> dict[str, Any]:
    r"""The PDE residual of every forecast step, beside the residual of the true step.

    ``members`` ``(B, M, T, C, *grid)`` continue ``truth`` ``(B, T + 1, C, *grid)`` (the true
    frames at the T lead times and, first, the frame they start from; channels in the
    order of ``problem.field_names``). At lead τ the value is the mean over cases and members
    of the relative one-step defect

    .. math:: \frac{\| u_\tau - S_{\Delta t} u_{\tau-1} \|}{\| u_\tau - u_{\tau-1} \|}

    (:meth:`~physgen.problem.TimeDependentProblem.step_residual` over its ``residual_scale``,
    with ``problem.advance`` as :math:`S_{\Delta t}`), u the member's frames (at τ = 1 the
    true initial frame before the first draw); the floor is the same mean over the true
    frames. The frame spacing must be the problem's ``dt_save``.

    Returns:
        ``{"value", "floor", "ratio"}`` (lists of T) and ``"relative": True``.
    """
    x = as_float64(members, name="members")
    y = as_float64(truth, name="truth").to(x.device)
    b, m, t = x.shape[:3]
    if y.shape[:2] != (b, t + 1) or y.shape[2:] != x.shape[3:]:
        raise ValueError(
            f"truth must be (B, T + 1, C, *grid) = {(b, t + 1, *x.shape[3:])} for members "
            f"{tuple(x.shape)}, got {tuple(y.shape)}"
        )
    start = y[:, :1, None].expand(b, 1, m, *y.shape[2:]).transpose(1, 2)  # (B, M, 1, C, ...)
    path = torch.cat([start, x], dim=2)  # (B, M, T + 1, C, *grid)
    out: dict[str, Any] = {"value": [], "floor": [], "ratio": [], "relative": True}
    with torch.no_grad():
        for tau in range(t):
            value = float(
                _relative_defects(
                    problem, path[:, :, tau].flatten(0, 1), path[:, :, tau + 1].flatten(0, 1)
                ).mean()
            )
            floor = float(_relative_defects(problem, y[:, tau], y[:, tau + 1]).mean())
            out["value"].append(value)
            out["floor"].append(floor)
            out["ratio"].append(value / floor if floor > 0 else None)
    return out


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

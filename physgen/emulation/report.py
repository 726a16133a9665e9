"""Lead-time report of a rollout file: every score per lead time, horizons, a CSV and a table."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from physgen.data.atomic import atomic_output
from physgen.emulation.scores import (
    correlation_horizon,
    lead_time_residuals,
    lead_time_spectrum_error,
    score_forecast,
    stability_horizon,
)

__all__ = ["CSV_COLUMNS", "forecast_report", "format_lead_table", "write_lead_csv"]

# One row per field and lead time (the residual is the state's, repeated on each field's rows).
CSV_COLUMNS = (
    "field", "time", "lead_time", "crps", "spread_skill", "rmse", "spread", "correlation",
    "spectrum_lsd", "spectrum_lsd_floor", "residual", "residual_floor",
)  # fmt: skip

_NON_SPATIAL = ("sample", "member", "time")


def _positions(times: np.ndarray, ref_times: np.ndarray) -> np.ndarray | None:
    """Index of each of ``times`` among ``ref_times`` (to 1e-6 of the spacing), or None."""
    spacing = float(np.diff(ref_times).min()) if len(ref_times) > 1 else 1.0
    position = np.abs(ref_times[None, :] - times[:, None]).argmin(1)
    if np.abs(ref_times[position] - times).max() > 1e-6 * spacing:
        return None
    return position


def _lead_times(times: np.ndarray, ref_times: np.ndarray) -> tuple[np.ndarray, float]:
    """Lead times t − t₀ and t₀, the time the forecast starts from: one forecast spacing
    before its first frame (one reference spacing when it has a single frame)."""
    if len(times) > 1:
        step = float(times[1] - times[0])
    else:
        earlier = ref_times[ref_times < times[0] - 1e-9 * max(1.0, abs(float(times[0])))]
        if earlier.size == 0:
            raise ValueError(
                f"the forecast's one frame (t = {times[0]}) has no earlier reference frame"
            )
        step = float(times[0] - earlier.max())
    t0 = float(times[0]) - step
    # Rounded to 12 digits so that e.g. 0.03 − 0.02 reads 0.01, not 0.009999999999999998.
    return np.round(times - t0, 12), t0


def forecast_report(
    forecast: xr.Dataset,
    reference: xr.Dataset,
    fields: list[str],
    *,
    problem: Any = None,
    max_cases: int | None = None,
    splits: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Every lead-time score of a rollout file against the true trajectories.

    ``forecast`` fields are ``(sample, member, time, *grid)`` (``physgen rollout``), the
    ``reference`` ones ``(sample, time, *grid)``; frames are matched by sample index and time
    (:func:`~physgen.emulation.score_forecast`). Per field and lead time: fair CRPS, spread,
    corrected spread–skill ratio, RMSE of the ensemble mean and ensemble-mean correlation
    (:func:`~physgen.emulation.lead_time_scores`), the energy-spectrum error with its floor
    (:func:`~physgen.emulation.lead_time_spectrum_error`, with ≥ 4 cases); then the lead time
    at which the correlation first drops below 0.5 and the stability horizon, the first lead
    time at which the spectrum error exceeds 10 × its floor (``inf``: never). With a
    ``problem`` (a :class:`~physgen.problem.TimeDependentProblem` with a solver), the
    residual of every forecast step beside that of the true step
    (:func:`~physgen.emulation.lead_time_residuals`), or a note saying why it was skipped.

    The lead time of a frame at t is t − t₀, t₀ one frame spacing before the first forecast
    frame (the newest frame of the initial history, for a ``physgen rollout`` file).
    """
    common = np.intersect1d(forecast["sample"].values, reference["sample"].values)
    if max_cases is not None:
        common = common[:max_cases]
    forecast, reference = forecast.sel(sample=common), reference.sel(sample=common)
    scores = score_forecast(forecast, reference, fields)
    times = np.asarray(scores["time"], dtype=np.float64)
    ref_times = reference["time"].values.astype(np.float64)
    lead, t0 = _lead_times(times, ref_times)
    position = _positions(times, ref_times)
    result: dict[str, Any] = {
        "time": times.tolist(),
        "lead_time": lead.tolist(),
        "start_time": t0,
        "fields": {},
    }
    for name in fields:
        entry: dict[str, Any] = {
            "units": str(reference[name].attrs.get("units", "")),
            "n": int(common.size),
            "members": int(forecast.sizes["member"]),
            **scores["fields"][name],
        }
        entry["correlation_below_0.5_at"] = correlation_horizon(entry["correlation"], lead.tolist())
        spatial = [d for d in reference[name].dims if d not in _NON_SPATIAL]
        if common.size >= 4:
            periodic = all(
                str(reference.attrs.get(f"bc_{d}", "")).lower() == "periodic" for d in spatial
            )
            members = forecast[name].transpose("sample", "member", "time", *spatial).values
            truth = reference[name].isel(time=position).transpose("sample", "time", *spatial)
            spectrum = lead_time_spectrum_error(
                members, truth.values, spatial_dims=len(spatial), periodic=periodic,
                splits=splits, seed=seed,
            )  # fmt: skip
            entry["spectrum_lsd"] = spectrum
            entry["stability_horizon"] = stability_horizon(
                spectrum["value"], spectrum["floor"], lead.tolist()
            )
        else:
            entry["spectrum_lsd"] = {"skipped": f"{common.size} cases; the floor needs ≥ 4"}
            entry["stability_horizon"] = None
        result["fields"][name] = entry
    if problem is not None:
        result["residual"] = _residuals(problem, forecast, reference, times, t0)
    return result


def _residuals(
    problem: Any, forecast: xr.Dataset, reference: xr.Dataset, times: np.ndarray, t0: float
) -> dict[str, Any]:
    """:func:`lead_time_residuals` of ``problem``'s fields, or a note saying why not."""
    head = {"problem": problem.name}
    if not getattr(problem, "has_solver", False):
        return {**head, "skipped": "per-lead-time residuals need a time-dependent problem with "
                "a solver (the one-step defect)"}  # fmt: skip
    missing = [c for c in problem.field_names if c not in forecast.data_vars]
    if missing:
        return {**head, "skipped": f"the forecast lacks fields {missing}"}
    dt = float(problem.params.dt_save)
    steps = np.diff(np.concatenate([[t0], times]))
    if not np.allclose(steps, dt, rtol=1e-6, atol=0.0):
        return {**head, "skipped": f"the forecast's frame spacing {sorted(set(steps.round(9)))} "
                f"is not the problem's dt_save = {dt}"}  # fmt: skip
    ref_times = reference["time"].values.astype(np.float64)
    position = _positions(np.concatenate([[t0], times]), ref_times)
    if position is None:
        return {**head, "skipped": f"the reference has no frame at the start time t = {t0}"}
    channels = list(problem.field_names)
    spatial = [d for d in reference[channels[0]].dims if d not in _NON_SPATIAL]
    members = np.stack(
        [forecast[c].transpose("sample", "member", "time", *spatial).values for c in channels],
        axis=3,
    )  # (B, M, T, C, *grid)
    truth = np.stack(
        [reference[c].isel(time=position).transpose("sample", "time", *spatial).values
         for c in channels],
        axis=2,
    )  # (B, T + 1, C, *grid)  # fmt: skip
    return {**head, **lead_time_residuals(problem, members, truth)}


def _rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per field and lead time, keyed by :data:`CSV_COLUMNS`."""
    residual = result.get("residual", {})
    has_residual = "value" in residual
    rows = []
    for name, entry in result["fields"].items():
        spectrum = entry["spectrum_lsd"]
        for i, (t, lead) in enumerate(zip(result["time"], result["lead_time"], strict=True)):
            rows.append({
                "field": name, "time": t, "lead_time": lead, "crps": entry["crps"][i],
                "spread_skill": entry["spread_skill"][i], "rmse": entry["rmse"][i],
                "spread": entry["spread"][i], "correlation": entry["correlation"][i],
                "spectrum_lsd": spectrum["value"][i] if "value" in spectrum else None,
                "spectrum_lsd_floor": spectrum["floor"][i] if "value" in spectrum else None,
                "residual": residual["value"][i] if has_residual else None,
                "residual_floor": residual["floor"][i] if has_residual else None,
            })  # fmt: skip
    return rows


def write_lead_csv(result: dict[str, Any], path: str | Path) -> Path:
    """The per-lead-time scores as CSV (:data:`CSV_COLUMNS`; empty where not computed)."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in _rows(result):
            writer.writerow({k: "" if v is None else repr(v) if isinstance(v, float) else v
                             for k, v in row.items()})  # fmt: skip
    return Path(path)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isinf(v):
            return "never"
        return f"{v:.3e}" if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4) else f"{v:.4f}"
    return str(v)


def format_lead_table(result: dict[str, Any]) -> str:
    """A plain-text table, one row per field and lead time, then each field's horizons."""
    shown = ("field", "lead_time", "crps", "spread_skill", "rmse", "correlation",
             "spectrum_lsd", "spectrum_lsd_floor", "residual", "residual_floor")  # fmt: skip
    rows = [shown] + [
        tuple(f"{row[k]:.4g}" if k == "lead_time" else _fmt(row[k]) for k in shown)
        for row in _rows(result)
    ]
    keep = [i for i in range(len(shown)) if any(row[i] for row in rows[1:])]
    rows = [tuple(row[i] for i in keep) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))

    def lead(v: float | None) -> str:
        return "n/a" if v is None else "never" if math.isinf(v) else f"{v:.4g}"

    for name, entry in result["fields"].items():
        lines.append(
            f"{name}: ensemble-mean correlation < 0.5 at lead time "
            f"{lead(entry['correlation_below_0.5_at'])}; stability horizon (spectrum error > "
            f"10 × floor) {lead(entry['stability_horizon'])}"
        )
    residual = result.get("residual", {})
    if "skipped" in residual:
        lines.append(f"PDE residual skipped ({residual['problem']}): {residual['skipped']}")
    return "\n".join(lines)

"""Headless figures for fields: samples, spectra, marginals, ranks, losses, latent traversals.

Each ``*_figure`` function builds a :class:`matplotlib.figure.Figure` (no pyplot, no display)
and each ``plot_*`` function writes that figure to a file. Every axis is labelled, with units
where the data carry them; a band is explained in its legend; a diverging colour map is kept
for signed fields (see :func:`colour_scale`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from physgen.data.atomic import atomic_output

__all__ = [
    "axis_label",
    "colour_scale",
    "latent_traversal",
    "lead_times_figure",
    "loss_curves_figure",
    "marginals_figure",
    "mean_std_figure",
    "plot_lead_times",
    "plot_loss_curves",
    "plot_marginals",
    "plot_rank_histogram",
    "plot_sample_grid",
    "plot_spectra",
    "rank_histogram_figure",
    "read_training_log",
    "sample_grid_figure",
    "save_figure",
    "spectra_figure",
    "traversal_fields",
]

# Dimensions that index samples rather than space; everything else in a field is a grid axis.
_NON_SPATIAL = ("sample", "member", "time")
# Robust colour limits: these percentiles of the pooled values, so a few outliers do not
# wash out every panel.
_PERCENTILES = (1.0, 99.0)
# A field is signed when its smaller tail (beyond zero) reaches this fraction of its larger.
_SIGNED_FRACTION = 0.1


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Write ``fig`` atomically (temporary file in the same folder, then ``os.replace``).

    Figures are built on :class:`matplotlib.figure.Figure` directly, never through pyplot,
    so nothing needs a display and no global backend state is touched. The format follows
    the file suffix (``.png``, ``.pdf``, ``.svg``).
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    return path


def axis_label(obj: xr.DataArray, fallback: str) -> str:
    """'long name [units]' from CF attributes; CF's units "1" read "(dimensionless)"."""
    name = obj.attrs.get("long_name", obj.name if obj.name is not None else fallback)
    units = obj.attrs.get("units")
    if units in (None, ""):
        return str(name)
    return f"{name} (dimensionless)" if str(units) == "1" else f"{name} [{units}]"


def _frames(da: xr.DataArray, n: int, time_index: int) -> xr.DataArray:
    """The first ``n`` samples of a field, at one time and for the first member."""
    if "sample" not in da.dims:
        raise ValueError(f"field {da.name!r} has no 'sample' dimension (dims {da.dims})")
    if "member" in da.dims:
        da = da.isel(member=0)
    if "time" in da.dims:
        da = da.isel(time=time_index)
    spatial = [d for d in da.dims if d not in _NON_SPATIAL]
    if len(spatial) not in (1, 2):
        raise ValueError(
            f"field {da.name!r}: can only draw 1-D or 2-D fields, got spatial dims {spatial}"
        )
    return da.isel(sample=slice(0, n)).transpose("sample", *spatial)


def _coord(da: xr.DataArray, dim: str) -> tuple[np.ndarray, str]:
    if dim in da.coords:
        return np.asarray(da[dim].values, dtype=float), axis_label(da[dim], dim)
    return np.arange(da.sizes[dim], dtype=float), dim


def colour_scale(values: np.ndarray, diverging: bool | None = None) -> tuple[str, float, float]:
    r"""Colour map and limits for an image of ``values``: ``(cmap, vmin, vmax)``.

    The limits are the 1st and 99th percentiles :math:`(p_1, p_{99})` of the finite values.
    A field is *signed* when both tails reach past zero substantially,
    :math:`p_1 < 0 < p_{99}` and :math:`\min(|p_1|, p_{99}) \ge 0.1 \max(|p_1|, p_{99})`;
    it then gets the diverging map ``RdBu_r`` on the symmetric range
    :math:`\pm\max(|p_1|, p_{99})`, so white is zero. Any other field (a permeability, a
    density, a positive field with round-off below zero) gets ``viridis`` on
    :math:`[p_1, p_{99}]`. ``diverging`` forces the choice.
    """
    finite = np.asarray(values, dtype=float).ravel()
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        raise ValueError("no finite values to draw")
    lo, hi = (float(v) for v in np.percentile(finite, _PERCENTILES))
    if diverging is None:
        small, large = sorted((abs(lo), abs(hi)))
        diverging = lo < 0 < hi and small >= _SIGNED_FRACTION * large
    if diverging:
        edge = max(abs(lo), abs(hi)) or 1.0
        return "RdBu_r", -edge, edge
    if lo == hi:  # a constant field: a visible, centred range
        lo, hi = lo - 0.5, hi + 0.5
    return "viridis", lo, hi


def sample_grid_figure(
    samples: xr.DataArray,
    *,
    ref: xr.DataArray | None = None,
    n: int = 4,
    time_index: int = -1,
    title: str | None = None,
    label: str = "generated",
    ref_label: str = "reference",
    diverging: bool | None = None,
) -> Figure:
    """The first ``n`` samples of a 1-D or 2-D field (and of a reference set below them).

    Panels are titled ``label`` (default "generated"; pass e.g. "training data" when the
    samples are data) and ``ref_label``. Axes use the file's coordinates and their
    ``units``/``long_name`` attributes; 2-D fields use ``imshow(u.T, origin="lower")``
    (fields are stored with ``indexing="ij"``) and one colour scale for every panel
    (:func:`colour_scale`), so generated and reference samples compare at a glance.
    Time-dependent fields are drawn at ``time_index``; ensembles show their first member.
    """
    sets = {label: _frames(samples, n, time_index)}
    if ref is not None:
        sets[ref_label] = _frames(ref, n, time_index)
    first = sets[label]
    spatial = [d for d in first.dims if d != "sample"]
    value_label = axis_label(samples, "value")
    pooled = np.concatenate([np.asarray(s.values, dtype=float).ravel() for s in sets.values()])
    finite = pooled[np.isfinite(pooled)]
    if finite.size == 0:
        raise ValueError(f"field {samples.name!r}: no finite values to draw")
    if len(spatial) == 1:
        fig = Figure(layout="constrained", figsize=(5.0 * len(sets), 3.2))
        axes = fig.subplots(1, len(sets), squeeze=False)[0]
        x, xlabel = _coord(first, spatial[0])
        lo, hi = np.percentile(finite, [0.0, 100.0])
        pad = 0.05 * (hi - lo or 1.0)
        for ax, (name, frames) in zip(axes, sets.items(), strict=True):
            for curve in np.asarray(frames.values, dtype=float):
                ax.plot(x, curve, lw=1.0)
            count = frames.sizes["sample"]
            ax.set(title=f"{name} ({count} samples)", xlabel=xlabel, ylabel=value_label)
            ax.set_ylim(lo - pad, hi + pad)
    else:
        cmap, vmin, vmax = colour_scale(finite, diverging)
        count = max(s.sizes["sample"] for s in sets.values())
        fig = Figure(layout="constrained", figsize=(2.6 * count + 0.8, 2.5 * len(sets)))
        axes = fig.subplots(len(sets), count, squeeze=False)
        x, xlabel = _coord(first, spatial[0])
        y, ylabel = _coord(first, spatial[1])
        # Pixels centred on the coordinates: half a cell beyond the first and last points.
        dx = (x[-1] - x[0]) / max(len(x) - 1, 1)
        dy = (y[-1] - y[0]) / max(len(y) - 1, 1)
        extent = (x[0] - dx / 2, x[-1] + dx / 2, y[0] - dy / 2, y[-1] + dy / 2)
        image = None
        for row, (name, frames) in zip(axes, sets.items(), strict=True):
            values = np.asarray(frames.values, dtype=float)
            for j, ax in enumerate(row):
                if j >= len(values):
                    ax.set_axis_off()
                    continue
                image = ax.imshow(
                    values[j].T, origin="lower", extent=extent, vmin=vmin, vmax=vmax, cmap=cmap
                )
                ax.set_title(f"{name} {j}", fontsize=9)
                ax.set_xlabel(xlabel, fontsize=8)
                ax.set_ylabel(ylabel, fontsize=8)
                ax.tick_params(labelsize=7)
        if image is not None:
            fig.colorbar(image, ax=axes, shrink=0.8, label=value_label)
    if "time" in samples.dims and "time" in samples.coords:
        when = float(samples["time"].values[time_index])
        stamp = f"time = {when:g} {samples['time'].attrs.get('units', '')}".strip()
        title = f"{title}, {stamp}" if title else stamp
    if title:
        fig.suptitle(title)
    return fig


def plot_sample_grid(samples: xr.DataArray, path: str | os.PathLike[str], **options: Any) -> Path:
    """Write :func:`sample_grid_figure` (same keyword options) to ``path``."""
    return save_figure(sample_grid_figure(samples, **options), path)


def mean_std_figure(
    x: Sequence[float] | np.ndarray,
    panels: Mapping[str, Mapping[str, Sequence[Sequence[float]] | np.ndarray]],
    *,
    xlabel: str,
    ylabels: Mapping[str, str],
    title: str | None = None,
) -> Figure:
    """Mean curve and a ±1 standard-deviation band of sets of 1-D samples, one panel per field.

    ``panels[field][label]`` holds samples ``(N, len(x))``; each set is drawn as its mean
    with a shaded band ``mean ± std`` (standard deviation over the N samples, ``ddof=1``),
    and its legend entry reads ``"<label>: mean ± 1 std over N samples"``. ``ylabels`` gives
    each field's axis label (with units).
    """
    x = np.asarray(x, dtype=float)
    fig = Figure(layout="constrained", figsize=(4.5 * len(panels), 3.4))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, sets) in zip(axes, panels.items(), strict=True):
        handles, labels = [], []
        for i, (label, values) in enumerate(sets.items()):
            values = np.asarray(values, dtype=float)
            if values.ndim != 2 or values.shape[1] != x.size or values.shape[0] < 2:
                raise ValueError(
                    f"{name}/{label}: expected samples (N >= 2, {x.size}), got {values.shape}"
                )
            mean, std = values.mean(0), values.std(0, ddof=1)
            (line,) = ax.plot(x, mean, color=f"C{i}", lw=1.4)
            band = ax.fill_between(x, mean - std, mean + std, color=f"C{i}", alpha=0.25, lw=0)
            handles.append((band, line))  # one legend entry: the line over its band
            labels.append(f"{label}: mean ± 1 std over {len(values)} samples")
        ax.set(title=name, xlabel=xlabel, ylabel=ylabels[name])
        ax.legend(handles, labels, fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def spectra_figure(
    k: Sequence[float] | np.ndarray,
    spectra: Mapping[str, Sequence[float] | np.ndarray],
    *,
    xlabel: str = "wavenumber k",
    ylabel: str = "power P(k)",
    title: str | None = None,
) -> Figure:
    """Log–log plot of radially averaged spectra (e.g. generated vs reference), k > 0 only."""
    k = np.asarray(k, dtype=float)
    fig = Figure(layout="constrained", figsize=(5.0, 3.8))
    ax = fig.subplots()
    for label, p in spectra.items():
        p = np.asarray(p, dtype=float)
        if p.shape != k.shape:
            raise ValueError(f"spectrum {label!r} has shape {p.shape}, wavenumbers {k.shape}")
        keep = (k > 0) & (p > 0)
        ax.loglog(k[keep], p[keep], label=label, lw=1.4)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title or "")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    return fig


def plot_spectra(
    k: Sequence[float] | np.ndarray,
    spectra: Mapping[str, Sequence[float] | np.ndarray],
    path: str | os.PathLike[str],
    **options: Any,
) -> Path:
    """Write :func:`spectra_figure` (same keyword options) to ``path``."""
    return save_figure(spectra_figure(k, spectra, **options), path)


def lead_times_figure(result: Mapping[str, Any]) -> Figure:
    """Scores of a trajectory ensemble against lead time, one line per field: fair CRPS,
    corrected spread–skill (1 = calibrated), RMSE of the ensemble mean and the spectrum error
    with its floor (dashed) and 10 × the floor (dotted), the stability threshold.

    ``result`` is :func:`physgen.emulation.report.forecast_report`'s dictionary.
    """
    lead = np.asarray(result["lead_time"], dtype=float)
    fig = Figure(layout="constrained", figsize=(10.0, 6.4))
    axes = fig.subplots(2, 2).ravel()
    titles = ("fair CRPS", "spread–skill (corrected)", "RMSE of the ensemble mean",
              "spectrum error (log-spectral distance)")  # fmt: skip
    for name, entry in result["fields"].items():
        units = f" [{entry['units']}]" if entry.get("units") not in (None, "", "1") else ""
        for ax, key in zip(axes[:3], ("crps", "spread_skill", "rmse"), strict=True):
            ax.plot(lead, entry[key], marker="o", ms=3, label=name)
            if key != "spread_skill":
                ax.set_ylabel(f"{key}{units}")
        spectrum = entry["spectrum_lsd"]
        if "value" in spectrum:
            (line,) = axes[3].plot(lead, spectrum["value"], marker="o", ms=3, label=name)
            floor = np.asarray(spectrum["floor"], dtype=float)
            axes[3].plot(lead, floor, ls="--", color=line.get_color(), label=f"{name} floor")
            axes[3].plot(lead, 10 * floor, ls=":", color=line.get_color(),
                         label=f"{name} 10 × floor")  # fmt: skip
    axes[1].axhline(1.0, color="k", lw=0.8, ls="--")
    axes[1].set_ylabel("spread / RMSE")
    axes[3].set_ylabel("LSD [log10 power]")
    for ax, title in zip(axes, titles, strict=True):
        ax.set(title=title, xlabel="lead time")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def plot_lead_times(result: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write :func:`lead_times_figure` to ``path``."""
    return save_figure(lead_times_figure(result), path)


def marginals_figure(
    values: Mapping[str, Sequence[float] | np.ndarray],
    *,
    bins: int = 60,
    xlabel: str = "value",
    units: str | None = None,
    title: str | None = None,
) -> Figure:
    """Density histograms of pooled pointwise values of several sets on shared bins.

    The bins span the 0.1st to 99.9th percentiles of the pooled finite values. With ``units``
    the x label gains ``[units]`` and the density axis ``[1/units]``; each legend entry
    counts its values.
    """
    arrays = {k: np.asarray(v, dtype=float).ravel() for k, v in values.items()}
    pooled = np.concatenate([a[np.isfinite(a)] for a in arrays.values()])
    if pooled.size == 0:
        raise ValueError("plot_marginals: no finite values")
    edges = np.histogram_bin_edges(
        pooled, bins=bins, range=tuple(np.percentile(pooled, [0.1, 99.9]))
    )
    fig = Figure(layout="constrained", figsize=(5.0, 3.6))
    ax = fig.subplots()
    for label, a in arrays.items():
        a = a[np.isfinite(a)]
        ax.hist(
            a, bins=edges, density=True, histtype="step", lw=1.5, label=f"{label} (n = {a.size})"
        )
    has_units = units not in (None, "", "1")
    ax.set(
        xlabel=f"{xlabel} [{units}]" if has_units else xlabel,
        ylabel=f"probability density [1/({units})]" if has_units else "probability density",
        title=title or "",
    )
    ax.legend()
    return fig


def plot_marginals(
    values: Mapping[str, Sequence[float] | np.ndarray],
    path: str | os.PathLike[str],
    **options: Any,
) -> Path:
    """Write :func:`marginals_figure` (same keyword options) to ``path``."""
    return save_figure(marginals_figure(values, **options), path)


def rank_histogram_figure(
    frequencies: Sequence[float] | np.ndarray, *, title: str | None = None
) -> Figure:
    """Bar chart of rank frequencies (M + 1 bins) with the flat line of a calibrated ensemble."""
    freq = np.asarray(frequencies, dtype=float).ravel()
    if freq.size < 2:
        raise ValueError(f"a rank histogram needs ≥ 2 bins, got {freq.size}")
    fig = Figure(layout="constrained", figsize=(5.0, 3.4))
    ax = fig.subplots()
    ax.bar(np.arange(freq.size), freq, width=0.85, color="tab:blue", label="observed")
    ax.axhline(1 / freq.size, color="k", ls="--", lw=1, label="calibrated (flat)")
    ax.set(
        xlabel=f"rank of the truth among {freq.size - 1} members",
        ylabel="relative frequency",
        title=title or "",
    )
    ax.legend()
    return fig


def plot_rank_histogram(
    frequencies: Sequence[float] | np.ndarray, path: str | os.PathLike[str], **options: Any
) -> Path:
    """Write :func:`rank_histogram_figure` (same keyword options) to ``path``."""
    return save_figure(rank_histogram_figure(frequencies, **options), path)


def read_training_log(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """Read a JSON-lines training log (one object per line, e.g. ``step``, ``loss``).

    Blank lines are skipped; a line that is not a JSON object raises ``ValueError`` naming
    the file and the line number.
    """
    path = Path(path)
    records = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from err
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}"
                )
            records.append(record)
    if not records:
        raise ValueError(f"{path}: the training log holds no records")
    return records


def loss_curves_figure(
    log_path: str | os.PathLike[str],
    *,
    keys: Sequence[str] | None = None,
    x_key: str = "step",
    xlabel: str | None = None,
    title: str | None = None,
) -> Figure:
    """Loss curves from a JSON-lines training log against ``step`` (or the record index).

    Default keys: every numeric key whose name contains "loss". Records lacking a key
    (validation losses logged every few steps) are skipped for that curve only. The y axis is
    logarithmic when every plotted value is positive. The x axis reads "optimizer step" for
    ``step`` (``xlabel`` overrides it).
    """
    records = read_training_log(log_path)
    if keys is None:
        keys = sorted({k for r in records for k, v in r.items() if "loss" in k and _is_number(v)})
        if not keys:
            raise ValueError(f"{log_path}: no numeric key containing 'loss' to plot")
    fig = Figure(layout="constrained", figsize=(5.5, 3.8))
    ax = fig.subplots()
    positive = True
    for key in keys:
        pts = [
            (float(r.get(x_key, i)), float(r[key]))
            for i, r in enumerate(records)
            if _is_number(r.get(key)) and math.isfinite(float(r[key]))
        ]
        if not pts:
            raise ValueError(f"{log_path}: no numeric values for key {key!r}")
        xs, ys = zip(*pts, strict=True)
        positive &= min(ys) > 0
        ax.plot(xs, ys, label=key, lw=1.2, marker="o" if len(xs) < 30 else None, ms=3)
    if positive:
        ax.set_yscale("log")
    if xlabel is None:
        xlabel = "optimizer step" if x_key == "step" else x_key
    ylabel = "loss (log scale)" if positive else "loss"
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title or "")
    ax.legend()
    ax.grid(True, alpha=0.3)
    return fig


def plot_loss_curves(
    log_path: str | os.PathLike[str], path: str | os.PathLike[str], **options: Any
) -> Path:
    """Write :func:`loss_curves_figure` (same keyword options) to ``path``."""
    return save_figure(loss_curves_figure(log_path, **options), path)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def traversal_fields(
    model: object,
    *,
    dims: Sequence[int] | None = None,
    values: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),
    base: Sequence[float] | None = None,
    noise_seed: int | None = None,
) -> np.ndarray:
    """Decoded fields with one latent moved at a time: ``(len(dims), len(values), *shape)``.

    Entry ``[i, k]`` is ``model.decode(base + values[k] · e_{dims[i]})``: the base code with
    latent ``dims[i]`` set off by ``values[k]`` (in prior standard deviations for a VAE).
    ``base`` defaults to the prior mean (zeros), or an autoencoder's running code mean;
    ``dims`` to every latent. ``model`` is an unconditional VAE or autoencoder (``decode``
    and ``latent_dim``). With ``noise_seed``, entries are draws of a Gaussian decoder
    (``model.decode_draw``) from one standard-normal draw of that seed shared by all: a latent
    that sets the decoder's scale (``VAE(decoder_scale=...)``) moves the noise's size or
    roughness, which the mean does not show.
    """
    import torch

    latent_dim = getattr(model, "latent_dim", None)
    if latent_dim is None or not hasattr(model, "decode"):
        raise TypeError(f"{type(model).__name__} has no latent code to traverse")
    dims = list(range(latent_dim)) if dims is None else list(dims)
    bad = [d for d in dims if not 0 <= d < latent_dim]
    if bad:
        raise ValueError(f"latent dims {bad} out of range for latent_dim={latent_dim}")
    like = next(model.parameters())  # type: ignore[attr-defined]
    if base is None:
        mean = getattr(model, "code_mean", None)
        start = mean.detach().clone() if mean is not None else torch.zeros(latent_dim)
    else:
        start = torch.as_tensor(np.asarray(base, dtype=float))
        if start.shape != (latent_dim,):
            raise ValueError(f"base must have shape ({latent_dim},), got {tuple(start.shape)}")
    offsets = torch.as_tensor(np.asarray(values, dtype=float))
    z = start.to(like).repeat(len(dims), len(offsets), 1)  # (L, V, latent_dim)
    for i, d in enumerate(dims):
        z[i, :, d] = z[i, :, d] + offsets.to(like)
    with torch.no_grad():
        if noise_seed is None:
            fields = model.decode(z.reshape(-1, latent_dim))  # type: ignore[attr-defined]
        else:
            if not hasattr(model, "decode_draw"):
                raise TypeError(f"{type(model).__name__} has no decode_draw for noise_seed")
            shape = (1, *model.sample_shape)  # type: ignore[attr-defined]
            gen = torch.Generator().manual_seed(noise_seed)
            eps = torch.randn(shape, generator=gen, dtype=torch.float64).to(like)
            fields = model.decode_draw(z.reshape(-1, latent_dim), eps)  # type: ignore[attr-defined]
    return fields.double().cpu().numpy().reshape(len(dims), len(offsets), *fields.shape[1:])


def latent_traversal(
    model: object,
    path: str | os.PathLike[str],
    *,
    dims: Sequence[int] | None = None,
    values: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),
    base: Sequence[float] | None = None,
    channel: int = 0,
    labels: Mapping[int, str] | None = None,
    title: str | None = None,
    noise_seed: int | None = None,
) -> Path:
    """Draw :func:`traversal_fields`: one row per latent, one column per offset.

    2-D fields are drawn as images of ``channel`` on one colour scale; 1-D fields as one
    curve per offset, one panel per latent. ``labels`` names rows (e.g. the factor a latent
    was found to carry); ``noise_seed`` draws fields with one shared noise draw (see there).
    """
    fields = traversal_fields(model, dims=dims, values=values, base=base, noise_seed=noise_seed)
    rows = list(range(getattr(model, "latent_dim", 0))) if dims is None else list(dims)
    names = {d: f"z{d}" for d in rows} | dict(labels or {})
    frames = fields[:, :, channel] if fields.ndim >= 4 else fields  # (L, V, *grid)
    if frames.ndim == 3:  # 1-D fields
        fig = Figure(layout="constrained", figsize=(4.0, 2.2 * len(rows)))
        axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
        for ax, d, curves in zip(axes, rows, frames, strict=True):
            for v, curve in zip(values, curves, strict=True):
                ax.plot(curve, lw=1.0, label=f"{v:+g}")
            ax.set_ylabel(names[d])
        axes[0].legend(fontsize=7, ncols=min(len(values), 5))
    else:
        vmin, vmax = np.percentile(frames, [0.5, 99.5])
        fig = Figure(layout="constrained", figsize=(1.6 * len(values) + 0.8, 1.6 * len(rows)))
        axes = fig.subplots(len(rows), len(values), squeeze=False)
        image = None
        for i, d in enumerate(rows):
            for k, v in enumerate(values):
                ax = axes[i, k]
                image = ax.imshow(frames[i, k].T, origin="lower", vmin=vmin, vmax=vmax)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"{v:+g}", fontsize=8)
            axes[i, 0].set_ylabel(names[d], fontsize=8)
        if image is not None:
            fig.colorbar(image, ax=axes, shrink=0.8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)

"""``physgen evaluate SAMPLES --ref REF``: metrics with floors, metrics.json, figures, a table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from physgen.cli._catalog import require_files

if TYPE_CHECKING:  # the command imports numpy, xarray and the metrics only when it runs
    import numpy as np
    import xarray as xr

__all__ = ["evaluate_files", "format_table", "register"]

_NON_SPATIAL = ("sample", "member", "time")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compare generated fields with reference fields",
        description=(
            "Compare a physgen-field/1 file of generated fields with a reference file. "
            "Unconditional samples get distribution metrics (mean/std errors, spectra, "
            "correlations, MMD with a permutation test, sliced Wasserstein, W1, energy and "
            "Fréchet-PCA distances), each beside its reference-vs-reference floor; files with a "
            "'member' dimension get ensemble scores (fair CRPS, spread-skill, rank histogram, "
            "coverage); files with both 'member' and 'time' (a 'physgen rollout' forecast "
            "against the true trajectories) get them per lead time (fair CRPS, spread-skill, "
            "ensemble-mean RMSE and correlation, spectrum error and PDE residual beside their "
            "floors, the correlation and stability horizons) in lead_times.csv. Samples "
            "holding NaN/Inf are counted (their fraction is reported) and "
            "left out of the scores; the reference must be finite. Writes metrics.json and "
            "figures to --out and prints a table."
        ),
    )
    parser.add_argument("samples", type=Path, help="generated fields (physgen-field/1 file)")
    parser.add_argument("--ref", type=Path, required=True, help="reference fields (same layout)")
    parser.add_argument(
        "--problem",
        metavar="NAME|PATH",
        help="problem name or Python file for PDE-residual statistics against the reference "
        "floor (default: the registered problem named in the reference file; a file's "
        "attribute may only name a registered problem, never a path)",
    )
    parser.add_argument("--no-residual", action="store_true", help="skip the PDE residual")
    parser.add_argument("--fields", nargs="+", help="fields to evaluate (default: all shared)")
    parser.add_argument(
        "--out", type=Path, help="output folder (default: <SAMPLES stem>-evaluation beside it)"
    )
    parser.add_argument(
        "--paired",
        action="store_true",
        help="samples are predictions of the reference with equal 'sample' indices: "
        "add per-sample errors (rel-L2, RMSE, VRMSE, spectral bands)",
    )
    parser.add_argument(
        "--max-samples", type=int, default=2000, help="use at most this many fields per set"
    )
    parser.add_argument("--permutations", type=int, default=200, help="MMD permutation count")
    parser.add_argument("--seed", type=int, default=0, help="seed of splits and projections")
    parser.add_argument(
        "--splits", type=int, default=5, help="reference splits averaged for each floor"
    )
    parser.add_argument(
        "--feature-encoder",
        type=Path,
        metavar="PATH",
        help="feature encoder of the Fréchet feature distance (default: feature_encoder.pt "
        "beside the reference, made by 'physgen data make --feature-encoder', if present)",
    )
    parser.add_argument("--no-figures", action="store_true", help="skip the figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(handler=_run)


def _open(path: Path) -> xr.Dataset:
    """Open and validate a physgen-field/1 file (errors name the file and the defect).

    Values are not scanned here: :func:`_finite_draws` scans the fields that are evaluated.
    """
    from physgen.data import open_fields

    return open_fields(path, nonfinite="ignore")


def _finite_draws(ds: xr.Dataset, names: list[str]) -> np.ndarray:
    """Which generated fields are finite in every one of ``names``: a boolean array
    ``(sample,)``, or ``(sample, member)`` for an ensemble file, read in blocks of samples."""
    import numpy as np

    from physgen.data import iter_sample_blocks

    ensemble = any("member" in ds[f].dims for f in names)
    shape = (ds.sizes["sample"], ds.sizes["member"]) if ensemble else (ds.sizes["sample"],)
    finite = np.ones(shape, dtype=bool)
    for f in names:
        var = ds[f].transpose("sample", "member", ...) if ensemble else ds[f]
        keep = 2 if ensemble else 1  # the leading axes that index draws
        for start, block in iter_sample_blocks(var):
            ok = np.isfinite(block).all(axis=tuple(range(keep, block.ndim)))
            finite[start : start + len(block)] &= ok
    return finite


def _drop_nonfinite(
    gen_ds: xr.Dataset, ref_ds: xr.Dataset, names: list[str], paths: tuple[Path, Path]
) -> tuple[xr.Dataset, dict[str, Any]]:
    """Refuse a non-finite reference; keep the generated samples that are finite.

    A generated field counts as non-finite when any evaluated field holds NaN or Inf in it;
    an ensemble keeps only the cases whose members are all finite (every case needs the same
    members). Returns the kept samples and ``{"count", "total", "fraction"}`` of non-finite
    generated fields (plus ``cases_dropped`` for an ensemble).
    """
    import numpy as np

    bad_ref = ~_finite_draws(ref_ds, names)
    if bad_ref.any():
        where = np.flatnonzero(bad_ref)
        shown = ", ".join(map(str, where[:10])) + (", ..." if where.size > 10 else "")
        raise ValueError(
            f"{paths[1]}: the reference holds NaN/Inf in {where.size} sample(s) (positions "
            f"[{shown}]) of fields {names}; a reference must be finite (remove those samples)"
        )
    finite = _finite_draws(gen_ds, names)
    count = int(finite.size - finite.sum())
    report: dict[str, Any] = {
        "count": count,
        "total": int(finite.size),
        "fraction": count / max(finite.size, 1),
    }
    keep = finite.all(axis=1) if finite.ndim == 2 else finite
    if finite.ndim == 2:
        report["cases_dropped"] = int(keep.size - keep.sum())
    if not keep.any():
        raise ValueError(f"{paths[0]}: every generated sample holds NaN/Inf; nothing to score")
    if count:
        gen_ds = gen_ds.isel(sample=np.flatnonzero(keep))
    return gen_ds, report


def _is_periodic(ds: xr.Dataset, spatial: list[str]) -> bool:
    return all(str(ds.attrs.get(f"bc_{d}", "")).lower() == "periodic" for d in spatial)


def _check_layout(name: str, gen: xr.DataArray, ref: xr.DataArray, paths: tuple[Path, Path]):
    gen_dims = [d for d in gen.dims if d != "member"]
    if gen_dims != list(ref.dims):
        raise ValueError(
            f"field {name!r}: dims {tuple(gen.dims)} in {paths[0]} do not match "
            f"{tuple(ref.dims)} in {paths[1]}"
        )
    if gen_dims[0] != "sample":
        raise ValueError(f"field {name!r}: the first dimension must be 'sample', got {gen_dims}")
    for d in gen_dims[1:]:
        if gen.sizes[d] != ref.sizes[d]:
            raise ValueError(
                f"field {name!r}: dimension {d!r} has {gen.sizes[d]} points in {paths[0]} "
                f"but {ref.sizes[d]} in {paths[1]}"
            )


def _check_inputs(
    names: list[str],
    gen_ds: xr.Dataset,
    ref_ds: xr.Dataset,
    paths: tuple[Path, Path],
    ensemble: bool,
    paired: bool,
) -> None:
    """Check every field's layout and the shared samples before anything is written."""
    import numpy as np

    for f in names:
        gen, ref = gen_ds[f], ref_ds[f]
        _check_layout(f, gen, ref, paths)
        if ensemble and "member" not in gen.dims:
            raise ValueError(f"field {f!r} in {paths[0]} has no 'member' dimension")
    if ensemble or paired:
        common = np.intersect1d(gen_ds["sample"].values, ref_ds["sample"].values)
        if common.size == 0 and ensemble:
            raise ValueError(f"{paths[0]} and {paths[1]} share no 'sample' index")
        if common.size == 0:
            raise ValueError(f"--paired: {paths[0]} and {paths[1]} share no sample")


def evaluate_files(
    samples_path: Path,
    ref_path: Path,
    *,
    out: Path,
    fields: list[str] | None = None,
    problem: str | None = None,
    paired: bool = False,
    max_samples: int = 2000,
    permutations: int = 200,
    seed: int = 0,
    splits: int = 5,
    figures: bool = True,
    residual: bool = True,
    progress: bool = False,
    feature_encoder: Path | None = None,
) -> dict[str, Any]:
    """Evaluate one file of generated fields against a reference file; write metrics.json.

    The PDE residual is evaluated with ``problem`` (a name or file) or, when that is None,
    with the registered problem named in the reference file's ``problem`` attribute (a path
    there is refused with ``UnregisteredProblemError``), using the parameters of its
    ``params_json``; ``residual=False`` skips it.

    The inputs are checked before ``out`` is created, so a refused pair leaves no folder;
    ``progress`` shows a bar on stderr, one step per metric group (a field's metrics, its
    figures, the residual).

    Generated samples holding NaN or Inf are left out of every score and counted in
    ``nonfinite`` (see :func:`_drop_nonfinite`); a reference holding any is refused.

    The feature distances (``feature_distance``: the Fréchet distance and KID of the
    encoder's features, and the KID of the physics features when the problem is known) use
    ``feature_encoder`` or the encoder stored beside the reference
    (:mod:`physgen.diagnostics.feature_encoder`).

    Returns the metrics dictionary that was written to ``out / "metrics.json"``.
    """
    import numpy as np
    from tqdm import tqdm

    from physgen.data import field_names
    from physgen.data.atomic import write_json_atomic
    from physgen.metrics.report import distribution_report, ensemble_report, paired_report

    gen_ds, ref_ds = _open(samples_path), _open(ref_path)
    names = fields or [f for f in field_names(gen_ds) if f in ref_ds.data_vars]
    if not names:
        raise ValueError(f"{samples_path} and {ref_path} share no field")
    for f in names:
        for ds, path in ((gen_ds, samples_path), (ref_ds, ref_path)):
            if f not in ds.data_vars:
                raise KeyError(f"{path}: no field {f!r} (fields: {field_names(ds)})")
    # An explicit problem is resolved and checked before any metric runs, so a typo or a
    # problem whose fields the files lack fails at once rather than after the whole suite.
    explicit = _load_problem(problem, ref_ds, ref_path) if residual and problem else None
    if residual and not problem and ref_ds.attrs.get("problem"):
        _check_hint(str(ref_ds.attrs["problem"]), ref_path)  # a path there fails at once
    if explicit is not None:
        for ds, path in ((gen_ds, samples_path), (ref_ds, ref_path)):
            missing = [c for c in explicit.field_names if c not in ds.data_vars]
            if missing:
                raise KeyError(
                    f"{path}: problem {explicit.name!r} needs fields "
                    f"{list(explicit.field_names)}; missing {missing}"
                )
    ensemble = any("member" in gen_ds[f].dims for f in names)
    if ensemble and any("time" in gen_ds[f].dims for f in names):
        return _evaluate_lead_times(
            gen_ds, ref_ds, names, (samples_path, ref_path), out=out, problem=explicit,
            residual=residual, max_samples=max_samples, splits=splits, seed=seed,
            figures=figures,
        )  # fmt: skip
    result: dict[str, Any] = {
        "schema": "physgen-metrics/1",
        "samples": str(samples_path),
        "ref": str(ref_path),
        "mode": "ensemble" if ensemble else "distribution",
        "seed": seed,
        "fields": {},
    }
    _check_inputs(names, gen_ds, ref_ds, (samples_path, ref_path), ensemble, paired)
    gen_ds, result["nonfinite"] = _drop_nonfinite(gen_ds, ref_ds, names, (samples_path, ref_path))
    out.mkdir(parents=True, exist_ok=True)  # only once the inputs are known to fit
    groups = len(names) * (2 if figures else 1) + int(residual)
    bar = tqdm(total=groups, desc="evaluate", unit="group", file=sys.stderr, disable=not progress)
    for f in names:
        bar.set_postfix_str(f"{f}: metrics")
        gen, ref = gen_ds[f], ref_ds[f]
        spatial = [d for d in ref.dims if d not in _NON_SPATIAL]
        entry: dict[str, Any] = {"units": str(ref.attrs.get("units", ""))}
        if ensemble:
            common = np.intersect1d(gen["sample"].values, ref["sample"].values)[:max_samples]
            gen = gen.sel(sample=common).transpose("sample", "member", ...)
            ref = ref.sel(sample=common)
            entry["n"] = int(common.size)
            entry.update(
                ensemble_report(
                    gen.values,
                    ref.values,
                    spatial_dims=len(spatial),
                    member_dim=1,
                    seed=seed,
                    periodic=_is_periodic(ref_ds, spatial),
                )
            )
        else:
            gen_v = gen.isel(sample=slice(0, max_samples)).values
            ref_v = ref.isel(sample=slice(0, 2 * max_samples)).values
            entry.update(
                distribution_report(
                    gen_v,
                    ref_v,
                    spatial_dims=len(spatial),
                    periodic=_is_periodic(ref_ds, spatial),
                    seed=seed,
                    num_permutations=permutations,
                    num_splits=splits,
                )
            )
            if paired:
                common = np.intersect1d(gen["sample"].values, ref["sample"].values)[:max_samples]
                entry["paired"] = paired_report(
                    gen.sel(sample=common).values,
                    ref.sel(sample=common).values,
                    spatial_dims=len(spatial),
                )
        result["fields"][f] = entry
        bar.update()
        if figures:
            bar.set_postfix_str(f"{f}: figures")
            _figures(f, gen, ref, entry, out, spatial, ensemble, _is_periodic(ref_ds, spatial))
            bar.update()
    if not ensemble:
        from physgen.diagnostics.feature_encoder import feature_distance_entry

        # The physics features need the fields' problem, as the residual does.
        loaded = _residual_problem(explicit, gen_ds, ref_ds, ref_path)[0] if residual else None
        features = feature_distance_entry(
            feature_encoder, gen_ds, ref_ds, (samples_path, ref_path),
            max_samples=max_samples, splits=splits, seed=seed, problem=loaded,
        )  # fmt: skip
        if features is not None:
            result["feature_distance"] = features
    if residual:
        bar.set_postfix_str("PDE residual")
        entry = _residual_entry(explicit, gen_ds, ref_ds, ref_path, max_samples)
        if entry is not None:
            result["residual"] = entry
        bar.update()
    bar.close()
    write_json_atomic(result, out / "metrics.json")
    return result


def _evaluate_lead_times(
    gen_ds: xr.Dataset,
    ref_ds: xr.Dataset,
    names: list[str],
    paths: tuple[Path, Path],
    *,
    out: Path,
    problem: Any,
    residual: bool,
    max_samples: int,
    splits: int,
    seed: int,
    figures: bool,
) -> dict[str, Any]:
    """A trajectory ensemble (``member`` and ``time``) against the true trajectories: every
    score per lead time (:func:`physgen.emulation.report.forecast_report`), written to
    metrics.json and lead_times.csv (and lead_times.png)."""
    from physgen.data.atomic import nonfinite_to_none, write_json_atomic
    from physgen.emulation.report import forecast_report, write_lead_csv

    for f in names:
        gen, ref = gen_ds[f], ref_ds[f]
        if gen.dims[:3] != ("sample", "member", "time"):
            raise ValueError(
                f"field {f!r} in {paths[0]} has dims {gen.dims}; a trajectory ensemble needs "
                "('sample', 'member', 'time', *grid)"
            )
        if ref.dims != ("sample", *gen.dims[2:]):
            raise ValueError(
                f"field {f!r}: the forecast's dims {gen.dims} in {paths[0]} need reference "
                f"trajectories {('sample', *gen.dims[2:])}, got {ref.dims} in {paths[1]}"
            )
        grid = [d for d in gen.dims[3:] if gen.sizes[d] != ref.sizes[d]]
        if grid:
            raise ValueError(
                f"field {f!r}: grid dims {grid} differ in size between {paths[0]} and {paths[1]}"
            )
    gen_ds, nonfinite = _drop_nonfinite(gen_ds, ref_ds, names, paths)
    loaded, note = (None, None)
    if residual:
        loaded, note = _residual_problem(problem, gen_ds, ref_ds, paths[1])
    try:
        report = forecast_report(
            gen_ds, ref_ds, names, problem=loaded, max_cases=max_samples, splits=splits,
            seed=seed,
        )  # fmt: skip
    except NotImplementedError as err:  # a problem without an equation to satisfy
        report = forecast_report(
            gen_ds, ref_ds, names, max_cases=max_samples, splits=splits, seed=seed
        )
        report["residual"] = {"problem": loaded.name, "skipped": str(err)}
    if note is not None:
        report["residual"] = note
    result = {
        "schema": "physgen-metrics/1",
        "samples": str(paths[0]),
        "ref": str(paths[1]),
        "mode": "lead_time",
        "seed": seed,
        "nonfinite": nonfinite,
        **report,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_lead_csv(result, out / "lead_times.csv")
    if figures:
        from physgen.plotting import plot_lead_times

        plot_lead_times(result, out / "lead_times.png")
    write_json_atomic(nonfinite_to_none(result), out / "metrics.json")
    return result


def _reference_params(name: str, ref_ds: xr.Dataset, ref_path: Path) -> dict[str, Any]:
    """The reference file's ``params_json`` when it names the problem ``name``, else ``{}``."""
    from physgen.problem import recorded_params

    if str(ref_ds.attrs.get("problem", "")) != Path(name).stem:
        return {}
    return recorded_params(ref_ds.attrs, ref_path)


def _load_problem(name: str, ref_ds: xr.Dataset, ref_path: Path) -> Any:
    """The user's ``--problem`` (a name or a Python file) with the reference's parameters.

    When the reference was generated by a problem file (its ``problem_sha256`` attribute) and
    ``name`` is a file, the two must be the same bytes: a residual under an edited problem
    file would be judged against the floor of another equation.
    """
    from physgen.problem import file_sha256, load

    recorded = ref_ds.attrs.get("problem_sha256")
    if recorded and Path(name).is_file() and file_sha256(name) != str(recorded):
        raise ValueError(
            f"{name}: its SHA-256 {file_sha256(name)[:12]}… differs from the "
            f"{str(recorded)[:12]}… of the problem file that generated {ref_path} "
            f"({ref_ds.attrs.get('problem_file', 'path not recorded')})"
        )
    return load(name, **_reference_params(name, ref_ds, ref_path))


def _check_hint(name: str, ref_path: Path) -> None:
    """Refuse a reference file's ``problem`` attribute that is not a registered problem's name.

    The attribute is data, so it may only name a registered problem: a path, a ``..`` or a
    name whose module resolves outside the problems folder is refused before anything is
    imported (importing a module runs its code). A name that matches no problem passes here;
    the residual is then skipped with a note. A problem file of one's own is passed
    explicitly with ``--problem PATH``.
    """
    from physgen.problem import UnregisteredProblemError, registered_problem_path

    try:
        registered_problem_path(name)
    except FileNotFoundError:
        return
    except UnregisteredProblemError as err:
        raise UnregisteredProblemError(
            f"{ref_path}: refusing the 'problem' attribute: {err}; to evaluate the residual "
            "with a problem file, pass --problem PATH explicitly (or --no-residual)"
        ) from None


def _load_hinted_problem(name: str, ref_ds: xr.Dataset, ref_path: Path) -> Any:
    """The registered problem named by a reference file's ``problem`` attribute (checked)."""
    from physgen.problem import load_registered

    _check_hint(name, ref_path)
    return load_registered(name, **_reference_params(name, ref_ds, ref_path))


def _residual_problem(
    problem: Any, gen_ds: xr.Dataset, ref_ds: xr.Dataset, ref_path: Path
) -> tuple[Any, dict[str, Any] | None]:
    """The problem whose residual is evaluated, ``(problem, None)``; else ``(None, note)``
    with a note saying why it is skipped, or ``(None, None)`` when no problem is known.

    ``problem`` is the explicitly chosen (already loaded) problem, or None: then the reference
    file's own ``problem`` attribute is only a hint (files from importers name no physgen
    problem), and a problem it names that cannot be found is skipped with a note.
    """
    if problem is not None:
        return problem, None
    name = ref_ds.attrs.get("problem")
    if not name:
        return None, None
    try:
        loaded = _load_hinted_problem(str(name), ref_ds, ref_path)
    except FileNotFoundError as err:
        source = ref_ds.attrs.get("problem_file")
        note = str(err)
        if source:  # generated by a user's problem file: never run from here
            note = f"the data were generated by the problem file {source}: pass --problem FILE"
        return None, {"problem": str(name), "skipped": note}
    lacking = [c for c in loaded.field_names if c not in gen_ds.data_vars]
    if lacking:  # e.g. a model of the solution alone: no residual to evaluate
        return None, {"problem": loaded.name, "skipped": f"the samples lack fields {lacking}"}
    return loaded, None


def _residual_entry(
    problem: Any, gen_ds: xr.Dataset, ref_ds: xr.Dataset, ref_path: Path, max_samples: int
) -> dict[str, Any] | None:
    """Residual statistics, a note saying why they were skipped, or None (no problem known);
    see :func:`_residual_problem`."""
    loaded, note = _residual_problem(problem, gen_ds, ref_ds, ref_path)
    if loaded is None:
        return note
    try:
        return _residual(loaded, gen_ds, ref_ds, max_samples)
    except NotImplementedError as err:  # e.g. random fields: no equation to satisfy
        return {"problem": loaded.name, "skipped": str(err)}


def _residual(problem: Any, gen_ds: xr.Dataset, ref_ds: xr.Dataset, max_samples: int):
    import numpy as np

    from physgen.metrics import residual_metric

    channels = list(problem.field_names)

    def stack(ds: xr.Dataset, limit: int) -> np.ndarray:
        missing = [c for c in channels if c not in ds.data_vars]
        if missing:
            raise KeyError(f"problem {problem.name!r} needs fields {channels}; missing {missing}")
        arrays = []
        for c in channels:
            da = ds[c]
            if "member" in da.dims:  # every member is a sample of the field
                da = da.transpose("sample", "member", ...).stack(case=("sample", "member"))
                da = da.transpose("case", ...)
            arrays.append(np.asarray(da.values[:limit], dtype=np.float64))
        return np.stack(arrays, axis=1)  # (N, C, [T], *grid)

    result = residual_metric(problem, stack(gen_ds, max_samples), stack(ref_ds, 2 * max_samples))
    source = {}
    if problem.source_file is not None:  # a user's problem file: which one, which bytes
        source = {"problem_file": problem.source_file, "problem_sha256": problem.source_sha256}
    return {"problem": problem.name, **source, **result}


def _figures(name, gen, ref, entry, out, spatial, ensemble, periodic) -> None:
    import numpy as np

    from physgen.metrics import energy_spectrum
    from physgen.plotting import (
        plot_marginals,
        plot_rank_histogram,
        plot_sample_grid,
        plot_spectra,
    )

    if len(spatial) in (1, 2):
        plot_sample_grid(gen, out / f"{name}_samples.png", ref=ref, title=name)
    gen_v = np.asarray(gen.values[:500], dtype=np.float64)
    ref_v = np.asarray(ref.values[:500], dtype=np.float64)
    window = None if periodic else "hann"
    # Domain lengths from the coordinates (n points × spacing), for wavenumbers in 1/length.
    lengths = [
        float(np.ptp(ref[d].values)) * len(ref[d]) / max(len(ref[d]) - 1, 1) for d in spatial
    ]
    units = str(ref[spatial[0]].attrs.get("units", "1"))
    field_units = str(ref.attrs.get("units", ""))
    kw = {"spatial_dims": len(spatial), "window": window, "lengths": lengths}
    k, p_gen = energy_spectrum(gen_v, **kw)
    _, p_ref = energy_spectrum(ref_v, **kw)
    lead = lambda p: tuple(range(p.ndim - 1))  # noqa: E731
    plot_spectra(
        k.numpy(),
        {
            "generated": p_gen.mean(lead(p_gen)).numpy(),
            "reference": p_ref.mean(lead(p_ref)).numpy(),
        },
        out / f"{name}_spectrum.png",
        xlabel=f"wavenumber k [{units}-1]" if units != "1" else "wavenumber k",
        # Parseval: the shell sums add up to the mean square of the field.
        ylabel=f"power P(k) [({field_units})²]" if field_units not in ("", "1") else "power P(k)",
        title=f"{name}: radially averaged power spectrum (mean over samples)",
    )
    plot_marginals(
        {"generated": gen_v, "reference": ref_v},
        out / f"{name}_marginals.png",
        xlabel=str(ref.attrs.get("long_name", name)),
        units=field_units,
        title=f"{name}: pointwise values",
    )
    if ensemble:
        plot_rank_histogram(
            entry["rank_histogram"],
            out / f"{name}_rank_histogram.png",
            title=f"{name}: rank histogram",
        )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3e}" if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4) else f"{v:.4f}"
    return str(v)


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table: value, floor, the floor's spread across splits, value/floor.

    The last column comes from ``compare_to_floor``: "within floor" when
    ``|value − floor| ≤ 2 floor_sd``, the ratio where the floor is distinguishable from 0,
    otherwise "n/a" with ``(value − floor)/floor_sd``.
    """
    from physgen.metrics import compare_to_floor

    rows = [("field", "metric", "value", "floor", "floor sd", "value/floor")]
    for field, entry in result["fields"].items():
        for metric, v in entry.items():
            if metric in ("units", "n", "rank_histogram", "members"):
                continue
            if isinstance(v, dict) and "value" in v:
                # Unbiased estimators (MMD², energy distance) have floors near 0 or below it,
                # where a ratio means nothing: "within floor" or the distance in floor sds.
                ratio = compare_to_floor(v["value"], v["floor"], v.get("floor_std")).text()
                sd = _fmt(v["floor_std"]) if "floor_std" in v else ""
                rows.append((field, metric, _fmt(v["value"]), _fmt(v["floor"]), sd, ratio))
                if "p_value" in v:
                    rows.append((field, "mmd2 p-value", _fmt(v["p_value"]), "", "", ""))
            elif isinstance(v, dict):
                for sub, x in v.items():
                    rows.append((field, f"{metric}[{sub}]", _fmt(x), "", "", ""))
            elif isinstance(v, list):
                rows.append((field, metric, " ".join(_fmt(x) for x in v), "", "", ""))
            else:
                rows.append((field, metric, _fmt(v), "", "", ""))
    features = result.get("feature_distance", {})
    entries = (
        ("feature_frechet", features),
        ("feature_kid", features.get("kid", {})),
        ("physics_feature_frechet", features.get("physics_frechet", {})),
        ("physics_feature_kid", features.get("physics_kid", {})),
    )
    for name, entry in entries:
        if "value" in entry:
            ratio = compare_to_floor(entry["value"], entry["floor"], entry.get("floor_std"))
            sd = _fmt(entry["floor_std"]) if "floor_std" in entry else ""
            values = (_fmt(entry["value"]), _fmt(entry["floor"]), sd, ratio.text())
            rows.append(("(all)", name, *values))
    if "residual" in result and "skipped" not in result["residual"]:
        r = result["residual"]
        name = "pde_residual_relative" if r["relative"] else "pde_residual_rms"
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        rows.append(("(all)", name, _fmt(r["value"]), _fmt(r["floor"]), "", ratio))
    if not any(row[3] for row in rows[1:]):  # ensembles: no floors, so no floor columns
        rows = [row[:3] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    if args.max_samples < 2:
        raise ValueError(f"--max-samples must be ≥ 2, got {args.max_samples}")
    if args.splits < 1:
        raise ValueError(f"--splits must be ≥ 1, got {args.splits}")
    if args.permutations < 0:
        raise ValueError(f"--permutations must be ≥ 0 (0 skips the test), got {args.permutations}")
    given = (args.samples, args.ref, *([args.feature_encoder] if args.feature_encoder else []))
    require_files(*((path, f"no such file: {path}") for path in given))
    out = args.out or args.samples.with_name(f"{args.samples.stem}-evaluation")
    result = evaluate_files(
        args.samples,
        args.ref,
        out=out,
        fields=args.fields,
        problem=args.problem,
        paired=args.paired,
        max_samples=args.max_samples,
        permutations=args.permutations,
        seed=args.seed,
        splits=args.splits,
        figures=not args.no_figures,
        residual=not args.no_residual,
        progress=not args.quiet,
        feature_encoder=args.feature_encoder,
    )
    print(f"{result['mode']} metrics of {args.samples} against {args.ref}")
    bad = result["nonfinite"]
    if bad["count"]:
        dropped = f" ({bad['cases_dropped']} cases left out)" if "cases_dropped" in bad else ""
        print(
            f"non-finite: {bad['count']} of {bad['total']} generated fields "
            f"({100 * bad['fraction']:.1f}%) hold NaN/Inf and are not scored{dropped}"
        )
    if result["mode"] == "lead_time":
        from physgen.emulation.report import format_lead_table

        print(format_lead_table(result))
        print(f"wrote {out / 'lead_times.csv'}")
    else:
        print(format_table(result))
    if "skipped" in result.get("residual", {}):
        print(f"PDE residual skipped ({result['residual']['problem']}): ", end="")
        print(result["residual"]["skipped"])
    if "skipped" in result.get("feature_distance", {}):
        print(f"feature distance skipped: {result['feature_distance']['skipped']}")
    print(f"wrote {out / 'metrics.json'}")
    return 0

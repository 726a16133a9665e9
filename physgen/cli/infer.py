"""``physgen infer CHECKPOINT --task T --obs FILE --n-samples M --out ENS.nc``: posterior ensembles.

The checkpoint's ``metadata`` tells how the model sees data (:func:`inverse_metadata` writes
it): ``fields`` (the task's channels, in order), ``stats`` (per-field ``mean``/``std`` for
z-scoring; absent means raw values), ``grid`` (``shape`` and per-axis ``bc``), and for a
conditional model the ``task`` it was trained for and its ``noise_std``. A conditional model
(built with ``cond_shape``) answers its own task; an unconditional diffusion prior is guided
by any task.

``--obs`` is a physgen-field/1 file. On the model's grid it holds fields from which the
observation is taken (colorization reads the observed channels, sensors read their points,
``srK`` block-averages — with the noise of ``--noise-std``); for ``srK`` it may instead hold
the coarse fields themselves. The ensemble is written as physgen-field/1 with dims
``(sample, member, *grid)``, in physical units, and ``physgen evaluate ENS.nc --ref FILE``
scores it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the command imports torch, the data layer and the solvers when it runs
    import numpy as np
    import torch
    import xarray as xr

    from physgen.data import FieldStats, Normalizer
    from physgen.grids import Grid
    from physgen.inverse import Task

from physgen.cli._catalog import require_files

__all__ = ["inverse_metadata", "register", "run_inference"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "infer",
        help="solve an inverse task: a posterior ensemble per observation",
        description=(
            "Draw posterior ensembles for super-resolution (srK, subK), colorization "
            "(colorize:FIELDS = the fields to infer) or sparse sensors (sensors:N) with a "
            "conditional model or a guided diffusion prior; write them with a 'member' "
            "dimension."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="a physgen checkpoint")
    parser.add_argument(
        "--task", required=True, help="srK[:F], subK[:F], colorize:F, sensors:N, inpaint:F:MASK"
    )
    parser.add_argument("--obs", type=Path, required=True, help="physgen-field/1 observations")
    parser.add_argument("--n-samples", type=int, default=16, help="members per observation")
    parser.add_argument("--out", type=Path, required=True, help="the ensemble file (.nc)")
    parser.add_argument(
        "--noise-std",
        type=float,
        default=None,
        help="observation noise in units of each field's training std (default: the "
        "checkpoint's, else 0)",
    )
    parser.add_argument("--max-cases", type=int, default=None, help="use the first N samples")
    parser.add_argument("--seed", type=int, default=0, help="seed of noise and sensor positions")
    parser.add_argument("--batch-size", type=int, default=256, help="members per model call")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    guided = parser.add_argument_group("guided diffusion prior")
    guided.add_argument("--sampler", default="euler-maruyama", help="reverse-time sampler")
    guided.add_argument("--steps", type=int, default=500, help="sampler steps")
    guided.add_argument(
        "--covariance", default="isotropic", choices=("isotropic", "pgdm", "dps", "exact")
    )
    guided.add_argument("--scale", type=float, default=1.0, help="likelihood-score multiplier")
    guided.add_argument("--pde", help="problem name: add its PDE residual on x̂0 as guidance")
    guided.add_argument("--residual-std", type=float, default=1.0, help="tolerated residual")
    guided.add_argument(
        "--residual-until", type=float, default=None, help="apply the PDE term for t ≤ this"
    )
    parser.set_defaults(handler=_run)


def inverse_metadata(
    fields: list[str],
    grid: Grid,
    stats: Mapping[str, FieldStats] | None = None,
    *,
    task: str | None = None,
    noise_std: float = 0.0,
    sample_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint ``metadata`` that ``physgen infer`` reads (JSON-able)."""
    meta: dict[str, Any] = {
        "fields": list(fields),
        "grid": {"shape": list(grid.shape), "bc": list(grid.bc), "centering": grid.centering},
        "noise_std": float(noise_std),
    }
    if stats is not None:
        meta["stats"] = {f: {"mean": stats[f].mean, "std": stats[f].std} for f in fields}
    if task is not None:
        meta["task"] = task
    if sample_options:
        meta["sample_options"] = dict(sample_options)
    return meta


def _describe(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    """Read ``physgen train``'s metadata (``data``: fields, cond_fields, stats) as ours.

    A model trained on ``fields`` conditioned on the fields ``cond_fields`` answers the task
    ``colorize:<fields>`` (its condition is the observed channels themselves).
    """
    data = meta.get("data")
    if "fields" in meta or not isinstance(data, Mapping):
        return meta
    cond = list(data.get("cond_fields") or [])
    out: dict[str, Any] = {"fields": cond + list(data["fields"]), "stats": data.get("stats")}
    grid_dims = list(data.get("grid_dims") or [])
    if grid_dims and data.get("sample_shape"):
        out["training_grid"] = {
            "dims": grid_dims,
            "shape": list(data["sample_shape"][-len(grid_dims) :]),
            "coords": {d: data["coords"][d] for d in grid_dims if d in data.get("coords", {})},
        }
    if cond:
        out["task"] = "colorize:" + ",".join(data["fields"])
    return out


def _normalizer(meta: Mapping[str, Any], fields: list[str], ndim: int) -> Normalizer:
    from physgen.data import Normalizer

    stats = meta.get("stats")
    if not stats:
        return Normalizer([0.0] * len(fields), [1.0] * len(fields), ndim)
    missing = [f for f in fields if f not in stats]
    if missing:
        raise KeyError(f"checkpoint metadata: no statistics for fields {missing}")
    scale = [stats[f]["std"] if stats[f]["std"] > 0 else 1.0 for f in fields]
    return Normalizer([stats[f]["mean"] for f in fields], scale, ndim)


def _grid(meta: Mapping[str, Any], ds: xr.Dataset, dims: tuple[str, ...]) -> Grid:
    """The model's grid: from the checkpoint, with boundary conditions from the file if need be.

    Checkpoints of ``physgen train`` know the training grid's shape but not its boundary
    conditions or centering; those are read from the observation file's attributes.
    """
    from physgen.grids import Grid

    info = meta.get("grid")
    if info is not None:
        return Grid(tuple(info["shape"]), bc=tuple(info["bc"]), centering=info["centering"])
    trained = meta.get("training_grid")
    shape = tuple(trained["shape"]) if trained else tuple(ds.sizes[d] for d in dims)
    names = tuple(trained["dims"]) if trained else dims
    bc = tuple(str(ds.attrs.get(f"bc_{d}", "dirichlet")) for d in names)
    centering = "node" if ds.attrs.get("grid") == "node" else "cell"
    return Grid(shape, bc=bc, centering=centering)


def _describe_grid(dims: tuple[str, ...], shape: tuple[int, ...]) -> str:
    """``16×16 (x, y)``."""
    return "×".join(map(str, shape)) + f" ({', '.join(dims)})"


def _check_observation_file(
    task: Task, ds: xr.Dataset, obs_path: Path, checkpoint: Path, meta: Mapping[str, Any]
) -> None:
    """Refuse observations whose grid or fields differ from the checkpoint's training data.

    The grid must be the model's (or, for ``srK``/``subK``, its coarse grid) with the same
    dimension names and, where the checkpoint stored them, the same coordinates; the file
    must hold the fields the task observes. Each refusal is one line naming both files.
    """
    import numpy as np

    from physgen.data import field_names
    from physgen.inverse import BlockAverage, Subsample

    dims = tuple(d for d in ("x", "y", "z") if d in ds.dims)
    shape = tuple(ds.sizes[d] for d in dims)
    trained = meta.get("training_grid") or {}
    model_dims = tuple(trained.get("dims") or ("x", "y", "z")[: len(task.grid_shape)])
    model = _describe_grid(model_dims, task.grid_shape)
    allowed = {task.grid_shape: "full"}
    op = task.operator
    if isinstance(op, (BlockAverage, Subsample)):
        coarse = tuple(n // s for n, s in zip(task.grid_shape, op.factor, strict=True))
        allowed.setdefault(coarse, "coarse")
        model += f" or its coarse grid {_describe_grid(model_dims, coarse)} for {task.name}"
    if dims != model_dims or shape not in allowed:
        raise ValueError(
            f"{obs_path}: grid {_describe_grid(dims, shape)} does not match the grid {model} "
            f"of the data {checkpoint} was trained on"
        )
    full = allowed[shape] == "full"
    for d, values in (trained.get("coords") or {}).items():
        if full and d in ds.coords and not _same_axis(ds[d].values, np.asarray(values)):
            found, want = ds[d].values, np.asarray(values)
            raise ValueError(
                f"{obs_path}: coordinate {d!r} runs {found[0]:.6g}..{found[-1]:.6g}, but "
                f"{want[0]:.6g}..{want[-1]:.6g} in the data {checkpoint} was trained on"
            )
    needed = list(task.observed_fields) if full else list(task.fields)
    missing = [f for f in needed if f not in ds.data_vars]
    if missing:
        raise KeyError(
            f"{obs_path}: no field(s) {missing}, which task {task.name!r} observes with "
            f"{checkpoint} (the file has {field_names(ds)}; the model knows {list(task.fields)})"
        )


def _same_axis(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal coordinate axes up to rounding (relative to the axis' extent)."""
    import numpy as np

    if a.shape != b.shape:
        return False
    extent = max(float(np.ptp(b)) if b.size else 0.0, 1e-300)
    return bool(np.allclose(a, b, rtol=0.0, atol=1e-6 * extent))


def _stack(ds: xr.Dataset, names: list[str], source: Path) -> np.ndarray:
    import numpy as np

    from physgen.data import field_names

    missing = [f for f in names if f not in ds.data_vars]
    if missing:
        raise KeyError(f"{source}: no field(s) {missing} (fields: {field_names(ds)})")
    return np.stack([ds[f].values for f in names], axis=1).astype(np.float64)  # (B, C, *grid)


def run_inference(
    checkpoint: Path,
    task_spec: str,
    obs_path: Path,
    out: Path,
    *,
    n_samples: int = 16,
    noise_std: float | None = None,
    max_cases: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: str = "cpu",
    guidance: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> xr.Dataset:
    """Load a checkpoint, observe ``obs_path`` through the task, sample, write ``out``.

    Returns the written ensemble dataset (physical units, dims ``(sample, member, *grid)``).
    The observation file's grid and fields are checked against the checkpoint's training data
    first; ``progress`` shows a bar on stderr, one step per batch of observations.
    """
    import torch
    import xarray as xr

    from physgen.data import open_fields, write_fields
    from physgen.inverse import parse_task, solve
    from physgen.inverse.solve import is_conditional
    from physgen.training import build_model, read_checkpoint

    contents = read_checkpoint(checkpoint)
    meta = _describe(contents.get("metadata") or {})
    if "fields" not in meta:
        raise KeyError(
            f"{checkpoint}: metadata has no 'fields'; it must name the channels the model "
            "works on (see physgen.cli.infer.inverse_metadata)"
        )
    fields = list(meta["fields"])
    ds = open_fields(obs_path, load=True)
    if max_cases is not None:
        ds = ds.isel(sample=slice(0, max_cases))
    grid = _grid(meta, ds, tuple(d for d in ("x", "y", "z") if d in ds.dims))
    noise = float(meta.get("noise_std", 0.0) if noise_std is None else noise_std)
    task = parse_task(task_spec, fields, grid, noise_std=noise, seed=seed)
    _check_observation_file(task, ds, obs_path, checkpoint, meta)
    dims = tuple(d for d in ("x", "y", "z") if d in ds.dims)
    model = build_model(contents, device=device)
    conditional = is_conditional(model)
    if conditional and meta.get("task") not in (None, task_spec):
        raise ValueError(
            f"{checkpoint}: this conditional model was trained for task {meta['task']!r}, "
            f"not {task_spec!r}"
        )
    # A guided prior may model more fields than the task observes; members carry all of them.
    out_fields = list(task.fields) if conditional else fields
    norm = _normalizer(meta, out_fields, grid.ndim)
    y, synthesized = _observations(
        task, ds, obs_path, _normalizer(meta, list(task.fields), grid.ndim), seed
    )
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    options = dict(guidance or {})
    residual = _residual(options.pop("pde", None), ds, out_fields, norm)
    start = time.perf_counter()
    ens = solve(
        model, task, y.to(dev, torch.float32), n_samples, batch_size=batch_size,
        sample_options=meta.get("sample_options"), residual=residual, generator=gen,
        prior_fields=None if conditional else fields, progress=progress, **options,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    bad = (~torch.isfinite(ens.flatten(2))).any(-1).sum().item()
    if bad:
        raise ValueError(
            f"sampling produced NaN/Inf in {bad} of {ens.shape[0] * ens.shape[1]} members; "
            "for guided priors lower --scale, raise --residual-std or use --covariance isotropic"
        )
    phys = norm.denormalize(ens.detach().cpu().double()).numpy()  # (B, M, C, *grid)
    coords = {d: (d, grid.coords(i), {"units": "1", "axis": d.upper()}) for i, d in enumerate(dims)}
    for d in dims:
        if d in ds.coords and ds.sizes[d] == grid.shape[dims.index(d)]:
            coords[d] = ds[d]
    coords["sample"] = ds["sample"]
    data = {}
    for c, f in enumerate(out_fields):
        attrs = dict(ds[f].attrs) if f in ds.data_vars else {}
        data[f] = (("sample", "member", *dims), phys[:, :, c], attrs)
    out_ds = xr.Dataset(data, coords=coords, attrs={"fields": out_fields})
    for key in ("problem", "params_json", *(f"bc_{d}" for d in dims), "grid", "domain"):
        if key in ds.attrs:
            out_ds.attrs[key] = ds.attrs[key]
    provenance = {
        "title": f"posterior ensemble for task {task_spec}",
        "source": "physgen infer",
        "task": task_spec,
        "inferred_fields": list(task.targets),
        "observed_fields": list(task.observed_fields),
        "observation_fraction": task.fraction,
        "noise_std_normalized": noise,
        "observations": str(obs_path),
        "observations_synthesized": int(synthesized),
        "checkpoint": str(checkpoint),
        "model": str(contents.get("model_name")),
        "model_config": json.dumps(contents.get("model_config"), sort_keys=True),
        "method": "conditional" if conditional else "guided",
        "members": n_samples,
        "seed": seed,
        "sampling_seconds": elapsed,
    }
    if not conditional:
        provenance["guidance"] = json.dumps({**options, "pde": residual is not None})
    write_fields(out_ds, out, provenance=provenance)
    return out_ds


def _observations(
    task: Task, ds: xr.Dataset, source: Path, norm: Normalizer, seed: int
) -> tuple[torch.Tensor, bool]:
    """Normalized observations ``(B, *obs)`` and whether they were taken from full fields."""
    import torch

    from physgen.inverse import BlockAverage, Subsample

    grid_dims = tuple(d for d in ("x", "y", "z") if d in ds.dims)
    shape = tuple(ds.sizes[d] for d in grid_dims)
    gen = torch.Generator().manual_seed(seed + 1)
    if shape == task.grid_shape:
        names = list(task.observed_fields)
        values = torch.as_tensor(_stack(ds, names, source))
        full = torch.zeros(values.shape[0], *task.sample_shape, dtype=torch.float64)
        full[:, [task.fields.index(f) for f in names]] = values
        full = norm.normalize(full)
        return task.operator.observe(full, gen), True
    op = task.operator
    if isinstance(op, (BlockAverage, Subsample)):
        coarse = tuple(n // s for n, s in zip(task.grid_shape, op.factor, strict=True))
        if shape == coarse:
            y = norm.normalize(torch.as_tensor(_stack(ds, list(task.fields), source)))
            if op.noise_std > 0:
                y = y + op.noise_std * torch.randn(y.shape, generator=gen, dtype=y.dtype)
            return y, False
        raise ValueError(
            f"{source}: grid {shape} is neither the model grid {task.grid_shape} nor the "
            f"coarse grid {coarse} of task {task.name!r}"
        )
    raise ValueError(f"{source}: grid {shape} differs from the model grid {task.grid_shape}")


def _residual(problem_name: str | None, ds: xr.Dataset, fields: list[str], norm: Normalizer):
    """The PDE residual on normalized fields, for guidance (``None`` without ``--pde``)."""
    if problem_name is None:
        return None
    from physgen.problem import load

    params = json.loads(ds.attrs.get("params_json", "{}"))
    problem = load(problem_name, **params)
    if list(problem.field_names) != fields:
        raise ValueError(
            f"--pde {problem_name}: the problem's fields {list(problem.field_names)} differ "
            f"from the model's {fields}"
        )
    return lambda x: problem.residual(norm.denormalize(x))


def _run(args: argparse.Namespace) -> int:
    if args.n_samples < 2:
        raise ValueError(f"--n-samples must be ≥ 2 for an ensemble, got {args.n_samples}")
    require_files(
        (args.checkpoint, f"no checkpoint file at {args.checkpoint}"),
        (args.obs, f"no such file: {args.obs}"),
    )
    guidance = {
        "sampler": args.sampler,
        "steps": args.steps,
        "covariance": args.covariance,
        "scale": args.scale,
        "pde": args.pde,
        "residual_std": args.residual_std,
        "residual_until": args.residual_until,
    }
    ds = run_inference(
        args.checkpoint, args.task, args.obs, args.out, n_samples=args.n_samples,
        noise_std=args.noise_std, max_cases=args.max_cases, seed=args.seed,
        batch_size=args.batch_size, device=args.device, guidance=guidance,
        progress=not args.quiet,
    )  # fmt: skip
    print(
        f"wrote {args.out}: {ds.sizes['sample']} observations × {args.n_samples} members of "
        f"{list(ds.attrs['fields'])} ({args.task})"
    )
    return 0

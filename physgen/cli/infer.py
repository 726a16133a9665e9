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
from typing import Any

import numpy as np
import torch
import xarray as xr

from physgen.data import FieldStats, Normalizer, field_names, open_fields, write_fields
from physgen.grids import Grid
from physgen.inverse import BlockAverage, Subsample, Task, parse_task, solve
from physgen.inverse.solve import is_conditional

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
    parser.add_argument("--task", required=True, help="srK[:F], subK[:F], colorize:F, sensors:N")
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
    guided = parser.add_argument_group("guided diffusion prior")
    guided.add_argument("--sampler", default="euler-maruyama", help="reverse-time sampler")
    guided.add_argument("--steps", type=int, default=500, help="sampler steps")
    guided.add_argument("--covariance", default="pgdm", choices=("pgdm", "dps", "exact"))
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


def _normalizer(meta: Mapping[str, Any], fields: list[str], ndim: int) -> Normalizer:
    stats = meta.get("stats")
    if stats is None:
        return Normalizer([0.0] * len(fields), [1.0] * len(fields), ndim)
    missing = [f for f in fields if f not in stats]
    if missing:
        raise KeyError(f"checkpoint metadata: no statistics for fields {missing}")
    scale = [stats[f]["std"] if stats[f]["std"] > 0 else 1.0 for f in fields]
    return Normalizer([stats[f]["mean"] for f in fields], scale, ndim)


def _grid(meta: Mapping[str, Any], ds: xr.Dataset, dims: tuple[str, ...]) -> Grid:
    info = meta.get("grid")
    if info is not None:
        return Grid(tuple(info["shape"]), bc=tuple(info["bc"]), centering=info["centering"])
    bc = tuple(str(ds.attrs.get(f"bc_{d}", "dirichlet")) for d in dims)
    centering = "node" if ds.attrs.get("grid") == "node" else "cell"
    return Grid(tuple(ds.sizes[d] for d in dims), bc=bc, centering=centering)


def _stack(ds: xr.Dataset, names: list[str], source: Path) -> np.ndarray:
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
) -> xr.Dataset:
    """Load a checkpoint, observe ``obs_path`` through the task, sample, write ``out``.

    Returns the written ensemble dataset (physical units, dims ``(sample, member, *grid)``).
    """
    from physgen.training import build_model, read_checkpoint

    contents = read_checkpoint(checkpoint)
    meta = contents.get("metadata") or {}
    if "fields" not in meta:
        raise KeyError(
            f"{checkpoint}: metadata has no 'fields'; it must name the channels the model "
            "works on (see physgen.cli.infer.inverse_metadata)"
        )
    model = build_model(contents, device=device)
    fields = list(meta["fields"])
    ds = open_fields(obs_path, load=True)
    if max_cases is not None:
        ds = ds.isel(sample=slice(0, max_cases))
    dims = tuple(d for d in ("x", "y", "z") if d in ds.dims)
    grid = _grid(meta, ds, dims)
    noise = float(meta.get("noise_std", 0.0) if noise_std is None else noise_std)
    task = parse_task(task_spec, fields, grid, noise_std=noise, seed=seed)
    conditional = is_conditional(model)
    if conditional and meta.get("task") not in (None, task_spec):
        raise ValueError(
            f"{checkpoint}: this conditional model was trained for task {meta['task']!r}, "
            f"not {task_spec!r}"
        )
    norm = _normalizer(meta, list(task.fields), grid.ndim)
    y, synthesized = _observations(task, ds, obs_path, norm, seed)
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    options = dict(guidance or {})
    residual = _residual(options.pop("pde", None), ds, task, norm)
    start = time.perf_counter()
    ens = solve(
        model, task, y.to(dev, torch.float32), n_samples, batch_size=batch_size,
        sample_options=meta.get("sample_options"), residual=residual, generator=gen, **options,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    phys = norm.denormalize(ens.detach().cpu().double()).numpy()  # (B, M, C, *grid)
    coords = {d: (d, grid.coords(i), {"units": "1", "axis": d.upper()}) for i, d in enumerate(dims)}
    for d in dims:
        if d in ds.coords and ds.sizes[d] == grid.shape[dims.index(d)]:
            coords[d] = ds[d]
    coords["sample"] = ds["sample"]
    data = {}
    for c, f in enumerate(task.fields):
        attrs = dict(ds[f].attrs) if f in ds.data_vars else {}
        data[f] = (("sample", "member", *dims), phys[:, :, c], attrs)
    out_ds = xr.Dataset(data, coords=coords, attrs={"fields": list(task.fields)})
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


def _residual(problem_name: str | None, ds: xr.Dataset, task: Task, norm: Normalizer):
    """The PDE residual on normalized fields, for guidance (``None`` without ``--pde``)."""
    if problem_name is None:
        return None
    from physgen.problem import load

    params = json.loads(ds.attrs.get("params_json", "{}"))
    problem = load(problem_name, **params)
    if tuple(problem.field_names) != task.fields:
        raise ValueError(
            f"--pde {problem_name}: the problem's fields {list(problem.field_names)} differ "
            f"from the task's {list(task.fields)}"
        )
    return lambda x: problem.residual(norm.denormalize(x))


def _run(args: argparse.Namespace) -> int:
    if args.n_samples < 2:
        raise ValueError(f"--n-samples must be ≥ 2 for an ensemble, got {args.n_samples}")
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
    )  # fmt: skip
    print(
        f"wrote {args.out}: {ds.sizes['sample']} observations × {args.n_samples} members of "
        f"{list(ds.attrs['fields'])} ({args.task})"
    )
    return 0

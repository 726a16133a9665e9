"""Importers: PDEBench HDF5, The Well HDF5 and FNO ``.mat`` files → physgen-field/1.

Each ``read_*`` function returns an in-memory ``xarray.Dataset`` with named dims
``(sample, [time], x[, y[, z]])`` and coordinates; :func:`import_fields` also writes it with
:func:`~physgen.data.write_fields` (atomically, so a failed import leaves no output). The source
file is read through h5py (or scipy for MATLAB v5) one selected block at a time; pass
``samples=slice(...)`` to import part of a file that does not fit in memory.

Key maps (source → physgen variable):

- PDEBench single-array: ``tensor`` ``(N, nt, *grid)`` → ``u``; Darcy ``nu`` → ``a`` and
  ``tensor[:, 0]`` → ``u``; CFD ``density, pressure, Vx, Vy, Vz`` → ``rho, p, vx, vy, vz``;
  ``{x,y,z}-coordinate`` → ``x, y, z``; ``t-coordinate[:nt]`` → ``time`` (PDEBench stores nt+1
  times for nt frames). Seed groups ``/NNNN/data`` ``(t, *grid, c)`` → one variable per channel,
  coordinates from ``/NNNN/grid``, ``sample`` and ``seed`` ← int(NNNN).
- The Well: ``t0_fields/F`` → ``F``; ``t1_fields/V[..., d]`` → ``V_x, V_y, V_z``;
  ``t2_fields/S[..., i, j]`` → ``S_xx, S_xy, ...``; coordinates from ``dimensions/``;
  ``boundary_conditions/*/@bc_type`` → ``bc_x, bc_y``; ``scalars/*`` → global attributes
  (constants) or per-sample variables; missing ``sample_varying``/``time_varying``/
  ``dim_varying`` flags default to True.
- FNO ``.mat``: Navier–Stokes ``u`` (N, s, s, T), time last → ``w`` (N, T, s, s), ``a`` → ``w0``,
  ``t`` → ``time``; Darcy ``coeff, sol`` → ``a, u`` on the node grid of [0, 1]²; Burgers
  ``a, u`` (N, s) → ``a, u`` on the periodic grid of [0, 1). MATLAB v7.3 files are HDF5 with
  every array stored axis-reversed; they are read through h5py and transposed back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.io
import xarray as xr

from physgen.data.fields import (
    SAMPLE_DIM,
    SPATIAL_DIMS,
    TIME_DIM,
    FieldFileError,
    check_hdf5_file,
    write_fields,
)

__all__ = [
    "READERS",
    "import_fields",
    "read_fno",
    "read_pdebench",
    "read_well",
]

_PDEBENCH_CFD = {"density": "rho", "pressure": "p", "Vx": "vx", "Vy": "vy", "Vz": "vz"}
_PDEBENCH_CFD_NAMES = {"rho": "density", "p": "pressure", "vx": "x-velocity", "vy": "y-velocity"}


# -- shared helpers ---------------------------------------------------------------------------
def _open_hdf5(src: Path) -> h5py.File:
    check_hdf5_file(src)
    try:
        return h5py.File(src, "r")
    except OSError as err:
        defect = f"cannot be read as HDF5 (truncated or corrupt?): {err}"
        raise FieldFileError(src, defect) from None


def _dataset(group: h5py.Group, key: str, src: Path) -> h5py.Dataset:
    if key not in group or not isinstance(group[key], h5py.Dataset):
        where = group.name.rstrip("/") + "/" + key
        raise FieldFileError(src, f"missing dataset {where!r} (found: {sorted(group.keys())})")
    return group[key]


def _read(obj: h5py.Dataset, index: Any, src: Path) -> np.ndarray:
    try:
        return np.asarray(obj[index])
    except (OSError, RuntimeError) as err:
        raise FieldFileError(src, f"cannot read {obj.name!r} (truncated?): {err}") from None


def _axis(values: np.ndarray, n: int, name: str, what: str, src: Path) -> np.ndarray:
    """A 1-D coordinate of length ``n`` (longer ones are cut: PDEBench stores nt+1 times)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size < n:
        defect = f"{what} has {values.size} values, the data need {n} for {name!r}"
        raise FieldFileError(src, defect)
    return values[:n]


def _attr_value(value: Any) -> Any:
    """h5py attribute → plain Python (bytes decoded, numpy scalars unwrapped)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_attr_value(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _attrs(obj: h5py.HLObject) -> dict[str, Any]:
    return {k: _attr_value(v) for k, v in obj.attrs.items()}


def _coords(sizes: Mapping[str, int], values: Mapping[str, np.ndarray]) -> dict[str, Any]:
    coords: dict[str, Any] = {}
    for dim in (TIME_DIM, *SPATIAL_DIMS):
        if dim in sizes:
            coords[dim] = (dim, values[dim], {"units": "1", "long_name": dim})
    return coords


def _provenance(kind: str, src: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "source": kind,
        "source_file": src.name,
        "params_json": json.dumps(dict(params), sort_keys=True, default=str),
    }


def _select(n: int, samples: slice | None) -> range:
    return range(n)[samples] if samples is not None else range(n)


def _as_index(selection: range) -> slice:
    return slice(selection.start, selection.stop, selection.step)


# -- PDEBench ---------------------------------------------------------------------------------
def read_pdebench(
    src: str | os.PathLike[str],
    *,
    samples: slice | None = None,
    channel_names: Sequence[str] | None = None,
) -> xr.Dataset:
    """Read a PDEBench HDF5 file (any of its layouts, detected from the keys).

    Args:
        src: the ``.hdf5``/``.h5`` file.
        samples: the samples to import (default: all).
        channel_names: names of the channels of seed-group files (default ``u``; ``u, v``).

    Returns:
        The fields with dims ``(sample, [time], x[, y[, z]])``; root attributes of the file
        (``Nu``, ``beta``, ...) become global attributes and ``params_json``.
    """
    src = Path(src)
    with _open_hdf5(src) as f:
        keys = set(f.keys())
        if keys and all(k.isdigit() for k in keys):
            ds = _pdebench_seed_groups(f, src, samples, channel_names)
        elif "tensor" in keys and "nu" in keys:
            ds = _pdebench_darcy(f, src, samples)
        elif "tensor" in keys:
            ds = _pdebench_arrays(f, src, samples, {"tensor": "u"})
        elif keys & set(_PDEBENCH_CFD):
            names = {k: v for k, v in _PDEBENCH_CFD.items() if k in keys}
            ds = _pdebench_arrays(f, src, samples, names)
        else:
            raise FieldFileError(
                src,
                "no PDEBench layout recognized: expected 'tensor', 'tensor'+'nu', CFD keys "
                f"{sorted(_PDEBENCH_CFD)} or seed groups '0000', ... (found: {sorted(keys)})",
            )
        params = _attrs(f)
    ds.attrs.update(params)
    ds.attrs.update(_provenance("PDEBench", src, params))
    return ds


def _pdebench_grid(f: h5py.Group, src: Path, shape: Sequence[int]) -> dict[str, np.ndarray]:
    """Spatial coordinates ``x, y, z`` for a grid of ``shape`` from ``{x,y,z}-coordinate``."""
    out = {}
    for dim, n in zip(SPATIAL_DIMS, shape, strict=False):
        key = f"{dim}-coordinate"
        out[dim] = np.asarray(_read(_dataset(f, key, src), (), src), dtype=np.float64).ravel()
        if out[dim].size != n:
            raise FieldFileError(src, f"{key!r} has {out[dim].size} values, the grid has {n}")
    return out


def _pdebench_arrays(
    f: h5py.File, src: Path, samples: slice | None, names: Mapping[str, str]
) -> xr.Dataset:
    """``tensor`` or the CFD keys: arrays (N, nt, *grid), all of one shape."""
    first = _dataset(f, next(iter(names)), src)
    shape = first.shape
    n_space = sum(f"{d}-coordinate" in f for d in SPATIAL_DIMS)
    if n_space == 0 or len(shape) != 2 + n_space:
        raise FieldFileError(
            src,
            f"{first.name!r} has shape {shape}; expected (sample, time, *grid) with one grid axis "
            f"per '{{x,y,z}}-coordinate' ({n_space} found)",
        )
    grid = SPATIAL_DIMS[:n_space]
    dims = (SAMPLE_DIM, TIME_DIM, *grid)
    coords = _pdebench_grid(f, src, shape[2:])
    coords[TIME_DIM] = _axis(
        _read(_dataset(f, "t-coordinate", src), (), src), shape[1], "time", "'t-coordinate'", src
    )
    rows = _as_index(_select(shape[0], samples))
    data = {}
    for key, name in names.items():
        var = _dataset(f, key, src)
        if var.shape != shape:
            raise FieldFileError(src, f"{key!r} has shape {var.shape}, {first.name!r} {shape}")
        attrs = {"units": "1", "long_name": _PDEBENCH_CFD_NAMES.get(name, name)}
        data[name] = (dims, _read(var, rows, src), attrs)
    ds = xr.Dataset(data, coords=_coords(dict(zip(dims, shape, strict=True)), coords))
    return ds.assign_coords(sample=np.arange(shape[0], dtype=np.int64)[rows])


def _pdebench_darcy(f: h5py.File, src: Path, samples: slice | None) -> xr.Dataset:
    """Darcy: ``nu`` (N, nx, ny) is the coefficient a, ``tensor`` (N, 1, nx, ny) the solution."""
    a, u = _dataset(f, "nu", src), _dataset(f, "tensor", src)
    if a.ndim != 3 or u.shape != (a.shape[0], 1, *a.shape[1:]):
        raise FieldFileError(
            src,
            f"Darcy layout needs 'nu' (N, nx, ny) and 'tensor' (N, 1, nx, ny); "
            f"found {a.shape} and {u.shape}",
        )
    rows = _as_index(_select(a.shape[0], samples))
    dims = (SAMPLE_DIM, "x", "y")
    coords = _pdebench_grid(f, src, a.shape[1:])
    ds = xr.Dataset(
        {
            "a": (dims, _read(a, rows, src), {"units": "1", "long_name": "diffusion coefficient"}),
            "u": (dims, _read(u, (rows, 0), src), {"units": "1", "long_name": "solution"}),
        },
        coords=_coords({"x": a.shape[1], "y": a.shape[2]}, coords),
    )
    return ds.assign_coords(sample=np.arange(a.shape[0], dtype=np.int64)[rows])


def _pdebench_seed_groups(
    f: h5py.File, src: Path, samples: slice | None, channel_names: Sequence[str] | None
) -> xr.Dataset:
    """Seed groups ``/NNNN/data`` ``(t, *grid, c)`` with ``/NNNN/grid/{x,y,z,t}``, sorted by key."""
    keys = sorted(f.keys())
    chosen = [keys[i] for i in _select(len(keys), samples)]
    first = _dataset(f[keys[0]], "data", src)
    shape = first.shape
    n_space = len(shape) - 2
    if not 1 <= n_space <= 3:
        raise FieldFileError(src, f"'{keys[0]}/data' has shape {shape}; expected (t, *grid, c)")
    n_chan = shape[-1]
    defaults = {1: ["u"], 2: ["u", "v"]}.get(n_chan, [f"u{c}" for c in range(n_chan)])
    names = list(channel_names) if channel_names is not None else defaults
    if len(names) != n_chan:
        raise ValueError(f"{src}: data have {n_chan} channels but {len(names)} names: {names}")
    grid_group = f[keys[0]].get("grid")
    if not isinstance(grid_group, h5py.Group):
        raise FieldFileError(src, f"missing group '{keys[0]}/grid'")
    grid = SPATIAL_DIMS[:n_space]
    values = {}
    for dim, n in zip((TIME_DIM, *grid), shape[:-1], strict=True):
        key = "t" if dim == TIME_DIM else dim
        raw = _read(_dataset(grid_group, key, src), (), src)
        values[dim] = _axis(raw, n, dim, f"'{keys[0]}/grid/{key}'", src)
        if dim != TIME_DIM and values[dim].size != np.asarray(raw).size:
            raise FieldFileError(src, f"'{keys[0]}/grid/{key}' has {np.size(raw)} values, not {n}")
    stack = np.empty((len(chosen), *shape), dtype=first.dtype)  # (N, t, *grid, c)
    for i, key in enumerate(chosen):
        data = _dataset(f[key], "data", src)
        if data.shape != shape:
            raise FieldFileError(src, f"'{key}/data' has shape {data.shape}, '{keys[0]}' {shape}")
        stack[i] = _read(data, (), src)
    dims = (SAMPLE_DIM, TIME_DIM, *grid)
    sizes = dict(zip((TIME_DIM, *grid), shape[:-1], strict=True))
    seeds = np.array([int(k) for k in chosen], dtype=np.int64)
    data_vars: dict[str, Any] = {
        name: (dims, stack[..., c], {"units": "1", "long_name": name})
        for c, name in enumerate(names)
    }
    data_vars["seed"] = ((SAMPLE_DIM,), seeds)
    ds = xr.Dataset(data_vars, coords=_coords(sizes, values))
    ds = ds.assign_coords(sample=seeds)
    config = f[keys[0]].attrs.get("config")
    if config is not None:
        ds.attrs["config"] = _attr_value(config)
    return ds


# -- The Well ---------------------------------------------------------------------------------
def _flag(obj: h5py.HLObject, name: str, default: Any = True) -> Any:
    """A Well flag attribute, defaulting when the writer left it out."""
    return _attr_value(obj.attrs[name]) if name in obj.attrs else default


def read_well(src: str | os.PathLike[str], *, samples: slice | None = None) -> xr.Dataset:
    """Read a The Well HDF5 file (cartesian grids).

    Scalar fields keep their names; vector and tensor fields split into components named
    after the spatial dims (``velocity_x``, ``stress_xy``). Fields constant across samples
    are repeated for each sample, fields constant in time have no ``time`` dim, and spatial
    axes a field does not vary along (``dim_varying``) are broadcast to the grid.
    """
    src = Path(src)
    with _open_hdf5(src) as f:
        root = _attrs(f)
        grid_type = root.get("grid_type", "cartesian")
        if grid_type != "cartesian":
            raise FieldFileError(src, f"grid_type {grid_type!r} is not supported (cartesian only)")
        if "dimensions" not in f:
            raise FieldFileError(src, f"missing group 'dimensions' (found: {sorted(f.keys())})")
        dim_group = f["dimensions"]
        source_dims = [str(d) for d in _flag(dim_group, "spatial_dims", None) or []]
        if not 1 <= len(source_dims) <= 3:
            raise FieldFileError(src, f"dimensions/@spatial_dims is {source_dims!r}")
        grid = SPATIAL_DIMS[: len(source_dims)]
        values = {
            d: _well_axis(_dataset(dim_group, s, src), src)
            for d, s in zip(grid, source_dims, strict=True)
        }
        if "time" in dim_group:
            values[TIME_DIM] = _well_axis(_dataset(dim_group, "time", src), src)
        n_total = int(root.get("n_trajectories", 0)) or _well_count(f, src)
        rows = _select(n_total, samples)
        data: dict[str, Any] = {}
        for rank in (0, 1, 2):
            group = f.get(f"t{rank}_fields")
            if group is None:
                continue
            for name in [str(n) for n in _flag(group, "field_names", None) or group.keys()]:
                var = _dataset(group, name, src)
                array, dims = _well_field(var, rank, grid, values, n_total, rows, src)
                for suffix, component in _components(array, rank, grid, source_dims, name, src):
                    full = f"{name}_{suffix}" if suffix else name
                    data[full] = (dims, component, {"units": "1", "long_name": full})
        if not data:
            raise FieldFileError(src, "no fields in t0_fields, t1_fields or t2_fields")
        params = {str(p): root.get(str(p)) for p in root.get("simulation_parameters", []) or []}
        per_sample = _well_scalars(f, rows, n_total, params)
        bcs = _well_bcs(f, dict(zip(source_dims, grid, strict=True)))
    sizes = {d: values[d].size for d in values}
    ds = xr.Dataset(data, coords=_coords(sizes, values))
    ds = ds.assign_coords(sample=np.arange(n_total, dtype=np.int64)[_as_index(rows)])
    for name, column in per_sample.items():
        ds[name] = ((SAMPLE_DIM,), column)
    ds.attrs.update({k: v for k, v in params.items() if v is not None})
    ds.attrs.update(bcs)
    ds.attrs["source_dims"] = source_dims
    if "dataset_name" in root:
        ds.attrs["title"] = str(root["dataset_name"])
    ds.attrs.update(_provenance("The Well", src, params))
    return ds


def _well_axis(var: h5py.Dataset, src: Path) -> np.ndarray:
    values = _read(var, (), src)
    if values.ndim == 2:  # sample-varying coordinate: representable only if all rows agree
        if not np.all(values == values[:1]):
            raise FieldFileError(src, f"{var.name!r} differs between samples; not supported")
        values = values[0]
    return np.asarray(values, dtype=np.float64).ravel()


def _well_count(f: h5py.File, src: Path) -> int:
    for rank in (0, 1, 2):
        group = f.get(f"t{rank}_fields")
        for name in group.keys() if group is not None else ():
            if _flag(group[name], "sample_varying"):
                return int(group[name].shape[0])
    raise FieldFileError(src, "cannot tell the number of trajectories (no @n_trajectories)")


def _well_field(
    var: h5py.Dataset,
    rank: int,
    grid: tuple[str, ...],
    values: Mapping[str, np.ndarray],
    n_total: int,
    rows: range,
    src: Path,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Read one field and broadcast it to ``(sample, [time], *grid, *components)``."""
    sample_varying = bool(_flag(var, "sample_varying"))
    time_varying = bool(_flag(var, "time_varying"))
    dim_varying = [bool(v) for v in np.atleast_1d(_flag(var, "dim_varying", [True] * len(grid)))]
    n_comp = var.ndim - int(sample_varying) - int(time_varying) - sum(dim_varying)
    if len(dim_varying) != len(grid) or n_comp not in ({0: (0,), 1: (1,), 2: (1, 2)}[rank]):
        raise FieldFileError(
            src,
            f"{var.name!r} has shape {var.shape}, which disagrees with its flags "
            f"(sample_varying={sample_varying}, time_varying={time_varying}, "
            f"dim_varying={dim_varying}) for a rank-{rank} field on {len(grid)} spatial dims",
        )
    if time_varying and TIME_DIM not in values:
        raise FieldFileError(src, f"{var.name!r} varies in time but dimensions/time is missing")
    array = _read(var, _as_index(rows) if sample_varying else (), src)
    if not sample_varying:
        array = array[None]  # (1, ...): one field shared by every sample
    axis = 1 + int(time_varying)
    for varying in dim_varying:
        if not varying:
            array = np.expand_dims(array, axis)  # broadcast along this spatial axis
        axis += 1
    times = [values[TIME_DIM].size] if time_varying else []
    target = (len(rows), *times, *(values[d].size for d in grid), *array.shape[axis:])
    try:
        array = np.broadcast_to(array, target).copy()
    except ValueError:
        raise FieldFileError(
            src, f"{var.name!r} has shape {var.shape}, which does not fit the grid {target}"
        ) from None
    dims = (SAMPLE_DIM, *((TIME_DIM,) if time_varying else ()), *grid)
    return array, dims


def _components(
    array: np.ndarray,
    rank: int,
    grid: tuple[str, ...],
    source_dims: Sequence[str],
    name: str,
    src: Path,
) -> Iterable[tuple[str, np.ndarray]]:
    """Split vector (…, D) and tensor (…, D, D) or (…, D²) fields into named components."""
    if rank == 0:
        yield "", array
        return
    d = len(grid)
    if rank == 2 and array.shape[-1] == d * d and array.shape[-2:] != (d, d):
        array = array.reshape(*array.shape[:-1], d, d)  # (…, D²) → (…, D, D)
    comp_shape = array.shape[array.ndim - rank :]
    if comp_shape != (d,) * rank:
        raise FieldFileError(src, f"field {name!r} has components {comp_shape}, expected D={d}")
    if rank == 1:
        for i, dim in enumerate(grid):
            yield dim, array[..., i]
    else:
        for i, di in enumerate(grid):
            for j, dj in enumerate(grid):
                yield di + dj, array[..., i, j]


def _well_scalars(
    f: h5py.File, rows: range, n_total: int, params: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Constant scalars join ``params``; per-sample scalars become ``(sample,)`` variables."""
    per_sample: dict[str, np.ndarray] = {}
    group = f.get("scalars")
    for name in group.keys() if group is not None else ():
        value = np.asarray(group[name][()])
        if value.ndim == 0:
            params[name] = value.item()
        elif value.shape == (n_total,):
            per_sample[name] = value[_as_index(rows)].astype(np.float64)
    return per_sample


def _well_bcs(f: h5py.File, to_physgen: Mapping[str, str]) -> dict[str, str]:
    """``bc_x = "periodic" | "wall" | "open"`` from ``boundary_conditions/*``."""
    out: dict[str, str] = {}
    group = f.get("boundary_conditions")
    for name in group.keys() if group is not None else ():
        attrs = _attrs(group[name])
        kind = str(attrs.get("bc_type", "")).lower()
        dims = attrs.get("associated_dims", [])
        for dim in [dims] if isinstance(dims, str) else dims:
            if kind and dim in to_physgen:
                out[f"bc_{to_physgen[dim]}"] = kind
    return out


# -- FNO .mat ---------------------------------------------------------------------------------
def _load_mat(src: Path) -> dict[str, np.ndarray]:
    """Arrays of a MATLAB file in MATLAB's axis order (v7.3 through h5py, else scipy)."""
    if not src.exists():
        raise FileNotFoundError(f"no such file: {src}")
    if h5py.is_hdf5(src):
        with _open_hdf5(src) as f:
            # MATLAB v7.3 writes column-major arrays; h5py sees every axis reversed.
            return {
                k: np.transpose(_read(v, (), src))
                for k, v in f.items()
                if isinstance(v, h5py.Dataset) and not k.startswith("#")
            }
    try:
        raw = scipy.io.loadmat(src)
    except Exception as err:  # scipy raises MatReadError, ValueError, IndexError... on junk
        raise FieldFileError(src, f"not a MATLAB .mat file ({err})") from None
    return {k: np.asarray(v) for k, v in raw.items() if not k.startswith("__")}


def read_fno(
    src: str | os.PathLike[str], *, samples: slice | None = None, subsample: int = 1
) -> xr.Dataset:
    """Read an FNO ``.mat`` file (Navier–Stokes, Darcy or Burgers, detected from the keys).

    Args:
        src: the ``.mat`` file (v5 or v7.3).
        samples: the samples to import (default: all).
        subsample: keep every ``subsample``-th grid point (FNO's ``r``; e.g. 421 → 211 at 2).
    """
    src = Path(src)
    if subsample < 1:
        raise ValueError(f"subsample must be >= 1, got {subsample}")
    arrays = _load_mat(src)
    keys = sorted(arrays)
    if {"coeff", "sol"} <= arrays.keys():
        ds = _fno_darcy(arrays, src)
    elif {"a", "u"} <= arrays.keys() and arrays["u"].ndim == 4:
        ds = _fno_navier_stokes(arrays, src)
    elif {"a", "u"} <= arrays.keys() and arrays["u"].ndim == 2:
        ds = _fno_burgers(arrays, src)
    else:
        raise FieldFileError(
            src,
            "no FNO layout recognized: expected 'coeff'+'sol' (Darcy), 'a'+'u' with u "
            f"(N, s, s, T) (Navier–Stokes) or u (N, s) (Burgers); found {keys} with shapes "
            f"{ {k: arrays[k].shape for k in keys} }",
        )
    ds = ds.assign_coords(sample=np.arange(ds.sizes[SAMPLE_DIM], dtype=np.int64))
    ds = ds.isel({d: slice(None, None, subsample) for d in SPATIAL_DIMS if d in ds.dims})
    ds = ds.isel(sample=_as_index(_select(ds.sizes[SAMPLE_DIM], samples)))
    ds.attrs.update(_provenance("FNO", src, {"subsample": subsample}))
    return ds


def _fno_same_samples(src: Path, **arrays: np.ndarray) -> None:
    shapes = {k: v.shape for k, v in arrays.items()}
    if len({v.shape[0] for v in arrays.values()}) != 1:
        raise FieldFileError(src, f"arrays disagree on the number of samples: {shapes}")


def _fno_navier_stokes(arrays: Mapping[str, np.ndarray], src: Path) -> xr.Dataset:
    w0, w = arrays["a"], arrays["u"]
    _fno_same_samples(src, a=w0, u=w)
    n, s1, s2, n_t = w.shape
    if w0.shape != (n, s1, s2):
        raise FieldFileError(src, f"'a' has shape {w0.shape}, expected {(n, s1, s2)} from 'u'")
    time = _axis(arrays["t"], n_t, "time", "'t'", src) if "t" in arrays else np.arange(1.0, n_t + 1)
    periodic = {d: np.arange(m) / m for d, m in (("x", s1), ("y", s2))}
    dims = (SAMPLE_DIM, TIME_DIM, "x", "y")
    return xr.Dataset(
        {
            "w": (dims, np.moveaxis(w, -1, 1), {"units": "1", "long_name": "vorticity"}),
            "w0": (dims[:1] + dims[2:], w0, {"units": "1", "long_name": "initial vorticity"}),
        },
        coords=_coords({"time": n_t, "x": s1, "y": s2}, {**periodic, TIME_DIM: time}),
        attrs={"bc_x": "periodic", "bc_y": "periodic", "grid": "node"},
    )


def _fno_darcy(arrays: Mapping[str, np.ndarray], src: Path) -> xr.Dataset:
    a, u = arrays["coeff"], arrays["sol"]
    _fno_same_samples(src, coeff=a, sol=u)
    if a.ndim != 3 or a.shape != u.shape:
        raise FieldFileError(src, f"'coeff' {a.shape} and 'sol' {u.shape} must be (N, s, s)")
    dims = (SAMPLE_DIM, "x", "y")
    nodes = {d: np.linspace(0.0, 1.0, m) for d, m in (("x", a.shape[1]), ("y", a.shape[2]))}
    return xr.Dataset(
        {
            "a": (dims, a, {"units": "1", "long_name": "diffusion coefficient"}),
            "u": (dims, u, {"units": "1", "long_name": "solution"}),
        },
        coords=_coords({"x": a.shape[1], "y": a.shape[2]}, nodes),
        attrs={"bc_x": "dirichlet", "bc_y": "dirichlet", "grid": "node"},
    )


def _fno_burgers(arrays: Mapping[str, np.ndarray], src: Path) -> xr.Dataset:
    a, u = arrays["a"], arrays["u"]
    _fno_same_samples(src, a=a, u=u)
    if a.shape != u.shape:
        raise FieldFileError(src, f"'a' {a.shape} and 'u' {u.shape} must both be (N, s)")
    s = a.shape[1]
    dims = (SAMPLE_DIM, "x")
    return xr.Dataset(
        {
            "a": (dims, a, {"units": "1", "long_name": "initial condition"}),
            "u": (dims, u, {"units": "1", "long_name": "solution"}),
        },
        coords=_coords({"x": s}, {"x": np.arange(s) / s}),
        attrs={"bc_x": "periodic", "grid": "node"},
    )


# -- writing ----------------------------------------------------------------------------------
READERS: dict[str, Callable[..., xr.Dataset]] = {
    "pdebench": read_pdebench,
    "well": read_well,
    "fno": read_fno,
}


def import_fields(
    kind: str, src: str | os.PathLike[str], dst: str | os.PathLike[str], **options: Any
) -> Path:
    """Convert ``src`` (a ``kind`` file: ``pdebench``, ``well`` or ``fno``) to physgen-field/1.

    ``options`` go to the reader (``samples``, ``channel_names``, ``subsample``). The output is
    written atomically: when reading or writing fails, nothing exists under ``dst``.

    Example:
        >>> import_fields("fno", "ns_data.mat", "ns.nc", samples=slice(0, 100))  # doctest: +SKIP
    """
    if kind not in READERS:
        raise ValueError(f"unknown importer {kind!r}; expected one of {', '.join(READERS)}")
    return write_fields(READERS[kind](src, **options), dst)

"""PDEBench HDF5 files (single-array, Darcy, CFD and seed-group layouts) → physgen-field/1."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr

from physgen.data.fields import (
    SAMPLE_DIM,
    SPATIAL_DIMS,
    TIME_DIM,
    FieldFileError,
)
from physgen.data.importers._common import (
    _as_index,
    _attr_value,
    _attrs,
    _axis,
    _coords,
    _dataset,
    _open_hdf5,
    _provenance,
    _read,
    _select,
)

__all__ = ["read_pdebench"]

_PDEBENCH_CFD = {"density": "rho", "pressure": "p", "Vx": "vx", "Vy": "vy", "Vz": "vz"}
_PDEBENCH_CFD_NAMES = {"rho": "density", "p": "pressure", "vx": "x-velocity", "vy": "y-velocity"}


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

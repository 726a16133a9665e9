"""The Well HDF5 files → physgen-field/1."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
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
    _coords,
    _dataset,
    _open_hdf5,
    _provenance,
    _read,
    _select,
)

__all__ = ["read_well"]


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

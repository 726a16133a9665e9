"""Helpers shared by the importers: checked HDF5 reads, coordinates and provenance."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from physgen.data.fields import (
    SPATIAL_DIMS,
    TIME_DIM,
    FieldFileError,
    check_hdf5_file,
)

__all__: list[str] = []


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

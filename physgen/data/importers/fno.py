"""FNO ``.mat`` files (Navier–Stokes, Darcy, Burgers; MATLAB v5 and v7.3) → physgen-field/1."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np
import scipy.io
import xarray as xr

from physgen.data.fields import (
    SAMPLE_DIM,
    SPATIAL_DIMS,
    TIME_DIM,
    FieldFileError,
)
from physgen.data.importers._common import (
    _as_index,
    _axis,
    _coords,
    _open_hdf5,
    _provenance,
    _read,
    _select,
)

__all__ = ["read_fno"]


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

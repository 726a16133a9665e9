"""Write a dataset as netCDF-4 through xarray's own encoding, its large arrays slab by slab.

``xarray.Dataset.to_netcdf`` writes every array whole, so writing ``N`` samples needs them
all in memory at once. Here xarray (engine ``h5netcdf``) still encodes the dataset and
creates every variable, dimension and attribute, exactly as ``to_netcdf`` would, but the
variables named in ``slabs`` stand in the dataset as zero-memory placeholders (see
:func:`placeholder`) and their values are written afterwards, block by block of the first
axis, from the iterators ``slabs`` provides. The file is the one ``to_netcdf`` writes for the
same values; peak memory is one slab.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr
from xarray.backends import H5NetCDFStore

try:
    from xarray.backends.writers import dump_to_store
except ImportError:  # xarray before 2025: the same function lived in xarray.backends.api
    from xarray.backends.api import dump_to_store  # type: ignore[no-redef]

__all__ = ["Slabs", "placeholder", "write_netcdf"]

# A variable's values as consecutive slabs along its first axis, produced on demand.
Slabs = Callable[[], Iterable[np.ndarray]]


def placeholder(shape: tuple[int, ...], dtype: npt.DTypeLike) -> np.ndarray:
    """A read-only array of ``shape`` and ``dtype`` holding zeros in one element of memory.

    It stands for a variable whose values :func:`write_netcdf` takes from slabs: xarray sees
    the shape and dtype it must declare, and no memory of that size is ever allocated.
    """
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)


class _Writer:
    """Takes xarray's place of ``ArrayWriter``: small arrays are written at once, streamed
    variables only have their file variables remembered."""

    def __init__(self, streamed: Mapping[str, np.dtype]) -> None:
        self.streamed = dict(streamed)
        self.targets: dict[str, Any] = {}

    def add(self, source: Any, target: Any, region: Any = None) -> None:
        name = getattr(target, "variable_name", None)
        if name in self.streamed:
            # The placeholder must arrive untouched: an encoding that changed its values
            # (scaling, a dtype cast) would have to be applied to the slabs as well.
            untouched = isinstance(source, np.ndarray) and not any(source.strides)
            if not untouched or source.dtype != self.streamed[name]:
                raise ValueError(
                    f"variable {name!r}: its netCDF encoding transforms the values, so it "
                    "cannot be written block by block"
                )
            self.targets[name] = target
        elif region:
            target[region] = source
        else:
            target[...] = source


def _unlimited(ds: xr.Dataset) -> set[str] | None:
    """The dataset's unlimited dimensions, as ``to_netcdf`` takes them from its encoding."""
    dims = ds.encoding.get("unlimited_dims")
    if dims is None:
        return None
    dims = [dims] if isinstance(dims, str) else list(dims)
    return {str(d) for d in dims if d in ds.dims}


def write_netcdf(
    ds: xr.Dataset,
    path: str | os.PathLike[str],
    encoding: Mapping[str, Mapping[str, Any]],
    slabs: Mapping[str, Slabs],
) -> None:
    """Write ``ds`` to ``path`` (netCDF-4, h5netcdf) with the values of ``slabs`` streamed.

    Args:
        ds: the dataset; each variable named in ``slabs`` holds a placeholder of its full
            shape and stored dtype.
        path: the file to create (overwritten).
        encoding: per-variable encoding, as for ``to_netcdf``.
        slabs: for each streamed variable, a callable returning its values as consecutive
            slabs along the first axis, in the stored dtype, covering that axis exactly.

    Raises:
        ValueError: the slabs of a variable do not cover its first axis or have the wrong
            trailing shape.
    """
    store = H5NetCDFStore.open(os.fspath(path), mode="w")
    writer = _Writer({name: ds[name].dtype for name in slabs})
    try:
        dump_to_store(ds, store, writer, encoding=dict(encoding), unlimited_dims=_unlimited(ds))
        for name, make in slabs.items():
            _fill(name, writer.targets[name], ds[name].shape, iter(make()))
    finally:
        store.close()


def _fill(name: str, target: Any, shape: tuple[int, ...], slabs: Iterator[np.ndarray]) -> None:
    """Write ``slabs`` one after the other into ``target`` along its first axis."""
    start = 0
    for slab in slabs:
        if slab.shape[1:] != shape[1:] or start + slab.shape[0] > shape[0]:
            raise ValueError(
                f"variable {name!r}: a slab of shape {slab.shape} at {start} does not fit {shape}"
            )
        target[start : start + slab.shape[0]] = slab
        start += slab.shape[0]
    if start != shape[0]:
        raise ValueError(f"variable {name!r}: slabs cover {start} of {shape[0]} entries")

"""Join physgen-field/1 files along ``sample`` into one file, streaming block by block.

The result equals ``write_fields(xarray.concat(parts, "sample", data_vars="minimal"), ...)``
of the parts read whole: the parts' data variables along ``sample`` and the ``sample``
coordinate are concatenated, everything else (other variables, their attributes, the global
attributes) comes from the first part and must agree in the others. The values are read and
written one block of samples of one part at a time, so memory does not grow with the number
of parts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from physgen.data.fields import (
    SAMPLE_DIM,
    FieldFileError,
    field_names,
    iter_sample_blocks,
    open_fields,
    streamed_variables,
    write_fields,
)
from physgen.data.stream import Slabs, placeholder

__all__ = ["join_fields"]

_BLOCK_BYTES = 64 * 2**20


def _check_part(first: xr.Dataset, part: xr.Dataset, path: Path, streamed: list[str]) -> None:
    """Refuse a part whose variables are not those of the first part (values of the ones
    not along ``sample``, trailing shape and dtype of the others)."""
    if set(part.variables) != set(first.variables):
        raise FieldFileError(
            path,
            f"has variables {sorted(map(str, part.variables))}, the first part has "
            f"{sorted(map(str, first.variables))}; the parts cannot be joined",
        )
    for name, var in first.variables.items():
        other = part[name].variable
        if name in streamed:
            if (
                other.dims != var.dims
                or other.shape[1:] != var.shape[1:]
                or other.dtype != var.dtype
            ):
                raise FieldFileError(
                    path,
                    f"variable {name!r} is {other.dims} {other.shape} {other.dtype}, the "
                    f"first part has {var.dims} {var.shape} {var.dtype}; they cannot be joined",
                )
        elif name != SAMPLE_DIM and not other.equals(var):
            raise FieldFileError(
                path, f"variable {name!r} differs from the first part's; the parts cannot be joined"
            )


def _values(paths: Sequence[Path], name: str, block_bytes: int, field: bool) -> Slabs:
    """The values of ``name`` in every part in turn, in blocks; NaN/Inf in a ``field`` is
    refused (as opening the part with :func:`open_fields` would)."""

    def blocks() -> Iterator[np.ndarray]:
        for path in paths:
            with open_fields(path, nonfinite="ignore") as ds:
                var = ds[name]
                axes = tuple(range(1, var.ndim))
                for start, block in iter_sample_blocks(var, block_bytes):
                    if field and not np.isfinite(block).all():
                        bad = start + np.flatnonzero(~np.isfinite(block).all(axis=axes))
                        raise FieldFileError(
                            path, f"NaN/Inf values: {name!r} at sample positions {bad.tolist()}"
                        )
                    yield block

    return blocks


def join_fields(
    paths: Sequence[str | os.PathLike[str]],
    path: str | os.PathLike[str],
    *,
    provenance: Mapping[str, Any] | None = None,
    block_bytes: int = _BLOCK_BYTES,
) -> Path:
    """Write the files ``paths``, concatenated along ``sample`` in that order, to ``path``.

    Each part is opened lazily; the output is written atomically by :func:`write_fields`
    (``provenance`` goes to its global attributes) from blocks of about ``block_bytes`` of
    one part's variable, so peak memory is about one block whatever the number of parts.

    Raises:
        FieldFileError: a part breaks the layout, holds NaN/Inf in a field, or disagrees with
            the first part (other variables, other trailing shapes or dtypes, other values of
            a variable not along ``sample``).
        ValueError: ``paths`` is empty.
    """
    parts = [Path(p) for p in paths]
    if not parts:
        raise ValueError("join_fields needs at least one file to join")
    with open_fields(parts[0], nonfinite="ignore") as first:
        streamed = streamed_variables(first)
        counts, samples = [], []
        for part in parts:
            with open_fields(part, nonfinite="ignore") as ds:
                _check_part(first, ds, part, streamed)
                counts.append(ds.sizes[SAMPLE_DIM])
                samples.append(ds[SAMPLE_DIM].values)
        total = sum(counts)
        variables: dict[str, xr.Variable] = {}
        for name, var in first.variables.items():
            if name == SAMPLE_DIM:
                var = xr.Variable(var.dims, np.concatenate(samples), var.attrs)
            elif name in streamed:
                var = xr.Variable(
                    var.dims, placeholder((total, *var.shape[1:]), var.dtype), var.attrs
                )
            else:
                var = var.load()
            variables[str(name)] = var
        template = xr.Dataset(
            {name: variables[str(name)] for name in first.data_vars},
            coords={name: variables[str(name)] for name in first.coords},
            attrs=first.attrs,
        )
        fields = set(field_names(first))
        slabs = {n: _values(parts, n, block_bytes, n in fields) for n in streamed}
        return write_fields(
            template, path, provenance=provenance, block_bytes=block_bytes, slabs=slabs
        )

"""The physgen-field/1 file format: validate, write (atomically) and open field files.

A physgen-field/1 file is a NetCDF4-compatible HDF5 file with a flat root group: one float32
variable per scalar field with dims ``(sample, [time], x[, y[, z]])`` (``indexing="ij"``),
float64 coordinates with CF attributes (``units``, ``long_name``, ``axis``), an int64 ``sample``
coordinate, the channel order in the global attribute ``fields`` and provenance in global
attributes. It opens unchanged with h5py, ``xarray.open_dataset(engine="h5netcdf")`` and netCDF
tools.

Example:
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset(
    ...     {"u": (("sample", "x"), np.zeros((4, 8)), {"units": "m s-1"})},
    ...     coords={"x": ("x", np.linspace(0, 1, 8), {"units": "m"})},
    ... )
    >>> path = write_fields(ds, "u.nc", provenance={"problem": "demo"})  # doctest: +SKIP
    >>> open_fields(path)["u"].dtype  # doctest: +SKIP
    dtype('float32')
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import warnings
from collections.abc import Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import xarray as xr
from tqdm.auto import tqdm

import physgen
from physgen.data.atomic import atomic_output
from physgen.data.stream import Slabs, placeholder, write_netcdf

__all__ = [
    "CONVENTIONS",
    "COORD_DTYPE",
    "FIELDS_ATTR",
    "FIELD_DTYPE",
    "MEMBER_DIM",
    "SAMPLE_DIM",
    "SCHEMA",
    "SCHEMA_ATTR",
    "SPATIAL_DIMS",
    "TIME_DIM",
    "FieldFileError",
    "NonFiniteFieldWarning",
    "check_hdf5_file",
    "check_storage",
    "field_names",
    "find_nonfinite",
    "iter_sample_blocks",
    "open_fields",
    "spatial_dims",
    "streamed_variables",
    "validate_fields",
    "write_fields",
]

SCHEMA = "physgen-field/1"
SCHEMA_ATTR = "physgen_schema"
FIELDS_ATTR = "fields"
CONVENTIONS = "CF-1.8"
SAMPLE_DIM = "sample"
TIME_DIM = "time"
MEMBER_DIM = "member"
SPATIAL_DIMS = ("x", "y", "z")
FIELD_DTYPE = np.dtype("float32")
COORD_DTYPE = np.dtype("float64")

_AXIS = {TIME_DIM: "T", "x": "X", "y": "Y", "z": "Z"}
# Chunks hold one sample; a trajectory larger than this is split into blocks of time steps.
_MAX_CHUNK_BYTES = 8 * 2**20
# The finiteness scan reads, and write_fields writes, this many bytes of one field at a time.
_SCAN_BYTES = 64 * 2**20
_SCAN_PROGRESS_BYTES = 2**30  # a NaN/Inf scan of more than this shows a progress bar


class FieldFileError(ValueError):
    """A field file (or in-memory dataset) violates physgen-field/1.

    The message names the file (``source``) and the defect.
    """

    def __init__(self, source: str | os.PathLike[str], defect: str) -> None:
        self.source = str(source)
        self.defect = defect
        super().__init__(f"{self.source}: {defect}")


class NonFiniteFieldWarning(UserWarning):
    """Fields hold NaN or Inf; ``samples`` maps each field to the bad sample positions."""

    def __init__(self, message: str, samples: dict[str, np.ndarray]) -> None:
        super().__init__(message)
        self.samples = samples


def field_names(ds: xr.Dataset) -> list[str]:
    """The channel order stored in the ``fields`` attribute, as a list of str.

    netCDF returns a one-element string list as a plain string and a longer one as a list or
    array; this normalizes all three.
    """
    raw = ds.attrs.get(FIELDS_ATTR)
    if raw is None:
        return []
    if isinstance(raw, (str, bytes)):
        raw = [raw]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(raw).ravel()]


def spatial_dims(ds: xr.Dataset) -> tuple[str, ...]:
    """The spatial dims of the file's grid (``("x",)``, ``("x", "y")`` or ``("x", "y", "z")``)."""
    present = {d for name in field_names(ds) if name in ds for d in ds[name].dims}
    return tuple(d for d in SPATIAL_DIMS if d in present)


def validate_fields(ds: xr.Dataset, *, source: str | os.PathLike[str] = "<dataset>") -> None:
    """Check that ``ds`` follows physgen-field/1; raise :class:`FieldFileError` if not.

    Checks, in order: schema attribute, the ``fields`` attribute and that it names existing
    variables, each field's dims against the layout ``(sample, [member], [time], x[, y[, z]])``
    (``member`` for ensembles) with one spatial grid for all fields, a coordinate for every
    dimension a field uses, and dtypes (float32 fields, float64 time/space coordinates, integer
    ``sample``). Values are not read here; :func:`find_nonfinite` scans them.

    Args:
        ds: the dataset to check.
        source: the file (or a description) named in error messages.
    """
    schema = ds.attrs.get(SCHEMA_ATTR)
    if schema is None:
        raise FieldFileError(
            source,
            f"missing schema: no global attribute {SCHEMA_ATTR!r} (expected {SCHEMA!r}); "
            "files from PDEBench, The Well or FNO convert with 'physgen data import'",
        )
    if schema != SCHEMA:
        raise FieldFileError(source, f"unknown schema {schema!r} (expected {SCHEMA!r})")
    names = field_names(ds)
    if not names:
        raise FieldFileError(source, f"global attribute {FIELDS_ATTR!r} is missing or empty")
    if len(set(names)) != len(names):
        raise FieldFileError(source, f"attribute {FIELDS_ATTR!r} repeats a name: {names}")
    for name in names:
        if name not in ds.data_vars:
            raise FieldFileError(
                source,
                f"attribute {FIELDS_ATTR!r} names {name!r}, which is not a data variable "
                f"(data variables: {sorted(map(str, ds.data_vars))})",
            )
    grid = spatial_dims(ds)
    for name in names:
        _check_field_dims(ds[name], grid, source)
    used = {d for name in names for d in ds[name].dims}
    for dim in (SAMPLE_DIM, TIME_DIM, *grid):
        if dim in used:
            _check_coordinate(ds, dim, source)
    for name in names:
        if ds[name].dtype != FIELD_DTYPE:
            raise FieldFileError(
                source, f"field {name!r} has dtype {ds[name].dtype}, expected {FIELD_DTYPE}"
            )


def _check_field_dims(var: xr.DataArray, grid: tuple[str, ...], source: Any) -> None:
    name, dims = var.name, tuple(map(str, var.dims))
    layout = f"({SAMPLE_DIM}, [{MEMBER_DIM}], [{TIME_DIM}], {', '.join(grid) or 'x, y'})"
    if SAMPLE_DIM not in dims:
        raise FieldFileError(
            source, f"field {name!r} has dims {dims}: missing dimension {SAMPLE_DIM!r}"
        )
    if not grid:
        raise FieldFileError(
            source, f"field {name!r} has dims {dims}: missing spatial dimension (x, y or z)"
        )
    if grid != SPATIAL_DIMS[: len(grid)]:
        missing = next(d for d in SPATIAL_DIMS if d not in grid)
        raise FieldFileError(
            source, f"fields use spatial dims {grid}: missing dimension {missing!r}"
        )
    # Ensembles (M posterior samples per case) add a member axis right after the case axis.
    allowed = [(SAMPLE_DIM, *extra, *grid) for extra in ((), (TIME_DIM,))]
    allowed += [(SAMPLE_DIM, MEMBER_DIM, *dims_[1:]) for dims_ in allowed]
    if dims not in allowed:
        raise FieldFileError(
            source, f"field {name!r} has dims {dims}, which disagree with the layout {layout}"
        )


def _check_coordinate(ds: xr.Dataset, dim: str, source: Any) -> None:
    if dim not in ds.coords or ds[dim].dims != (dim,):
        raise FieldFileError(source, f"missing coordinate variable {dim!r} for dimension {dim!r}")
    dtype = ds[dim].dtype
    if dim == SAMPLE_DIM:
        if dtype.kind not in "iu":
            raise FieldFileError(source, f"coordinate {dim!r} has dtype {dtype}, expected int64")
    elif dtype != COORD_DTYPE:
        raise FieldFileError(
            source, f"coordinate {dim!r} has dtype {dtype}, expected {COORD_DTYPE}"
        )
    elif not np.all(np.isfinite(ds[dim].values)):
        raise FieldFileError(source, f"coordinate {dim!r} holds NaN or Inf")


def iter_sample_blocks(
    var: xr.DataArray, max_bytes: int = _SCAN_BYTES
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)`` with consecutive blocks of ``var`` along ``sample``.

    Each block holds as many whole samples as fit in ``max_bytes`` (at least one), so a lazily
    opened file is scanned with bounded memory.
    """
    n = var.sizes[SAMPLE_DIM]
    per_sample = max(1, var.size // max(n, 1) * var.dtype.itemsize)
    step = max(1, max_bytes // per_sample)
    for start in range(0, n, step):
        yield start, np.asarray(var.isel({SAMPLE_DIM: slice(start, start + step)}).values)


def find_nonfinite(
    ds: xr.Dataset,
    names: Sequence[str] | None = None,
    *,
    progress: bool | None = None,
    block_bytes: int = _SCAN_BYTES,
) -> dict[str, np.ndarray]:
    """Positions along ``sample`` where a field holds NaN or Inf, per field (bad fields only).

    Reads each field in blocks of whole samples of about ``block_bytes`` (64 MiB), so a
    lazily opened file is scanned with bounded memory. ``progress`` shows a progress bar over
    the bytes read (on stderr); by default it is shown for scans of more than 1 GiB.
    """
    names = field_names(ds) if names is None else list(names)
    total = sum(ds[name].size * ds[name].dtype.itemsize for name in names)
    show = total > _SCAN_PROGRESS_BYTES if progress is None else progress
    bad: dict[str, np.ndarray] = {}
    with tqdm(total=total, unit="B", unit_scale=True, desc="NaN/Inf scan", disable=not show) as bar:
        for name in names:
            var = ds[name]
            axes = tuple(i for i, d in enumerate(var.dims) if d != SAMPLE_DIM)
            hits = []
            for start, block in iter_sample_blocks(var, block_bytes):
                hits.append(start + np.flatnonzero(~np.isfinite(block).all(axis=axes)))
                bar.update(block.nbytes)
            found = np.concatenate(hits) if hits else np.zeros(0, dtype=np.int64)
            if found.size:
                bad[name] = found.astype(np.int64)
    return bad


def _describe_nonfinite(bad: Mapping[str, np.ndarray], limit: int = 10) -> str:
    parts = []
    for name, idx in bad.items():
        shown = ", ".join(map(str, idx[:limit])) + (", ..." if idx.size > limit else "")
        parts.append(f"{name!r} in {idx.size} sample(s) at positions [{shown}]")
    return "NaN/Inf values: " + "; ".join(parts)


def check_hdf5_file(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` if it names an existing HDF5 file; raise a clear error otherwise."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if not h5py.is_hdf5(path):
        raise FieldFileError(path, "not an HDF5 file (no HDF5 signature)")
    return path


# The NAME netCDF-4 gives the placeholder of a dimension without a coordinate variable.
_BARE_DIMENSION = b"This is a netCDF dimension but not a netCDF variable"


def _bare_dimension(dataset: h5py.Dataset) -> bool:
    """Whether ``dataset`` only stands for a netCDF dimension (it holds no data by design)."""
    name = dataset.attrs.get("NAME")
    return isinstance(name, bytes) and name.startswith(_BARE_DIMENSION)


def _unwritten(dataset: h5py.Dataset, file_bytes: int) -> str | None:
    """Why ``dataset`` cannot hold the data it declares, or None if it can.

    Its data were never (or only partly) written when storage for them was never allocated:
    a contiguous dataset with less storage than its size, a chunked one with fewer chunks
    than its shape needs. An uncompressed dataset cannot be larger than the whole file.
    """
    declared = dataset.size * dataset.dtype.itemsize
    if declared == 0 or dataset.is_virtual or dataset.external or _bare_dimension(dataset):
        return None
    size = f"{' × '.join(map(str, dataset.shape))} {dataset.dtype} values ({declared:,} bytes)"
    if dataset.chunks is None:
        stored = dataset.id.get_storage_size()
        if stored < declared:
            return f"declares {size} but only {stored:,} bytes were ever written"
    else:
        needed = math.prod(-(-n // c) for n, c in zip(dataset.shape, dataset.chunks, strict=True))
        chunks = dataset.id.get_num_chunks()
        if chunks < needed:
            return f"declares {size} but only {chunks} of its {needed} chunks were ever written"
    if dataset.id.get_create_plist().get_nfilters() == 0 and declared > file_bytes:
        return f"declares {size}, more than the whole file ({file_bytes:,} bytes)"
    return None


def check_storage(path: str | os.PathLike[str]) -> Path:
    """Refuse an HDF5 file whose variables declare more data than it holds; return ``path``.

    A small file can declare huge variables that were never written (a sparse placeholder, a
    copy cut short); reading them would scan fill values for hours. Only metadata is read
    here, so the check is instant. A file that HDF5 cannot open is left to the reader, which
    reports it in its own words.

    Raises:
        FieldFileError: naming the file, the variable, what it declares and what was written.
    """
    path = Path(path)
    file_bytes = path.stat().st_size
    faults: list[str] = []

    def visit(name: str, obj: object) -> None:
        if not faults and isinstance(obj, h5py.Dataset):
            fault = _unwritten(obj, file_bytes)
            if fault is not None:
                faults.append(f"variable {name!r} {fault} (an empty or truncated file?)")

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError:
        return path
    if faults:
        raise FieldFileError(path, faults[0])
    return path


def open_fields(
    path: str | os.PathLike[str],
    *,
    nonfinite: Literal["raise", "report", "ignore"] = "raise",
    load: bool = False,
) -> xr.Dataset:
    """Open a physgen-field/1 file lazily and validate it.

    Args:
        path: the ``.nc`` file.
        nonfinite: what to do when a field holds NaN/Inf (a full read of the fields):
            ``"raise"`` a :class:`FieldFileError` listing the bad sample positions,
            ``"report"`` them in a :class:`NonFiniteFieldWarning` (its ``samples`` attribute maps
            field → positions) and return the dataset, or ``"ignore"`` (skip the scan; use for
            large files you trust).
        load: read everything into memory and close the file (``xarray.load_dataset``).

    Returns:
        The dataset, its ``fields`` attribute normalized to a list of str.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FieldFileError: the file is not HDF5, is truncated or corrupt, declares more data than
            it holds (:func:`check_storage`), or breaks the layout.
    """
    if nonfinite not in ("raise", "report", "ignore"):
        raise ValueError(f"nonfinite must be 'raise', 'report' or 'ignore', got {nonfinite!r}")
    path = check_storage(check_hdf5_file(path))
    try:
        ds = xr.open_dataset(
            path,
            engine="h5netcdf",
            phony_dims="sort",
            decode_times=False,
            decode_timedelta=False,
            mask_and_scale=False,
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FieldFileError(
            path, f"cannot be read as HDF5/netCDF (truncated or corrupt?): {err}"
        ) from err
    try:
        validate_fields(ds, source=path)
        ds.attrs[FIELDS_ATTR] = field_names(ds)
        if nonfinite != "ignore" or load:
            try:
                bad = find_nonfinite(ds) if nonfinite != "ignore" else {}
                if load:
                    ds.load()
            except (OSError, RuntimeError) as err:
                raise FieldFileError(path, f"cannot read the data (truncated?): {err}") from err
            if bad and nonfinite == "raise":
                raise FieldFileError(path, _describe_nonfinite(bad))
            if bad:
                message = f"{path}: {_describe_nonfinite(bad)}"
                warnings.warn(NonFiniteFieldWarning(message, bad), stacklevel=2)
    except BaseException:
        ds.close()
        raise
    if load:
        ds.close()
    return ds


def _netcdf_attr(value: Any) -> Any:
    """Make an attribute value netCDF-representable: bool → int, dict/None → JSON string."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, Mapping) or value is None:
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in value):
            return np.asarray(value)
        return json.dumps(list(value), default=str)
    return value


def _netcdf_attrs(attrs: Mapping[Hashable, Any]) -> dict[str, Any]:
    return {str(k): _netcdf_attr(v) for k, v in attrs.items()}


def _stored_fields(ds: xr.Dataset) -> list[str]:
    """The fields of ``ds`` as written: its ``fields``, else every variable on the grid."""
    return field_names(ds) or [
        str(v) for v in ds.data_vars if any(d in SPATIAL_DIMS for d in ds[v].dims)
    ]


def _stored_dtype(var: xr.DataArray, fields: Sequence[str]) -> np.dtype:
    """The dtype ``var`` is stored in: float32 for a floating field, else its own."""
    return FIELD_DTYPE if var.name in fields and var.dtype.kind == "f" else var.dtype


def _prepare(ds: xr.Dataset, provenance: Mapping[str, Any] | None) -> xr.Dataset:
    """Cast dtypes, fill default CF attributes and provenance; no validation."""
    out = ds.copy()
    names = _stored_fields(out)
    if SAMPLE_DIM not in out.coords and SAMPLE_DIM in out.dims:
        out = out.assign_coords({SAMPLE_DIM: np.arange(out.sizes[SAMPLE_DIM], dtype=np.int64)})
    for name in names:
        if name in out.data_vars and out[name].dtype != _stored_dtype(out[name], names):
            out[name] = out[name].astype(FIELD_DTYPE)
    for dim in (TIME_DIM, *SPATIAL_DIMS):
        if dim in out.coords and out[dim].dtype.kind in "fiu":
            out = out.assign_coords({dim: out[dim].astype(COORD_DTYPE)})
    for name in out.variables:
        var = out[name]
        var.attrs = _netcdf_attrs(var.attrs)
        var.attrs.pop("_FillValue", None)
        var.encoding = {}
        if name in names:
            var.attrs.setdefault("long_name", str(name))
            var.attrs.setdefault("units", "1")
        if name in _AXIS:
            var.attrs.setdefault("axis", _AXIS[str(name)])
            var.attrs.setdefault("long_name", str(name))
            var.attrs.setdefault("units", "1")
    if SAMPLE_DIM in out.coords:
        out[SAMPLE_DIM].attrs.setdefault("long_name", "global sample index")
    attrs = dict(out.attrs)
    attrs.update(
        Conventions=CONVENTIONS,
        physgen_schema=SCHEMA,
        fields=names,
        indexing="ij",
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        physgen_version=physgen.__version__,
    )
    attrs.update(provenance or {})
    out.attrs = _netcdf_attrs(attrs)
    return out


def _chunks(var: xr.DataArray) -> tuple[int, ...] | None:
    """One sample per chunk; long trajectories split into blocks of time steps."""
    if SAMPLE_DIM not in var.dims or var.ndim < 2 or var.dims[0] != SAMPLE_DIM:
        return None
    shape = [1, *var.shape[1:]]
    if var.dims[1] == TIME_DIM:
        frame = int(np.prod(shape[2:])) * var.dtype.itemsize
        shape[1] = max(1, min(shape[1], _MAX_CHUNK_BYTES // max(frame, 1)))
    return tuple(shape)


def streamed_variables(ds: xr.Dataset) -> list[str]:
    """The variables :func:`write_fields` writes block by block: numeric data variables along
    ``sample`` (first dim); strings, booleans and the like are written whole."""
    return [
        str(n)
        for n, v in ds.data_vars.items()
        if v.ndim and v.dims[0] == SAMPLE_DIM and v.dtype.kind in "iuf"
    ]


def write_fields(
    ds: xr.Dataset,
    path: str | os.PathLike[str],
    *,
    provenance: Mapping[str, Any] | None = None,
    compression_level: int = 0,
    block_bytes: int = _SCAN_BYTES,
    slabs: Mapping[str, Slabs] | None = None,
) -> Path:
    """Validate ``ds`` and write it as a physgen-field/1 file, atomically.

    Floating fields are cast to float32, time/space coordinates to float64 and a missing
    ``sample`` coordinate becomes ``0..N-1``. Missing CF attributes are filled
    (``long_name`` = the variable name, ``units="1"`` (dimensionless) and ``axis`` on
    coordinates). Global attributes get ``Conventions``, ``physgen_schema``, ``fields`` (the
    dataset's ``fields`` attribute, else every variable with a spatial dim in dataset order),
    ``indexing="ij"``, ``created`` (ISO 8601, UTC), ``physgen_version`` and then ``provenance``.
    Booleans become 0/1 and dicts JSON strings (netCDF has neither). No ``_FillValue`` is
    written; each field is chunked one sample per chunk.

    The data variables along ``sample`` (:func:`streamed_variables`) are written in blocks of
    whole samples of about ``block_bytes`` each, cast block by block, so writing needs no
    full-size copy of them; the file is the same as one written whole.

    The file is written beside ``path`` under a temporary name and renamed into place, so an
    error or interruption never leaves a partial file under ``path``.

    Args:
        ds: the fields, coordinates and attributes.
        path: the output file (``.nc``).
        provenance: extra global attributes (problem, parameters, generator, seed, ...).
        compression_level: gzip level 1-9 with byte shuffle, or 0 for none. Compression pays
            mostly for piecewise-constant fields.
        block_bytes: memory per written block of a variable (whole samples; at least one).
        slabs: values from elsewhere (e.g. files being joined): for some data variables along
            ``sample``, a callable returning their values as consecutive blocks of samples.
            In ``ds`` such a variable only gives dims, shape, dtype and attributes, so it may
            hold a :func:`~physgen.data.stream.placeholder`.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if not 0 <= compression_level <= 9:
        raise ValueError(f"compression_level must be in 0..9, got {compression_level}")
    path = Path(path)
    sources = {name: _blocks_of(ds[name], block_bytes) for name in streamed_variables(ds)}
    sources.update(slabs or {})
    fields = _stored_fields(ds)
    lean = ds.copy()
    dtypes: dict[str, np.dtype] = {}
    for name in sources:
        var = ds[name]
        dtypes[name] = _stored_dtype(var, fields)
        lean[name] = xr.Variable(var.dims, placeholder(var.shape, dtypes[name]), var.attrs)
    out = _prepare(lean, provenance)
    validate_fields(out, source=path)
    if out.sizes[SAMPLE_DIM] == 0:
        raise FieldFileError(path, "no samples (dimension 'sample' has length 0)")
    cast = {name: _cast(make, dtypes[name]) for name, make in sources.items()}
    with atomic_output(path) as tmp:
        write_netcdf(out, tmp, _encoding(out, compression_level), cast)
    return path


def _encoding(out: xr.Dataset, compression_level: int) -> dict[str, dict[str, Any]]:
    """The netCDF encoding of every variable: no fill value; chunks and gzip for fields."""
    encoding: dict[str, dict[str, Any]] = {}
    for name in out.variables:
        enc: dict[str, Any] = {"_FillValue": None}
        chunks = _chunks(out[name])
        if chunks is not None:
            enc["chunksizes"] = chunks
            if compression_level:
                enc.update(zlib=True, complevel=compression_level, shuffle=True)
        encoding[str(name)] = enc
    return encoding


def _blocks_of(var: xr.DataArray, block_bytes: int) -> Slabs:
    """``var``'s values in blocks of whole samples of about ``block_bytes`` (views if in memory)."""
    return lambda: (block for _, block in iter_sample_blocks(var, block_bytes))


def _cast(make: Slabs, dtype: np.dtype) -> Slabs:
    """The blocks of ``make`` in ``dtype`` (a copy of one block at a time where it differs)."""
    return lambda: (np.ascontiguousarray(block, dtype=dtype) for block in make())

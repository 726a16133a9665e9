"""``FieldDataset``: a torch Dataset of ``(C, *grid)`` tensors built from a physgen-field/1 file."""

from __future__ import annotations

import operator
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import xarray as xr
from torch import Tensor
from torch.utils.data import Dataset

from physgen.data.fields import SAMPLE_DIM, TIME_DIM, field_names, open_fields, spatial_dims
from physgen.data.lazy import LazyFile
from physgen.data.stats import FieldStats, load_stats

if TYPE_CHECKING:
    import h5py

__all__ = ["FieldDataset", "Normalizer"]

Indices = Sequence[int] | np.ndarray | Tensor


class Normalizer:
    """Per-channel z-scoring ``x̂ = (x − μ_c) / σ_c`` and its inverse ``x = σ_c x̂ + μ_c``.

    Works on ``(C, *grid)`` items and ``(B, C, *grid)`` batches alike (the statistics have shape
    ``(C, 1, ..., 1)`` and broadcast from the right), on any device and float dtype.

    Args:
        mean: one mean per channel.
        scale: one positive divisor per channel (the field's std, 1 for a constant field).
        spatial_ndim: number of grid dims after the channel dim (0 for vectors).
    """

    def __init__(self, mean: Sequence[float], scale: Sequence[float], spatial_ndim: int) -> None:
        shape = (len(mean),) + (1,) * spatial_ndim
        self.mean = torch.tensor(mean, dtype=torch.float64).reshape(shape)  # (C, 1, ..., 1)
        self.scale = torch.tensor(scale, dtype=torch.float64).reshape(shape)
        if len(scale) != len(mean) or bool((self.scale <= 0).any()):
            raise ValueError("Normalizer needs one positive scale per mean")

    @classmethod
    def from_stats(
        cls,
        stats: Mapping[str, FieldStats],
        channel_fields: Sequence[str],
        spatial_ndim: int,
        *,
        source: str = "stats",
    ) -> Normalizer:
        """Channel ``c`` uses the statistics of field ``channel_fields[c]``."""
        missing = [f for f in dict.fromkeys(channel_fields) if f not in stats]
        if missing:
            raise KeyError(f"{source}: no statistics for {missing} (has: {sorted(stats)})")
        return cls(
            [stats[f].mean for f in channel_fields],
            [stats[f].scale for f in channel_fields],
            spatial_ndim,
        )

    def _like(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.mean.to(x.device, x.dtype), self.scale.to(x.device, x.dtype)

    def normalize(self, x: Tensor) -> Tensor:
        """Physical units → z-scores."""
        mean, scale = self._like(x)
        return (x - mean) / scale

    def denormalize(self, x: Tensor) -> Tensor:
        """z-scores → physical units (the exact inverse of :meth:`normalize`)."""
        mean, scale = self._like(x)
        return x * scale + mean


class _MemoryTable:
    """The channels of ``x`` (or of ``cond``) held in memory, stacked and normalized once.

    Channels that vary per item sit in one tensor ``(n_items, C_item, ...)``; in ``"frames"``
    mode steady channels sit in a second tensor ``(n_samples, C_steady, ...)`` indexed by
    ``item // T``. Gathering a batch is then one index per tensor.
    """

    def __init__(
        self,
        per_item: Tensor | None,
        item_channels: list[int],
        per_sample: Tensor | None,
        sample_channels: list[int],
        n_times: int,
    ) -> None:
        self.per_item, self.per_sample, self.n_times = per_item, per_sample, n_times
        self.item_channels = torch.tensor(item_channels, dtype=torch.long)
        self.sample_channels = torch.tensor(sample_channels, dtype=torch.long)

    def take(self, idx: Tensor) -> Tensor:
        """Items ``idx`` as a new tensor ``(B, C, ...)``."""
        if self.per_sample is None:
            assert self.per_item is not None
            return self.per_item[idx]
        steady = self.per_sample[idx // self.n_times]
        if self.per_item is None:
            return steady
        n_channels = len(self.item_channels) + len(self.sample_channels)
        out = steady.new_empty((len(idx), n_channels, *steady.shape[2:]))
        out[:, self.item_channels] = self.per_item[idx]
        out[:, self.sample_channels] = steady
        return out


class FieldDataset(Dataset):
    """Fields of a physgen-field/1 file as tensors ``(C, *grid)``, optionally with conditioning.

    Channels are the chosen fields in the given order (default: the file's ``fields`` order,
    minus the conditioning fields). Time-dependent fields ``(sample, time, *grid)`` map to
    tensors in one of two ways, set by ``time``:

    - ``"channels"`` (default): one item per sample; a time-dependent field contributes ``T``
      consecutive channels (its frames in time order), a steady field one channel. Suits
      models of whole trajectories at small ``T``.
    - ``"frames"``: one item per ``(sample, time)`` pair, item ``k`` is sample ``k // T``,
      frame ``k % T``; every field contributes one channel, steady fields repeat for each
      frame. Suits models of snapshots (e.g. a vorticity field at any time).

    Conditioning fields (``cond_fields``) become a second tensor built the same way, or a
    vector ``(C_cond,)`` when they are all per-sample variables with dims ``(sample,)`` (e.g.
    a viscosity ``nu``). Items are then pairs ``(x, cond)``.

    With ``stats`` (a ``stats.json`` path or :func:`compute_stats` output, from the training
    split) every channel is z-scored by its field's mean and std; :meth:`denormalize` inverts
    it, e.g. on model samples.

    Small files are read into memory once (fastest), stacked into one tensor per item kind and
    normalized there, so an item or a batch is a single index. Files larger than
    ``max_memory_bytes`` (for the chosen variables) are read on demand, with the file opened
    lazily in the process that reads: no handle exists before DataLoader workers fork, and a
    worker never reuses a handle inherited from its parent (handles are cached per process
    id). :meth:`get_batch` (and ``__getitems__``, which ``DataLoader`` uses) reads a whole
    batch in one pass, in file order.

    Args:
        path: the physgen-field/1 file.
        fields: the channels' fields, in order (default: file order minus ``cond_fields``).
        cond_fields: conditioning variables (default: none, items are plain tensors).
        stats: statistics for normalization (default: none, values as stored).
        time: ``"channels"`` or ``"frames"`` (see above).
        in_memory: force in-memory (True) or lazy (False) reading; default by size.
        max_memory_bytes: the size threshold for ``in_memory=None``.
        nonfinite: passed to :func:`open_fields` (``"ignore"`` skips the full NaN scan).

    Example:
        >>> files = dict(cond_fields=["a"], stats="stats.json")
        >>> data = FieldDataset("train.nc", ["u"], **files)  # doctest: +SKIP
        >>> x, cond = data[0]  # (1, nx, ny), (1, nx, ny)  # doctest: +SKIP
        >>> physical = data.denormalize(model.sample(8))  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fields: Sequence[str] | None = None,
        *,
        cond_fields: Sequence[str] = (),
        stats: str | os.PathLike[str] | Mapping[str, FieldStats] | None = None,
        time: Literal["channels", "frames"] = "channels",
        in_memory: bool | None = None,
        max_memory_bytes: int = 2**30,
        nonfinite: Literal["raise", "report", "ignore"] = "raise",
    ) -> None:
        if time not in ("channels", "frames"):
            raise ValueError(f"time must be 'channels' or 'frames', got {time!r}")
        self.path = Path(path)
        self.time = time
        self.cond_fields = list(cond_fields)
        with open_fields(self.path, nonfinite=nonfinite) as ds:
            stored = field_names(ds)
            self.fields = [f for f in stored if f not in self.cond_fields]
            if fields is not None:
                self.fields = list(fields)
            self._vector_cond = self._check_names(ds, stored)
            self.grid_dims = spatial_dims(ds)
            self.grid_shape = tuple(ds.sizes[d] for d in self.grid_dims)
            self.n_samples = ds.sizes[SAMPLE_DIM]
            chosen = self.fields + self.cond_fields
            self._timed = {n for n in chosen if TIME_DIM in ds[n].dims}
            self.n_times = ds.sizes[TIME_DIM] if self._timed else 1
            self.attrs = dict(ds.attrs)  # the file's global attributes (problem, ...)
            self.coords = {str(c): ds[c].values for c in ds.coords}
            self.coord_attrs = {str(c): dict(ds[c].attrs) for c in ds.coords}
            self.field_attrs = {n: dict(ds[n].attrs) for n in chosen}
            nbytes = sum(ds[n].size * 4 for n in chosen)
            self.in_memory = nbytes <= max_memory_bytes if in_memory is None else in_memory
            self.channels = self._channels(self.fields)
            self.cond_channels = self._channels(self.cond_fields)
            self.sample_shape = (len(self.channels), *self.grid_shape)
            if not self.cond_fields:
                self.cond_shape: tuple[int, ...] | None = None
            elif self._vector_cond:
                self.cond_shape = (len(self.cond_channels),)
            else:
                self.cond_shape = (len(self.cond_channels), *self.grid_shape)
            self._normalizer: Normalizer | None = None
            self._cond_normalizer: Normalizer | None = None
            if stats is not None:
                self._set_stats(stats)
            self._x: _MemoryTable | None = None
            self._cond: _MemoryTable | None = None
            if self.in_memory:
                self._x = self._load(ds, self.fields, self._normalizer, self.grid_shape)
                if self.cond_fields:
                    rest = () if self._vector_cond else self.grid_shape
                    self._cond = self._load(ds, self.cond_fields, self._cond_normalizer, rest)
        self._file: LazyFile | None = None

    @property
    def normalizer(self) -> Normalizer | None:
        """The z-scoring of the channels (fixed at construction: in memory it is applied once)."""
        return self._normalizer

    @property
    def cond_normalizer(self) -> Normalizer | None:
        """The z-scoring of the conditioning channels (fixed at construction)."""
        return self._cond_normalizer

    # -- construction helpers -------------------------------------------------------------
    def _check_names(self, ds: xr.Dataset, stored: list[str]) -> bool:
        """Check the chosen names; True when the conditions are per-sample scalars."""
        if not self.fields:
            raise ValueError(f"{self.path}: no fields left to model (fields: {stored})")
        for name in self.fields:
            if name not in stored:
                raise KeyError(f"{self.path}: no field {name!r} (fields: {stored})")
        overlap = set(self.fields) & set(self.cond_fields)
        if overlap:
            raise ValueError(f"{self.path}: {sorted(overlap)} cannot be both field and condition")
        scalars = [n for n in self.cond_fields if n in ds.data_vars and ds[n].dims == (SAMPLE_DIM,)]
        for name in self.cond_fields:
            if name not in stored and name not in scalars:
                raise KeyError(
                    f"{self.path}: no conditioning variable {name!r} (fields: {stored}; "
                    f"per-sample variables: "
                    f"{[str(v) for v in ds.data_vars if ds[v].dims == (SAMPLE_DIM,)]})"
                )
        if scalars and len(scalars) != len(self.cond_fields):
            raise ValueError(
                f"{self.path}: cond_fields mixes per-sample variables {scalars} with fields; "
                "use one kind"
            )
        return bool(scalars)

    def _channels(self, names: Sequence[str]) -> list[str]:
        """Channel labels: ``name`` or, for trajectories as channels, ``name[t]``."""
        out: list[str] = []
        for name in names:
            if name in self._timed and self.time == "channels":
                out += [f"{name}[{t}]" for t in range(self.n_times)]
            else:
                out.append(name)
        return out

    def _channel_fields(self, names: Sequence[str]) -> list[str]:
        return [c.split("[", 1)[0] for c in self._channels(names)]

    def _set_stats(self, stats: str | os.PathLike[str] | Mapping[str, FieldStats]) -> None:
        source = str(stats) if isinstance(stats, (str, os.PathLike)) else "stats"
        table = load_stats(stats) if isinstance(stats, (str, os.PathLike)) else dict(stats)
        ndim = len(self.grid_shape)
        self._normalizer = Normalizer.from_stats(
            table, self._channel_fields(self.fields), ndim, source=source
        )
        if self.cond_fields:
            self._cond_normalizer = Normalizer.from_stats(
                table,
                self._channel_fields(self.cond_fields),
                0 if self._vector_cond else ndim,
                source=source,
            )

    def _width(self, name: str) -> int:
        """Channels of field ``name`` in an item."""
        return self.n_times if name in self._timed and self.time == "channels" else 1

    def _load(
        self,
        ds: xr.Dataset,
        names: Sequence[str],
        normalizer: Normalizer | None,
        rest: tuple[int, ...],
    ) -> _MemoryTable:
        """Read ``names`` into stacked, normalized tables (one field in flight at a time).

        ``rest`` is the shape after the channel dim: the grid, or ``()`` for vectors.
        """
        frames = self.time == "frames" and bool(self._timed)
        per_item_names = [n for n in names if not frames or n in self._timed]
        per_sample_names = [n for n in names if frames and n not in self._timed]
        starts = np.cumsum([0] + [self._width(n) for n in names]).tolist()
        position = {n: starts[i] for i, n in enumerate(names)}

        def stack(group: list[str], n_rows: int) -> tuple[Tensor | None, list[int]]:
            if not group:
                return None, []
            channels = [position[n] + j for n in group for j in range(self._width(n))]
            table = np.empty((n_rows, len(channels), *rest), dtype=np.float32)
            c = 0
            for n in group:
                values = ds[n].values  # (N, [T,] *rest)
                table[:, c : c + self._width(n)] = values.reshape(n_rows, -1, *rest)
                c += self._width(n)
                del values
            out = torch.from_numpy(table)
            if normalizer is not None:
                mean, scale = normalizer.mean.float(), normalizer.scale.float()
                out.sub_(mean[channels]).div_(scale[channels])
            return out, channels

        n_items = self.n_samples * (self.n_times if frames else 1)
        per_item, item_channels = stack(per_item_names, n_items)
        per_sample, sample_channels = stack(per_sample_names, self.n_samples)
        return _MemoryTable(per_item, item_channels, per_sample, sample_channels, self.n_times)

    # -- reading --------------------------------------------------------------------------
    def _lazy(self) -> LazyFile:
        """This process's read handles, opened on first use (h5py handles must not cross a fork)."""
        if self._file is None or self._file.pid != os.getpid():
            chosen = self.fields + self.cond_fields
            self._file = LazyFile(self.path, {n: n in self._timed for n in chosen})
        return self._file

    @property
    def _h5(self) -> h5py.File | None:
        """This process's open h5py file, if any (``None`` before the first lazy read)."""
        return self._file.h5 if self._file is not None and self._file.pid == os.getpid() else None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        return state

    def close(self) -> None:
        """Close the lazily opened file, if any (it reopens on the next read)."""
        if self._file is not None:
            self._file.close()
        self._file = None

    def __len__(self) -> int:
        return self.n_samples * (self.n_times if self.time == "frames" else 1)

    def _index_array(self, indices: Indices) -> np.ndarray:
        """``indices`` as int64 in ``[0, len)``, negative ones counted from the end."""
        idx = np.asarray(indices.cpu() if isinstance(indices, Tensor) else indices)
        if idx.ndim != 1 or not (idx.size == 0 or np.issubdtype(idx.dtype, np.integer)):
            raise TypeError(f"expected a 1-D sequence of integer indices, got {idx.dtype}")
        idx = idx.astype(np.int64, copy=False)
        n = len(self)
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            raise IndexError(f"index {int(idx[bad][0])} out of range for {n} items")
        return idx % n if n else idx

    def _read(self, names: Sequence[str], idx: np.ndarray, cond: bool) -> Tensor:
        """Lazily read channels of ``names`` for items ``idx``, normalized."""
        shape = self.cond_shape if cond else self.sample_shape
        assert shape is not None
        out = np.empty((len(idx), *shape), dtype=np.float32)
        n_times = self.n_times if self.time == "frames" else None
        self._lazy().read(names, idx, n_times, out)
        batch = torch.from_numpy(out)
        normalizer = self._cond_normalizer if cond else self._normalizer
        return batch if normalizer is None else normalizer.normalize(batch)

    def get_batch(self, indices: Indices) -> Tensor | tuple[Tensor, Tensor]:
        """Items ``indices`` (any order, repeats allowed) stacked: ``x`` or ``(x, cond)``.

        Equal to stacking ``self[i]`` for ``i`` in ``indices``, but one index of the
        in-memory tables, or one pass over the file in file order.
        """
        idx = self._index_array(indices)
        if self._x is not None:
            t = torch.from_numpy(idx)
            x = self._x.take(t)
            return x if self._cond is None else (x, self._cond.take(t))
        x = self._read(self.fields, idx, cond=False)
        return x if not self.cond_fields else (x, self._read(self.cond_fields, idx, cond=True))

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """The items ``indices`` as a list, read as one batch (used by ``DataLoader``)."""
        batch = self.get_batch(indices)
        if isinstance(batch, Tensor):
            return list(batch.unbind(0))
        return list(zip(batch[0].unbind(0), batch[1].unbind(0), strict=True))

    def __getitem__(self, index: int) -> Tensor | tuple[Tensor, Tensor]:
        index = operator.index(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        batch = self.get_batch([index])
        if isinstance(batch, Tensor):
            return batch[0]
        return batch[0][0], batch[1][0]

    # -- the way back -------------------------------------------------------------------
    def normalize(self, x: Tensor) -> Tensor:
        """Physical → normalized channels of ``x`` (``(C, *grid)`` or ``(B, C, *grid)``)."""
        return x if self._normalizer is None else self._normalizer.normalize(x)

    def denormalize(self, x: Tensor) -> Tensor:
        """Normalized → physical channels, e.g. of model samples ``(B, C, *grid)``."""
        return x if self._normalizer is None else self._normalizer.denormalize(x)

    def denormalize_cond(self, cond: Tensor) -> Tensor:
        """Normalized → physical conditioning tensor."""
        return cond if self._cond_normalizer is None else self._cond_normalizer.denormalize(cond)

    def to_fields(self, x: Tensor, *, normalized: bool = True) -> xr.Dataset:
        """Turn a batch ``(B, C, *grid)`` back into a physgen-field/1 dataset.

        Channels are split back into the chosen fields (trajectories regain their ``time``
        dim in ``"channels"`` mode) with the file's coordinates and CF attributes, ready for
        :func:`write_fields`. ``normalized=True`` de-normalizes first.
        """
        if tuple(x.shape[1:]) != self.sample_shape:
            raise ValueError(f"expected a batch of shape (B, {self.sample_shape}), got {x.shape}")
        values = (self.denormalize(x) if normalized else x).detach().cpu().double().numpy()
        data, c = {}, 0
        for name in self.fields:
            attrs = dict(self.field_attrs[name])
            if name in self._timed and self.time == "channels":
                block = values[:, c : c + self.n_times]  # (B, T, *grid)
                data[name] = ((SAMPLE_DIM, TIME_DIM, *self.grid_dims), block, attrs)
                c += self.n_times
            else:
                data[name] = ((SAMPLE_DIM, *self.grid_dims), values[:, c], attrs)
                c += 1
        dims = {d for var in data.values() for d in var[0]} - {SAMPLE_DIM}
        coords = {d: (d, self.coords[d], self.coord_attrs[d]) for d in sorted(dims)}
        coords[SAMPLE_DIM] = np.arange(x.shape[0], dtype=np.int64)
        return xr.Dataset(data, coords=coords, attrs={"fields": list(self.fields)})

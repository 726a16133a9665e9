"""Per-process readers of lazily opened physgen-field/1 files, item by item or in batches.

A :class:`LazyFile` caches the h5py dataset handles of the variables it reads. Where a
variable's storage allows it (native float32, no filters, one sample per chunk or a
contiguous layout, no user block) it also caches the byte offset of every sample and reads
items with one ``os.preadv`` straight into the caller's buffer, bypassing HDF5's per-call
selection machinery; other variables are read through h5py. Either way the values are the
stored ones, cast to float32.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

__all__ = ["LazyFile"]

# Read-ahead for chunks of lazily opened files (The Well uses the same 8 MiB).
CHUNK_CACHE_BYTES = 8 * 2**20
_FLOAT32 = np.dtype("=f4")


def _raw_offsets(dset: h5py.Dataset, timed: bool) -> tuple[np.ndarray, int] | None:
    """Byte offsets ``(N, n_chunks_in_time)`` of every stored block and the frames per block.

    ``None`` when the layout does not allow raw reads (filters, another dtype, chunks that
    split a frame or hold several samples, unallocated storage).
    """
    if dset.dtype != _FLOAT32 or dset.id.get_create_plist().get_nfilters() != 0:
        return None
    if dset.file.userblock_size != 0 or dset.ndim < 1 or dset.shape[0] == 0:
        return None
    n = dset.shape[0]
    n_times = dset.shape[1] if timed else 1
    frame_bytes = _FLOAT32.itemsize * int(np.prod(dset.shape[2 if timed else 1 :]))
    if dset.chunks is None:
        start = dset.id.get_offset()
        if start is None:
            return None
        offsets = start + np.arange(n, dtype=np.int64) * (n_times * frame_bytes)
        return offsets[:, None], n_times
    frame_dims = 2 if timed else 1
    if dset.chunks[0] != 1 or tuple(dset.chunks[frame_dims:]) != tuple(dset.shape[frame_dims:]):
        return None
    per_chunk = dset.chunks[1] if timed else 1
    offsets = np.full((n, -(-n_times // per_chunk)), -1, dtype=np.int64)

    def visit(info: h5py.h5d.StoreInfo) -> None:
        key = info.chunk_offset
        offsets[key[0], key[1] // per_chunk if timed else 0] = info.byte_offset

    dset.id.chunk_iter(visit)
    return (offsets, per_chunk) if bool((offsets >= 0).all()) else None


class _Variable:
    """One variable of an open file, read into caller-provided float32 buffers."""

    def __init__(self, dset: h5py.Dataset, fd: int, timed: bool) -> None:
        self.dset, self.fd, self.timed = dset, fd, timed
        self.n_times = dset.shape[1] if timed else 1
        frame_shape = dset.shape[2:] if timed else dset.shape[1:]
        self.frame_bytes = _FLOAT32.itemsize * int(np.prod(frame_shape))
        raw = _raw_offsets(dset, timed)
        self.offsets, self.per_chunk = raw if raw is not None else (None, 1)
        if self.offsets is not None and not self._raw_matches_h5py():
            self.offsets = None

    def _raw_matches_h5py(self) -> bool:
        """Guard: the first item read raw has the same bytes as read by h5py."""
        probe = np.empty(self.dset.shape[1:], dtype=_FLOAT32)
        self.read_sample(0, probe)
        return probe.tobytes() == np.asarray(self.dset[0], dtype=_FLOAT32).tobytes()

    def _pread(self, buffer: memoryview, offset: int) -> None:
        got = os.preadv(self.fd, [buffer], offset)
        if got != len(buffer):
            raise OSError(f"short read of {self.dset.name}: {got} of {len(buffer)} bytes")

    def read_sample(self, sample: int, out: np.ndarray) -> None:
        """``out[...] = var[sample]`` (a trajectory ``(T, *grid)`` for timed variables)."""
        if self.offsets is None:
            out[...] = self.dset[sample]
            return
        view = memoryview(out.reshape(-1).view(np.uint8))
        step = self.per_chunk * self.frame_bytes
        for j, offset in enumerate(self.offsets[sample].tolist()):
            self._pread(view[j * step : (j + 1) * step], offset)

    def read_frame(self, sample: int, frame: int, out: np.ndarray) -> None:
        """``out[...] = var[sample, frame]`` of a timed variable."""
        if self.offsets is None:
            out[...] = self.dset[sample, frame]
            return
        chunk, within = divmod(frame, self.per_chunk)
        offset = int(self.offsets[sample, chunk]) + within * self.frame_bytes
        self._pread(memoryview(out.reshape(-1).view(np.uint8)), offset)


class LazyFile:
    """Read handles of one file for the process that created it (see :meth:`for_process`).

    Args:
        path: the physgen-field/1 file.
        timed: the variables to read, each mapped to whether it has a ``time`` dim.
    """

    def __init__(self, path: str | os.PathLike[str], timed: dict[str, bool]) -> None:
        self.pid = os.getpid()
        self.h5 = h5py.File(Path(path), "r", rdcc_nbytes=CHUNK_CACHE_BYTES)
        self._raw = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        fd = self._raw.fileno()
        self.variables = {name: _Variable(self.h5[name], fd, t) for name, t in timed.items()}

    def close(self) -> None:
        """Close the file (only in the process that opened it)."""
        if self.pid == os.getpid():
            self.h5.close()
            self._raw.close()

    def read(
        self, names: Sequence[str], items: np.ndarray, n_times: int | None, out: np.ndarray
    ) -> None:
        """Fill ``out`` ``(B, C, ...)`` (C-contiguous) with the channels of ``names``.

        With ``n_times=None`` item ``k`` is sample ``items[k]`` and a timed variable fills
        ``T`` channels (its trajectory); otherwise item ``k`` is frame ``items[k] % n_times``
        of sample ``items[k] // n_times`` and every variable fills one channel. Items are read
        in file order and repeated items are read once.
        """
        if not out.flags.c_contiguous:
            raise ValueError("LazyFile.read needs a C-contiguous output buffer")
        order = np.argsort(items, kind="stable").tolist()
        keys = items.tolist()
        samples, frames = (keys, None) if n_times is None else divmod(items, n_times)
        samples = samples if isinstance(samples, list) else samples.tolist()
        frames = None if frames is None else frames.tolist()
        c = 0
        for name in names:
            var = self.variables[name]
            width = var.n_times if var.timed and frames is None else 1
            block = out[:, c : c + width]
            previous = -1
            for k in order:
                if previous >= 0 and keys[k] == keys[previous]:
                    block[k] = block[previous]
                elif var.timed and frames is not None:
                    var.read_frame(samples[k], frames[k], block[k])
                else:
                    var.read_sample(samples[k], block[k].reshape(var.dset.shape[1:]))
                previous = k
            c += width

"""Per-process readers of lazily opened physgen-field/1 files, item by item or in batches.

A :class:`LazyFile` caches the h5py dataset handles of the variables it reads. Where a
variable's storage allows it (native float32, no filters, one sample per chunk or a
contiguous layout, no user block) it also caches the byte offset of every sample and reads
items with one ``os.preadv`` straight into the caller's buffer, bypassing HDF5's per-call
selection machinery; other variables are read through h5py. Either way the values are the
stored ones, cast to float32.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

__all__ = ["LazyFile"]

# Buffers per os.preadv call (the usual IOV_MAX is 1024).
_MAX_BUFFERS = 512
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
        probe = np.empty((1, *self.dset.shape[1:]), dtype=_FLOAT32)
        first = np.zeros(1, np.int64)
        self.read_raw(first, None, first, probe, 0)
        return probe[0].tobytes() == np.asarray(self.dset[0], dtype=_FLOAT32).tobytes()

    def _segments(
        self, samples: np.ndarray, frames: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """File offset, offset within the item's slot and length of every stored piece.

        One piece per item for a frame or a steady variable, one per time chunk for a
        trajectory; pieces are listed item by item.
        """
        assert self.offsets is not None
        if frames is not None and self.timed:
            chunk, within = np.divmod(frames, self.per_chunk)
            where = self.offsets[samples, chunk] + within * self.frame_bytes
            return where, np.zeros_like(where), np.full_like(where, self.frame_bytes)
        n_chunks = self.offsets.shape[1]
        first = np.arange(n_chunks, dtype=np.int64) * self.per_chunk
        length = (np.minimum(first + self.per_chunk, self.n_times) - first) * self.frame_bytes
        where = self.offsets[samples].reshape(-1)
        slot = np.tile(first * self.frame_bytes, len(samples))
        return where, slot, np.tile(length, len(samples))

    def read_raw(
        self,
        samples: np.ndarray,
        frames: np.ndarray | None,
        rows: np.ndarray,
        out: np.ndarray,
        channel: int,
    ) -> None:
        """``out[rows[k], channel : channel + width] = item k`` with ``os.preadv``.

        Items are read in the order given (sorted by file position for sequential access);
        pieces adjacent in the file are read by one call.
        """
        where, slot, length = self._segments(samples, frames)
        item_bytes = out[0].nbytes if len(out) else 0
        per_item = len(where) // max(len(samples), 1)
        dest = np.repeat(rows, per_item) * item_bytes + channel * self.frame_bytes + slot
        view = memoryview(out.reshape(-1).view(np.uint8))
        breaks = np.flatnonzero(where[1:] != where[:-1] + length[:-1]) + 1
        where_l, dest_l, length_l = where.tolist(), dest.tolist(), length.tolist()
        if len(breaks) == len(where) - 1:  # no two pieces adjacent: one call each
            for at, to, n in zip(where_l, dest_l, length_l, strict=True):
                if os.preadv(self.fd, [view[to : to + n]], at) != n:
                    raise OSError(f"short read of {self.dset.name} at byte {at}")
            return
        bounds = np.concatenate([[0], breaks, [len(where)]]).tolist()
        for a, b in itertools.pairwise(bounds):
            for lo in range(a, b, _MAX_BUFFERS):
                hi = min(b, lo + _MAX_BUFFERS)
                buffers = [view[dest_l[i] : dest_l[i] + length_l[i]] for i in range(lo, hi)]
                if os.preadv(self.fd, buffers, where_l[lo]) != sum(length_l[lo:hi]):
                    raise OSError(f"short read of {self.dset.name} at byte {where_l[lo]}")

    def read_h5py(
        self, samples: np.ndarray, frames: np.ndarray | None, rows: np.ndarray, block: np.ndarray
    ) -> None:
        """``block[rows[k]] = var[samples[k]]`` (or ``var[samples[k], frames[k]]``) via h5py."""
        for k, (sample, row) in enumerate(zip(samples.tolist(), rows.tolist(), strict=True)):
            if frames is not None and self.timed:
                block[row, 0] = self.dset[sample, int(frames[k])]
            else:
                block[row] = np.asarray(self.dset[sample]).reshape(block.shape[1:])


class LazyFile:
    """Read handles of one file, valid in the process that opened it (``pid``).

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
        once each, in file order, straight into ``out``; repeats are copied.
        """
        if not out.flags.c_contiguous:
            raise ValueError("LazyFile.read needs a C-contiguous output buffer")
        order = np.argsort(items, kind="stable")
        ranked = items[order]
        fresh = np.ones(len(items), dtype=bool)
        fresh[1:] = ranked[1:] != ranked[:-1]
        unique = ranked[fresh]
        samples, frames = (unique, None) if n_times is None else np.divmod(unique, n_times)
        rows = order[fresh]  # where each distinct item goes
        c = 0
        for name in names:
            var = self.variables[name]
            width = var.n_times if var.timed and frames is None else 1
            if var.offsets is not None:
                var.read_raw(samples, frames, rows, out, c)
            else:
                var.read_h5py(samples, frames, rows, out[:, c : c + width])
            c += width
        if not fresh.all():
            first = np.maximum.accumulate(np.where(fresh, np.arange(len(items)), 0))
            out[order[~fresh]] = out[order[first[~fresh]]]

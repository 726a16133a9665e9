"""Samples/s of ``FieldDataset`` beside plain tensor indexing and hand-written h5py reads.

Writes a physgen-field/1 test file (default 4000 samples × 2 fields × 64², float32, one sample
per chunk, as ``write_fields`` stores it) to a temporary folder and times random batches:

- in memory: ``FieldDataset.get_batch`` against ``x[idx]`` on one ``(N, C, *grid)`` tensor;
- lazy: ``FieldDataset(in_memory=False).get_batch`` against h5py per-sample reads with the
  dataset handles opened once, and against one contiguous-slice read per field of the same
  number of bytes (a random run of ``batch`` consecutive samples).

Every contender reads the same random index lists in a round; rounds alternate the order of
the contenders and ratios are taken within a round. The file sits in the page cache (it was
just written), so the lazy figures measure the read path, not the disk. Run with
``OMP_WAIT_POLICY=PASSIVE`` on a shared machine; the load average is printed.

Usage: ``python studies/benchmarks/dataload.py [--samples 4000] [--grid 64] [--rounds 7]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch
import xarray as xr

from physgen.data import FieldDataset, write_fields

Reader = Callable[[np.ndarray], object]


def make_file(folder: Path, samples: int, fields: int, grid: int) -> Path:
    """The test file: ``fields`` float32 fields ``(samples, grid, grid)`` of noise."""
    rng = np.random.default_rng(0)
    axis = np.arange(grid) / grid
    data = {
        f"f{c}": (("sample", "x", "y"), rng.standard_normal((samples, grid, grid), np.float32))
        for c in range(fields)
    }
    return write_fields(xr.Dataset(data, coords={"x": axis, "y": axis}), folder / "bench.nc")


def memory_readers(path: Path) -> dict[str, Reader]:
    """In-memory contenders: physgen's batch path and plain indexing of one stacked tensor."""
    data = FieldDataset(path, in_memory=True, nonfinite="ignore")
    stacked = data.get_batch(np.arange(len(data)))
    assert isinstance(stacked, torch.Tensor)
    return {
        "physgen get_batch": data.get_batch,
        "x[idx]": lambda idx: stacked[torch.from_numpy(idx)],
    }


def lazy_readers(path: Path, samples: int) -> dict[str, Reader]:
    """Lazy contenders: physgen, h5py per-sample reads with cached handles, slice reads."""
    data = FieldDataset(path, in_memory=False, nonfinite="ignore")
    h5 = h5py.File(path, "r", rdcc_nbytes=8 * 2**20)
    dsets = [h5[name] for name in data.fields]
    shape = data.sample_shape
    starts = np.random.default_rng(1)

    def per_sample(idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), *shape), np.float32)
        for k, i in enumerate(idx.tolist()):
            for c, dset in enumerate(dsets):
                out[k, c] = dset[i]
        return out

    def contiguous(idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), *shape), np.float32)
        first = int(starts.integers(0, samples - len(idx) + 1))
        for c, dset in enumerate(dsets):
            out[:, c] = dset[first : first + len(idx)]
        return out

    return {
        "physgen get_batch": data.get_batch,
        "h5py per-sample (cached handles)": per_sample,
        "h5py contiguous slice": contiguous,
    }


def time_reader(read: Reader, batches: list[np.ndarray]) -> float:
    """Samples/s of ``read`` over ``batches``."""
    start = time.perf_counter()
    for idx in batches:
        read(idx)
    return sum(len(i) for i in batches) / (time.perf_counter() - start)


def run_rounds(
    readers: dict[str, Reader], samples: int, batch: int, n_batches: int, rounds: int
) -> dict[str, list[float]]:
    """Samples/s per contender per round, contender order reversed every other round."""
    rng = np.random.default_rng(2)
    names = list(readers)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up: first touches, handle opening
        time_reader(readers[name], [rng.integers(0, samples, batch) for _ in range(3)])
    for r in range(rounds):
        batches = [rng.permutation(samples)[:batch] for _ in range(n_batches)]
        for name in names if r % 2 == 0 else names[::-1]:
            rates[name].append(time_reader(readers[name], batches))
    return rates


def report(title: str, rates: dict[str, list[float]]) -> None:
    """A markdown table: median samples/s, and physgen's paired ratio to each contender."""
    mine = rates["physgen get_batch"]
    print(f"\n### {title}\n")
    print("| contender | samples/s (median) | physgen / contender, median [min–max] |")
    print("|---|---:|---:|")
    for name, values in rates.items():
        ratios = [a / b for a, b in zip(mine, values, strict=True)]
        spread = f"{statistics.median(ratios):.2f}× [{min(ratios):.2f}–{max(ratios):.2f}]"
        print(f"| {name} | {statistics.median(values):,.0f} | {spread} |")


def main() -> None:
    """Parse the flags, write the file, time both settings, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--fields", type=int, default=2)
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40, help="batches per contender and round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"file: {args.samples} × {args.fields} × {args.grid}² float32, batch {args.batch}, "
        f"{args.batches} batches × {args.rounds} rounds, torch threads {args.threads}"
    )
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = make_file(Path(tmp), args.samples, args.fields, args.grid)
        setting = (args.samples, args.batch, args.batches, args.rounds)
        report("in memory", run_rounds(memory_readers(path), *setting))
        report("lazy (file in page cache)", run_rounds(lazy_readers(path, args.samples), *setting))
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()

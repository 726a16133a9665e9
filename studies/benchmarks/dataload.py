"""Samples/s of ``FieldDataset`` beside plain tensor indexing and hand-written h5py reads.

Writes a physgen-field/1 test file (default 4000 samples × 2 fields × 64², float32, one sample
per chunk, as ``write_fields`` stores it) to a temporary folder and times random batches:

- in memory: ``FieldDataset.get_batch`` against ``x[idx]`` on one ``(N, C, *grid)`` tensor;
- lazy: ``FieldDataset(in_memory=False).get_batch`` against h5py per-sample reads with the
  dataset handles opened once, and against one contiguous-slice read per field of the same
  number of bytes (a random run of ``batch`` consecutive samples).

Every contender reads the same random index lists in a round; the rounds run through
``harness.run_rounds`` (balanced order, wall and CPU time) and ratios are paired per round.
The file sits in the page cache (it was just written), so the lazy figures measure the read
path, not the disk. Run with ``OMP_WAIT_POLICY=PASSIVE`` on a shared machine; the load
average is printed.

Usage: ``OMP_WAIT_POLICY=PASSIVE python studies/benchmarks/dataload.py [--samples 4000]
[--grid 64] [--rounds 7]``
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    Comparison,
    Timing,
    bench_parser,
    comparison_table,
    load_average,
    run_rounds,
)

from physgen.data import FieldDataset, write_fields

Reader = Callable[[np.ndarray], object]
OURS = "physgen get_batch"


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
        OURS: data.get_batch,
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
        OURS: data.get_batch,
        "h5py per-sample (cached handles)": per_sample,
        "h5py contiguous slice": contiguous,
    }


def run_reader_rounds(
    readers: dict[str, Reader], samples: int, batch: int, n_batches: int, rounds: int
) -> dict[str, list[Timing]]:
    """Time each reader over the same ``n_batches`` random index lists per round."""
    rng = np.random.default_rng(2)
    batches: list[np.ndarray] = [rng.integers(0, samples, batch) for _ in range(3)]  # warm-up

    def new_round(_: int) -> None:
        batches[:] = [rng.permutation(samples)[:batch] for _ in range(n_batches)]

    def reading(read: Reader) -> Callable[[], None]:
        def run() -> None:
            for idx in batches:
                read(idx)

        return run

    contenders = {name: reading(read) for name, read in readers.items()}
    return run_rounds(contenders, rounds, warmup=1, before_round=new_round)


def report(
    title: str, times: dict[str, list[Timing]], batch: int, n_batches: int, load_start: str
) -> None:
    """Median samples/s per contender, and physgen's paired speed ratio to each."""
    print(f"\n### {title}\n")
    print("| contender | samples/s (wall, median) |")
    print("|---|---:|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(batch * n_batches / t.wall for t in ts):,.0f} |")
    print()
    rows = [
        Comparison(OURS, name, "same bytes, one contiguous run" if "slice" in name else
                   "same index lists")
        for name in times
        if name != OURS
    ]  # fmt: skip
    print(comparison_table(times, rows, load_start, load_average()))


def main() -> None:
    """Parse the flags, write the file, time both settings, print the tables."""
    parser = bench_parser(__doc__, rounds=7)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--fields", type=int, default=2)
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40, help="batches per contender and round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"file: {args.samples} × {args.fields} × {args.grid}² float32, batch {args.batch}, "
        f"{args.batches} batches × {args.rounds} rounds, torch threads {args.threads}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = make_file(Path(tmp), args.samples, args.fields, args.grid)
        setting = (args.samples, args.batch, args.batches, args.rounds)
        shape = (args.batch, args.batches)
        load = load_average()
        memory = run_reader_rounds(memory_readers(path), *setting)
        report("in memory", memory, *shape, load)
        load = load_average()
        lazy = run_reader_rounds(lazy_readers(path, args.samples), *setting)
        report("lazy (file in page cache)", lazy, *shape, load)


if __name__ == "__main__":
    main()

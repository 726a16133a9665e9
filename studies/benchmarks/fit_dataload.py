"""Is ``fit`` data-bound on a large lazy file? The share of each step spent waiting for data.

Writes a physgen-field/1 file larger than ``FieldDataset``'s in-memory threshold (default
80,000 samples × 2 fields × 64², float32: 2.6 GB, one sample per chunk as ``write_fields``
stores it), opens it lazily as ``physgen train`` would, and trains the default VAE of
``physgen train --model vae`` (``VAE.for_shape``) with ``physgen.training.fit`` at the CLI's
batch of 64. Every batch ``fit`` draws goes through a timing wrapper around its batch
stream, so the report splits the run's wall time into

- data: time spent inside ``next(stream)`` (the read of a random batch of 64 samples from the
  file, the z-scoring, and with ``--workers`` > 0 the wait on the loader's processes);
- step: everything else from the first training batch to the end of ``fit`` (forward,
  backward, optimizer, logging, the final checkpoint); the set-up before it is left out.

Before training, the file's pages are dropped from the page cache
(``posix_fadvise(DONTNEED)``), so the first reads come from the disk, as they would for a
file larger than memory; later reads of the same samples may hit the cache. The target is a
data share under 20 % of the step time. Run with ``OMP_WAIT_POLICY=PASSIVE`` on a shared
machine; the load average is printed.

Usage: ``OMP_WAIT_POLICY=PASSIVE python studies/benchmarks/fit_dataload.py [--samples 80000]
[--steps 60] [--workers 0 2] [--folder DIR]``
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import bench_parser, load_average

from physgen.data import FieldDataset, compute_stats, write_fields
from physgen.models.base import get_model_class

__all__ = ["TimedStream", "data_share", "make_large_file"]

# The module, not the function ``physgen.training.fit`` that shadows it on the package.
fit_module = importlib.import_module("physgen.training.fit")
BLOCK = 5000  # samples written per block: bounds the writer's memory


class TimedStream:
    """Wraps ``fit``'s batch iterator and adds the seconds spent in each ``next`` call."""

    def __init__(self, stream: Iterator[Any]) -> None:
        self.stream = stream
        self.seconds = 0.0
        self.batches = 0
        self.first_call: float | None = None  # perf_counter at the first next()

    def __iter__(self) -> TimedStream:
        return self

    def __next__(self) -> Any:
        start = time.perf_counter()
        if self.first_call is None:
            self.first_call = start
        item = next(self.stream)
        self.seconds += time.perf_counter() - start
        self.batches += 1
        return item


def data_share(data_seconds: float, total_seconds: float) -> float:
    """The fraction of a run's wall time spent waiting for data: data / total, in [0, 1]."""
    if total_seconds <= 0 or not 0 <= data_seconds <= total_seconds:
        raise ValueError(
            f"need 0 <= data_seconds <= total_seconds and total_seconds > 0, "
            f"got data_seconds={data_seconds}, total_seconds={total_seconds}"
        )
    return data_seconds / total_seconds


def make_large_file(path: Path, samples: int, fields: int, grid: int) -> Path:
    """A file of ``fields`` float32 noise fields ``(samples, grid, grid)``, written in blocks
    of :data:`BLOCK` samples appended along ``sample`` (memory stays at one block)."""
    axis = np.arange(grid) / grid
    parts = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        for k, start in enumerate(range(0, samples, BLOCK)):
            n = min(BLOCK, samples - start)
            block = {
                f"f{c}": (("sample", "x", "y"), rng.standard_normal((n, grid, grid), np.float32))
                for c in range(fields)
            }
            ds = xr.Dataset(block, coords={"x": axis, "y": axis})
            parts.append(write_fields(ds, Path(tmp) / f"part{k:04d}.nc"))
        from physgen.data import join_fields

        return join_fields(parts, path)


def _drop_page_cache(path: Path) -> bool:
    """Ask the kernel to drop the file's cached pages (Linux); False where unsupported."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def run(path: Path, steps: int, workers: int, stats: dict[str, Any]) -> dict[str, float]:
    """Trains the CLI's default VAE for ``steps`` steps on the lazy file; data and total s."""
    data = FieldDataset(path, stats=stats, in_memory=False)
    torch.manual_seed(0)
    model = get_model_class("vae").for_shape(data.sample_shape, None)
    original = fit_module.batches
    timed: list[TimedStream] = []

    def timed_batches(*args: Any, **kwargs: Any) -> Iterator[Any]:
        stream = TimedStream(original(*args, **kwargs))
        timed.append(stream)
        return stream

    dropped = _drop_page_cache(path)
    fit_module.batches = timed_batches
    try:
        fit_module.fit(model, data, steps=steps, batch_size=64, num_workers=workers, progress=False)
        end = time.perf_counter()
    finally:
        fit_module.batches = original
    # The first stream is fit's initialization batch; the training stream is the longest.
    # Its time runs from its first read to the end of fit (the set-up before is left out).
    stream = max(timed, key=lambda s: s.batches)
    assert stream.first_call is not None
    return {
        "data_s": stream.seconds,
        "total_s": end - stream.first_call,
        "batches": stream.batches,
        "dropped": float(dropped),
    }


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, rounds=1)
    parser.add_argument("--samples", type=int, default=80_000)
    parser.add_argument("--fields", type=int, default=2)
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60, help="training steps per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--folder", type=Path, default=None, help="keep the file here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="physgen-fit-dataload-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "large.nc"
    if not path.is_file():
        print(f"writing {path} ...", flush=True)
        make_large_file(path, args.samples, args.fields, args.grid)
    size_gb = path.stat().st_size / 1e9
    stats = compute_stats(path)
    print(
        f"# file: {args.samples} × {args.fields} × {args.grid}² float32, {size_gb:.2f} GB; "
        f"default VAE, batch 64, {args.steps} steps per run; torch threads {args.threads}"
    )
    print(f"# load average at start: {load_average()}")
    print("\n| workers | round | data s | total s | data share | page cache dropped |")
    print("|---:|---:|---:|---:|---:|---|")
    for r in range(args.rounds):
        for workers in args.workers if r % 2 == 0 else list(reversed(args.workers)):
            m = run(path, args.steps, workers, stats)
            share = data_share(m["data_s"], m["total_s"])
            dropped = "yes" if m["dropped"] else "no"
            print(
                f"| {workers} | {r + 1} | {m['data_s']:.2f} | {m['total_s']:.2f} | "
                f"{100 * share:.1f} % | {dropped} |",
                flush=True,
            )
    print(f"\n# load average at end: {load_average()}")


if __name__ == "__main__":
    main()

"""Peak resident memory of ``physgen data make`` and ``write_fields`` on big data.

Each measurement runs in a fresh child process, which reports its own resident set size
(``VmRSS``) before the operation and its peak (``VmHWM``, reset through
``/proc/self/clear_refs`` just before the operation where the kernel allows it) from
``/proc/self/status``; the table gives both and their difference, the memory the operation
itself needed. Linux only.

- ``make N``: ``make_dataset`` of a 2-D periodic Matérn field on 128² (``grf``), ``N``
  training samples of 64 KiB each (float32), in blocks of the default size (128 samples,
  8 MiB), one worker. The peak covers generation, the join of the blocks into ``train.nc``
  and ``stats.json``; the next two rows time two of these phases alone:
- ``join N``: the join (``physgen.recipes._join``) of ``N`` samples of random float32 fields
  already written as blocks of the default size;
- ``stats N``: ``compute_stats`` of a file of ``N`` such samples.
- ``write N dtype``: ``write_fields`` of one in-memory field ``(N, 128, 128)`` of that dtype
  (float64 is cast to the stored float32). The array itself is in the "before" column.

Usage: ``python studies/benchmarks/memory.py [--make 1000 6000] [--write 8000]``; measured
figures are in this folder's README.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_RECIPE = """problem = "grf"
seed = 0
[params]
kernel = "matern"
dim = 2
n = {n}
length = 0.1
nu = 1.5
periodic = true
[splits]
train = {samples}
"""


def _status_kib(key: str) -> int:
    """A ``/proc/self/status`` entry in KiB (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(key)


def _reset_peak() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ≥ 4.0); False where it is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _field(samples: int, grid: int, dtype: str, start: int = 0, seed: int = 0):
    """A dataset of one random field ``u`` of ``samples`` × ``grid``² values."""
    import numpy as np
    import xarray as xr

    rng = np.random.default_rng(seed)
    values = rng.standard_normal((samples, grid, grid), dtype=np.float32).astype(dtype)
    axis = np.linspace(0.0, 1.0, grid, endpoint=False)
    coords = {"sample": np.arange(start, start + samples), "x": axis, "y": axis}
    return xr.Dataset({"u": (("sample", "x", "y"), values)}, coords=coords)


def _child(case: str, samples: int, grid: int, dtype: str, folder: Path) -> dict[str, object]:
    """Run one case in this process; return the MiB before, at peak, and the data size."""
    from physgen import recipes
    from physgen.data import compute_stats, write_fields

    data_mib = samples * grid * grid * 4 / 2**20
    recipe = folder / "grf-big.toml"
    recipe.write_text(_RECIPE.format(n=grid, samples=samples))
    if case == "make":
        work = lambda: recipes.make_dataset(recipe, folder / "out", progress=False)  # noqa: E731
    elif case == "join":  # blocks of the default size, written beforehand
        size = max(1, 8 * 2**20 // (4 * grid * grid))
        blocks = []
        for lo in range(0, samples, size):
            block = _field(min(size, samples - lo), grid, "float32", start=lo, seed=lo)
            blocks.append(write_fields(block, folder / f"train-{lo:09d}.nc"))
        loaded = recipes.load_recipe(recipe)
        work = lambda: recipes._join(blocks, folder / "train.nc", loaded, "train")  # noqa: E731
    elif case == "stats":
        path = write_fields(_field(samples, grid, "float32"), folder / "train.nc")
        work = lambda: compute_stats(path)  # noqa: E731
    else:
        ds = _field(samples, grid, dtype)
        work = lambda: write_fields(ds, folder / "big.nc")  # noqa: E731
    before = _status_kib("VmRSS")
    reset = _reset_peak()
    work()
    peak = _status_kib("VmHWM")
    return {"before": before / 1024, "peak": peak / 1024, "data": data_mib, "reset": reset}


def _measure(case: str, samples: int, grid: int, dtype: str) -> dict[str, object]:
    """Run ``case`` in a child process and return its report."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("PHYSGEN_BENCH_DIR")) as tmp:
        args = [sys.executable, __file__, "--child", case, str(samples), str(grid), dtype, tmp]
        done = subprocess.run(args, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{case} {samples}: child failed:\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--make", type=int, nargs="*", default=[1000, 6000], help="samples")
    parser.add_argument("--write", type=int, nargs="*", default=[8000], help="samples")
    parser.add_argument("--grid", type=int, default=128, help="points per side")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, samples, grid, dtype, folder = args.child
        print(json.dumps(_child(case, int(samples), int(grid), dtype, Path(folder))))
        return
    cases = [(case, n, "float32") for n in args.make for case in ("make", "join", "stats")]
    cases += [("write", n, dt) for n in args.write for dt in ("float32", "float64")]
    print(f"grid {args.grid}², load average at start: {os.getloadavg()}\n")
    print("| operation | data (MiB) | RSS before (MiB) | peak RSS (MiB) | peak − before (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for case, samples, dtype in cases:
        r = _measure(case, samples, args.grid, dtype)
        name = {
            "make": "data make",
            "join": "  its join of the blocks alone",
            "stats": "  its stats.json alone",
            "write": f"write_fields of {dtype}",
        }[case] + f", {samples} samples"
        if not r["reset"]:
            name += " (peak not reset)"
        extra = float(r["peak"]) - float(r["before"])
        print(
            f"| {name} | {r['data']:,.0f} | {r['before']:,.0f} | {r['peak']:,.0f} | {extra:,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

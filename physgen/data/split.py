"""Split one physgen-field/1 file into a data-set folder: train/valid/test files and stats.json.

The samples are shuffled with a seeded generator and cut by fractions (default 0.8/0.1/0.1);
each split keeps the file's order and its ``sample`` coordinate, so every sample can be traced
back to the source. The folder is built under a temporary name beside the target and renamed
into place, so an interrupted split leaves no half data set. ``split.json`` records the source
file, the fractions, the seed and the sizes; asking again for the same split of the same file
reuses the folder.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from physgen.data.atomic import _umask, write_json_atomic
from physgen.data.fields import SAMPLE_DIM, field_names, open_fields, write_fields
from physgen.data.stats import compute_stats, save_stats

__all__ = [
    "DEFAULT_FRACTIONS",
    "SPLIT_NAMES",
    "SplitResult",
    "check_fractions",
    "split_counts",
    "split_fields",
    "split_indices",
]

SPLIT_NAMES = ("train", "valid", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
_RECORD = "split.json"
_RECORD_SCHEMA = "physgen-split/1"


@dataclass(frozen=True)
class SplitResult:
    """Where a split went: the folder, its files, their sizes, and whether it was reused."""

    folder: Path
    files: dict[str, Path]
    sizes: dict[str, int]
    stats: Path
    reused: bool

    def summary(self) -> str:
        """One line: the sizes, the folder and the statistics file."""
        sizes = ", ".join(f"{k} {v}" for k, v in self.sizes.items())
        verb = "reused split" if self.reused else "split"
        return f"{verb} in {self.folder} ({sizes} samples); training statistics in {self.stats}"


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative fractions (train, valid, test) summing to 1, train positive."""
    values = tuple(float(f) for f in fractions)
    if (
        len(values) != 3
        or any(not math.isfinite(f) or f < 0 for f in values)
        or abs(sum(values) - 1.0) > 1e-6
        or values[0] <= 0
    ):
        raise ValueError(
            "split fractions must be three non-negative numbers (train valid test) summing "
            f"to 1 with train > 0, got {list(fractions)}"
        )
    return values  # type: ignore[return-value]


def split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Sample counts per split: ``floor(f n)``, the remainder to the largest remainders.

    The counts sum to ``n``; ties go to the earlier split (train first).
    """
    fracs = check_fractions(fractions)
    raw = [f * n for f in fracs]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(3), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts[0], counts[1], counts[2]


def split_indices(n: int, fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """Sorted positions along ``sample`` of each non-empty split; disjoint, union ``0..n-1``."""
    order = np.random.default_rng(seed).permutation(n)
    out, start = {}, 0
    for name, count in zip(SPLIT_NAMES, split_counts(n, fractions), strict=True):
        if count:
            out[name] = np.sort(order[start : start + count])
        start += count
    return out


def _identity(source: Path, fractions: Sequence[float], seed: int) -> dict[str, object]:
    """What decides a split: the source file (path, size, modification time), fractions, seed."""
    info = source.stat()
    return {
        "source": str(source.resolve()),
        "source_bytes": info.st_size,
        "source_mtime_ns": info.st_mtime_ns,
        "fractions": list(check_fractions(fractions)),
        "seed": int(seed),
    }


def _existing(folder: Path, wanted: dict[str, object]) -> SplitResult | None:
    """The split already in ``folder`` if it was made from the same request, else None.

    A folder holding anything else is refused: splitting never overwrites data.
    """
    record = folder / _RECORD
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return None
    if not folder.is_dir():
        raise NotADirectoryError(f"cannot split into {folder}: it is a file, not a folder")
    try:
        doc = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        doc = None
    if not isinstance(doc, dict) or any(doc.get(k) != v for k, v in wanted.items()):
        raise ValueError(
            f"{folder} already exists and holds other data than this split of "
            f"{wanted['source']} (fractions {wanted['fractions']}, seed {wanted['seed']}); "
            "choose another output folder or delete it"
        )
    sizes = {k: int(v) for k, v in doc["sizes"].items()}
    files = {k: folder / f"{k}.nc" for k in sizes}
    return SplitResult(folder, files, sizes, folder / "stats.json", reused=True)


def _stats_names(ds: xr.Dataset) -> list[str]:
    """The fields and the floating per-sample variables (e.g. a parameter ``nu(sample)``)."""
    names = field_names(ds)
    extra = [
        str(v)
        for v in ds.data_vars
        if v not in names and ds[v].dims == (SAMPLE_DIM,) and ds[v].dtype.kind == "f"
    ]
    return names + extra


def split_fields(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> SplitResult:
    """Split the physgen-field/1 file ``source`` into the data-set folder ``out``.

    Writes ``train.nc``, ``valid.nc`` and ``test.nc`` (a split with no samples is left out),
    ``stats.json`` computed on the training split, and ``split.json``. The folder appears
    complete or not at all. An existing ``out`` made by the same request is reused; one
    holding anything else is refused.

    Args:
        source: the field file.
        out: the folder to create.
        fractions: train, valid and test fractions (non-negative, summing to 1).
        seed: seed of the shuffle; the same seed gives the same split.

    Returns:
        The folder, the files and sizes per split, and the statistics file.
    """
    source, folder = Path(source), Path(out)
    wanted = _identity(source, fractions, seed)
    found = _existing(folder, wanted)
    if found is not None:
        return found
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open_fields(source) as ds:
        parts = split_indices(ds.sizes[SAMPLE_DIM], fractions, seed)
        if len(parts["train"]) < 2:
            raise ValueError(
                f"{source}: {ds.sizes[SAMPLE_DIM]} samples leave fewer than 2 for training"
            )
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        try:
            files = _write_parts(ds, parts, tmp, source, seed)
            stats = compute_stats(files["train"], _stats_names(ds))
            save_stats(stats, tmp / "stats.json", source="train.nc")
            sizes = {k: len(v) for k, v in parts.items()}
            write_json_atomic({"schema": _RECORD_SCHEMA, **wanted, "sizes": sizes}, tmp / _RECORD)
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; give a plain mkdir's mode
            if folder.is_dir():
                folder.rmdir()  # empty (checked above); a rename cannot replace a folder
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    files = {k: folder / f"{k}.nc" for k in parts}
    return SplitResult(folder, files, sizes, folder / "stats.json", reused=False)


def _write_parts(
    ds: xr.Dataset, parts: dict[str, np.ndarray], folder: Path, source: Path, seed: int
) -> dict[str, Path]:
    """Write each split's samples as ``<split>.nc`` with the source's attributes."""
    files = {}
    for name, index in parts.items():
        provenance = {"split": name, "split_of": str(source), "split_seed": int(seed)}
        files[name] = write_fields(
            ds.isel({SAMPLE_DIM: index}), folder / f"{name}.nc", provenance=provenance
        )
    return files

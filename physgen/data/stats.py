"""Per-field statistics of a training split (mean, std, min, max), stored as ``stats.json``."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from physgen.data.atomic import write_json_atomic
from physgen.data.fields import SAMPLE_DIM, field_names, iter_sample_blocks, open_fields

__all__ = ["STATS_SCHEMA", "FieldStats", "compute_stats", "load_stats", "save_stats"]

STATS_SCHEMA = "physgen-stats/1"


@dataclass(frozen=True)
class FieldStats:
    """Statistics of one field over all samples, times and grid points.

    ``std`` is the population standard deviation (ddof = 0); ``count`` the number of values.
    """

    mean: float
    std: float
    min: float
    max: float
    count: int

    @property
    def scale(self) -> float:
        """The divisor for z-scoring: ``std``, or 1 for a constant field (avoids 0/0)."""
        return self.std if self.std > 0 else 1.0


def _joined_blocks(parts: Sequence[xr.DataArray], block_bytes: int) -> Iterator[np.ndarray]:
    """The blocks :func:`iter_sample_blocks` yields for ``parts`` concatenated along
    ``sample``, read part by part: a block that spans two parts is pieced together."""
    if len(parts) == 1:
        yield from (block for _, block in iter_sample_blocks(parts[0], block_bytes))
        return
    n = sum(p.sizes[SAMPLE_DIM] for p in parts)
    per_sample = max(1, sum(p.size for p in parts) // max(n, 1) * parts[0].dtype.itemsize)
    step = max(1, block_bytes // per_sample)
    pending: list[np.ndarray] = []
    held = 0
    for part in parts:
        count, pos = part.sizes[SAMPLE_DIM], 0
        while pos < count:
            take = min(step - held, count - pos)
            piece = part.isel({SAMPLE_DIM: slice(pos, pos + take)}).values
            pending.append(np.asarray(piece))
            held, pos = held + take, pos + take
            if held == step:
                yield pending[0] if len(pending) == 1 else np.concatenate(pending)
                pending, held = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else np.concatenate(pending)


def _block_moments(block: np.ndarray, name: str, source: str) -> tuple[int, float, float]:
    """Count, mean and squared-deviation sum of one block, in float64.

    Its float64 copies live only in this call, so they are freed before the next block is
    read.
    """
    values = block.astype(np.float64, copy=False).ravel()
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{source}: field {name!r} holds NaN/Inf; cannot compute stats")
    if values.size == 0:
        return 0, 0.0, 0.0
    mean = float(values.mean())
    if np.shares_memory(values, block):  # the caller's values: leave them alone
        deviation = values - mean
    else:  # a float64 copy made above: reuse its memory
        deviation = np.subtract(values, mean, out=values)
    return values.size, mean, float(np.square(deviation, out=deviation).sum())


def _field_stats(
    parts: Sequence[xr.DataArray], name: str, source: str, block_bytes: int
) -> FieldStats:
    """One pass over ``parts`` in float64, merging block moments with Chan et al.'s update.

    For blocks A, B with counts n_A, n_B, means m_A, m_B and squared-deviation sums M2:
    δ = m_B − m_A, m = m_A + δ n_B / n, M2 = M2_A + M2_B + δ² n_A n_B / n (Chan, Golub &
    LeVeque 1979). This avoids the cancellation of the naive Σx² − n·m² formula.
    """
    count, mean, m2 = 0, 0.0, 0.0
    lo, hi = math.inf, -math.inf
    for block in _joined_blocks(parts, block_bytes):
        n_b, mean_b, m2_b = _block_moments(block, name, source)
        if n_b == 0:
            continue
        total = count + n_b
        delta = mean_b - mean
        mean += delta * n_b / total
        m2 += m2_b + delta * delta * count * n_b / total
        count = total
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        del block  # before the next block is read
    if count == 0:
        raise ValueError(f"{source}: field {name!r} is empty; cannot compute stats")
    return FieldStats(mean=mean, std=math.sqrt(m2 / count), min=lo, max=hi, count=count)


def compute_stats(
    data: xr.Dataset | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    names: Sequence[str] | None = None,
    *,
    block_bytes: int = 64 * 2**20,
) -> dict[str, FieldStats]:
    """Per-field statistics of a physgen-field/1 dataset; call it on the training split only.

    Args:
        data: an open dataset, the path of a field file, or a list of paths of files that
            concatenate along ``sample`` to the dataset (e.g. the shards of a split); the
            files are read one block at a time and give the same statistics as their
            concatenation.
        names: the fields (default: the (first) file's ``fields``); per-sample variables such
            as a parameter ``nu(sample)`` may be named too.
        block_bytes: memory per read (whole samples; at least one).

    Returns:
        ``{name: FieldStats}`` in the order of ``names``.
    """
    if isinstance(data, xr.Dataset):
        return _stats_of([data], names, "<dataset>", block_bytes)
    paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    with contextlib.ExitStack() as stack:
        parts = [stack.enter_context(open_fields(p, nonfinite="ignore")) for p in paths]
        return _stats_of(parts, names, ", ".join(map(str, paths)), block_bytes)


def _stats_of(
    parts: Sequence[xr.Dataset], names: Sequence[str] | None, source: str, block_bytes: int
) -> dict[str, FieldStats]:
    chosen = list(field_names(parts[0]) if names is None else names)
    for name in chosen:
        for ds in parts:
            if name not in ds.data_vars:
                raise KeyError(
                    f"{source}: no variable {name!r} (variables: {sorted(ds.data_vars)})"
                )
    return {
        name: _field_stats([ds[name] for ds in parts], name, source, block_bytes) for name in chosen
    }


def save_stats(
    stats: Mapping[str, FieldStats], path: str | os.PathLike[str], *, source: str = ""
) -> Path:
    """Write ``stats`` as ``stats.json`` (atomically); ``source`` names the training file."""
    doc = {
        "schema": STATS_SCHEMA,
        "source": source,
        "fields": {name: asdict(s) for name, s in stats.items()},
    }
    return write_json_atomic(doc, path)


def load_stats(path: str | os.PathLike[str]) -> dict[str, FieldStats]:
    """Read a ``stats.json`` written by :func:`save_stats`; errors name the file and the key."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("schema") != STATS_SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{path}: expected schema {STATS_SCHEMA!r}, found {found!r}")
    out = {}
    for name, entry in doc.get("fields", {}).items():
        try:
            out[name] = FieldStats(
                mean=float(entry["mean"]),
                std=float(entry["std"]),
                min=float(entry["min"]),
                max=float(entry["max"]),
                count=int(entry["count"]),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"{path}: field {name!r} lacks a valid entry {err}") from None
    return out

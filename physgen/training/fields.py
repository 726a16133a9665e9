"""What a checkpoint must know about its training fields to write samples as physgen-field/1."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import xarray as xr
from torch import Tensor

from physgen.data import FieldDataset, FieldStats, Normalizer, load_stats
from physgen.data.fields import MEMBER_DIM, SAMPLE_DIM, TIME_DIM

__all__ = ["describe_fields", "samples_to_fields", "stats_table"]


def _plain(value: Any) -> Any:
    """JSON-able (hence checkpoint-safe) copy of attributes read from a file."""
    return json.loads(json.dumps(value, default=lambda v: np.asarray(v).tolist()))


def describe_fields(
    data: FieldDataset,
    stats_path: str | os.PathLike[str] | Mapping[str, FieldStats] | None = None,
) -> dict[str, Any]:
    """A plain-data description of ``data``'s channels, grid and normalization.

    ``stats_path`` is the ``stats.json`` the data were normalized with, or the statistics
    themselves (computed where a data set has no such file).

    Stored in checkpoints by ``physgen train`` so that ``physgen sample`` can de-normalize
    samples and write them with the training file's field names, units and coordinates, even
    where that file is gone.
    """
    norm = data.normalizer
    if stats_path is None:
        stats: Mapping[str, FieldStats] = {}
    elif isinstance(stats_path, Mapping):
        stats = stats_path
    else:
        stats = load_stats(stats_path)
    keep = {c.split("[", 1)[0] for c in data.channels + data.cond_channels}
    return _plain(
        {
            "source": str(data.path),
            "fields": data.fields,
            "cond_fields": data.cond_fields,
            "channels": data.channels,
            "cond_channels": data.cond_channels,
            "time": data.time,
            "n_times": data.n_times,
            "grid_dims": list(data.grid_dims),
            "sample_shape": list(data.sample_shape),
            "cond_shape": None if data.cond_shape is None else list(data.cond_shape),
            "coords": {k: np.asarray(v).tolist() for k, v in data.coords.items() if k != "sample"},
            "coord_attrs": data.coord_attrs,
            "field_attrs": data.field_attrs,
            "mean": None if norm is None else norm.mean.flatten().tolist(),
            "scale": None if norm is None else norm.scale.flatten().tolist(),
            "stats": {k: asdict(v) for k, v in stats.items() if k in keep},
        }
    )


def stats_table(description: dict[str, Any]) -> dict[str, FieldStats] | None:
    """The stored normalization statistics as :class:`FieldStats`, or ``None``."""
    stats = description.get("stats") or {}
    return {k: FieldStats(**v) for k, v in stats.items()} or None


def samples_to_fields(
    x: Tensor,
    description: dict[str, Any],
    *,
    members: int | None = None,
    sample_coord: np.ndarray | None = None,
) -> xr.Dataset:
    """Normalized model samples ``(B, C, *grid)`` → a physgen-field/1 dataset in physical units.

    Channels split back into the described fields (trajectories stored as channels regain
    their ``time`` dim). With ``members=M`` the batch holds ``M`` consecutive draws per case and
    the fields get dims ``(sample, member, ...)``, the ensemble layout ``physgen evaluate``
    scores.
    """
    if tuple(x.shape[1:]) != tuple(description["sample_shape"]):
        raise ValueError(
            f"samples have shape {tuple(x.shape[1:])}, the checkpoint's fields "
            f"{tuple(description['sample_shape'])}"
        )
    grid = tuple(description["grid_dims"])
    if description["mean"] is not None:
        x = Normalizer(description["mean"], description["scale"], len(grid)).denormalize(x)
    values = x.detach().cpu().double().numpy()
    lead: tuple[str, ...] = (SAMPLE_DIM,)
    if members is not None:
        values = values.reshape(-1, members, *values.shape[1:])  # (N, M, C, *grid)
        lead = (SAMPLE_DIM, MEMBER_DIM)
    axis = len(lead)  # the channel axis
    channels, data, c = description["channels"], {}, 0
    for name in description["fields"]:
        width = sum(1 for label in channels if label.split("[", 1)[0] == name)
        attrs = dict(description["field_attrs"].get(name, {}))
        if channels[c] != name:  # frames of a trajectory stored as channels "name[t]"
            block = values.take(range(c, c + width), axis=axis)  # (..., T, *grid)
            data[name] = ((*lead, TIME_DIM, *grid), block, attrs)
        else:
            data[name] = ((*lead, *grid), values.take(c, axis=axis), attrs)
        c += width
    used = {d for var in data.values() for d in var[0]} - {SAMPLE_DIM, MEMBER_DIM}
    coords: dict[str, Any] = {
        d: (d, description["coords"][d], description["coord_attrs"].get(d, {}))
        for d in sorted(used)
    }
    n = values.shape[0]
    coords[SAMPLE_DIM] = np.arange(n, dtype=np.int64) if sample_coord is None else sample_coord
    if members is not None:
        coords[MEMBER_DIM] = np.arange(members, dtype=np.int64)
    return xr.Dataset(data, coords=coords, attrs={"fields": list(description["fields"])})

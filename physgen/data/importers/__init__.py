"""Importers: PDEBench HDF5, The Well HDF5 and FNO ``.mat`` files → physgen-field/1.

Each ``read_*`` function returns an in-memory ``xarray.Dataset`` with named dims
``(sample, [time], x[, y[, z]])`` and coordinates; :func:`import_fields` also writes it with
:func:`~physgen.data.write_fields` (atomically, so a failed import leaves no output). The source
file is read through h5py (or scipy for MATLAB v5) one selected block at a time; pass
``samples=slice(...)`` to import part of a file that does not fit in memory.

Key maps (source → physgen variable):

- PDEBench single-array: ``tensor`` ``(N, nt, *grid)`` → ``u``; Darcy ``nu`` → ``a`` and
  ``tensor[:, 0]`` → ``u``; CFD ``density, pressure, Vx, Vy, Vz`` → ``rho, p, vx, vy, vz``;
  ``{x,y,z}-coordinate`` → ``x, y, z``; ``t-coordinate[:nt]`` → ``time`` (PDEBench stores nt+1
  times for nt frames). Seed groups ``/NNNN/data`` ``(t, *grid, c)`` → one variable per channel,
  coordinates from ``/NNNN/grid``, ``sample`` and ``seed`` ← int(NNNN).
- The Well: ``t0_fields/F`` → ``F``; ``t1_fields/V[..., d]`` → ``V_x, V_y, V_z``;
  ``t2_fields/S[..., i, j]`` → ``S_xx, S_xy, ...``; coordinates from ``dimensions/``;
  ``boundary_conditions/*/@bc_type`` → ``bc_x, bc_y``; ``scalars/*`` → global attributes
  (constants) or per-sample variables; missing ``sample_varying``/``time_varying``/
  ``dim_varying`` flags default to True.
- FNO ``.mat``: Navier–Stokes ``u`` (N, s, s, T), time last → ``w`` (N, T, s, s), ``a`` → ``w0``,
  ``t`` → ``time``; Darcy ``coeff, sol`` → ``a, u`` on the node grid of [0, 1]²; Burgers
  ``a, u`` (N, s) → ``a, u`` on the periodic grid of [0, 1). MATLAB v7.3 files are HDF5 with
  every array stored axis-reversed; they are read through h5py and transposed back.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr

from physgen.data.fields import write_fields
from physgen.data.importers.fno import read_fno
from physgen.data.importers.pdebench import read_pdebench
from physgen.data.importers.well import read_well

__all__ = [
    "READERS",
    "import_fields",
    "read_fno",
    "read_pdebench",
    "read_well",
]

READERS: dict[str, Callable[..., xr.Dataset]] = {
    "pdebench": read_pdebench,
    "well": read_well,
    "fno": read_fno,
}


def import_fields(
    kind: str, src: str | os.PathLike[str], dst: str | os.PathLike[str], **options: Any
) -> Path:
    """Convert ``src`` (a ``kind`` file: ``pdebench``, ``well`` or ``fno``) to physgen-field/1.

    ``options`` go to the reader (``samples``, ``channel_names``, ``subsample``). The output is
    written atomically: when reading or writing fails, nothing exists under ``dst``.

    Example:
        >>> import_fields("fno", "ns_data.mat", "ns.nc", samples=slice(0, 100))  # doctest: +SKIP
    """
    if kind not in READERS:
        raise ValueError(f"unknown importer {kind!r}; expected one of {', '.join(READERS)}")
    return write_fields(READERS[kind](src, **options), dst)

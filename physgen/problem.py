"""The Problem protocol (parameters, grid, fields, generator, residual, constraints) and its loader.

A problem is one Python module in the problems folder (``physgen.paths.find_project_dir``:
the top-level ``problems/`` of a checkout, or the copy installed as ``physgen/problems``), or
any file a user points at, defining one concrete subclass of :class:`Problem`.
``load("darcy")`` finds ``problems/darcy.py``; ``load("path/to/my_problem.py", n=32)`` imports
a user's file. Installed packages add problems through the entry-point group
``physgen.problems`` (``name = "module:Class"``); a name in the problems folder comes first.

A problem named by data — a field file's ``problem`` attribute, a checkpoint's model config —
goes through :func:`load_registered` instead, which accepts only a registered name: a module
inside the problems folder or an entry point of an installed package, never a path. Importing
a module runs its code, so text read from a file must never choose which file is imported.

Conventions shared by every problem:

* **Fields tensor**: ``(B, C, *grid)`` for steady problems and ``(B, C, T, *grid)`` for
  time-dependent ones, channels in ``field_names`` order, **physical units** (de-normalised),
  any float dtype and device. ``to_tensor(ds)`` builds it from a physgen-field/1 dataset.
* **residual(fields)** returns the per-point residual of the discrete equations, batch first;
  it is built from torch operations only (differentiable) and uses exactly the generator's
  discrete operator, so the generator's own float64 output sits at round-off. The per-sample
  scalar is ``relative_residual(fields) = RMS(residual) / residual_scale(fields)``.
* **generate(n, seed, start=0)**: sample ``i`` (global index ``start + i``) draws from its own
  generator seeded by ``(seed, start + i)`` (:func:`sample_rng`), so any split of the index
  range into shards reproduces the same samples. Arrays stay float64 in memory;
  ``physgen.data.write_fields`` casts fields to float32 on disk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from physgen.grids import Grid
from physgen.operators import time_derivative
from physgen.paths import find_project_dir, load_module_from_path
from physgen.solvers import TorchSpectralGrid, check_positive

__all__ = [
    "ENTRY_POINT_GROUP",
    "Downsample",
    "Field",
    "Observation",
    "Problem",
    "SensorSet",
    "TimeDependentProblem",
    "UnregisteredProblemError",
    "available_problems",
    "file_sha256",
    "frame_times",
    "load",
    "load_class",
    "load_registered",
    "problem_entry_points",
    "problem_named_by",
    "recorded_params",
    "registered_problem_path",
    "rms",
    "sample_rng",
    "sample_seed",
    "substeps",
]


def sample_seed(seed: int, index: int) -> int:
    """The seed of global sample ``index`` under dataset seed ``seed`` (63-bit, deterministic)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and sample index must be non-negative, got {seed}, {index}")
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The numpy generator of global sample ``index`` (independent streams per index)."""
    return np.random.default_rng(sample_seed(seed, index))


@dataclass(frozen=True)
class Field:
    """One scalar field of a problem: variable name, CF ``long_name`` and ``units``."""

    name: str
    long_name: str
    units: str = "1"


class Observation(ABC):
    """A linear observation operator y = A(x) for inverse tasks (sensors, downsampling)."""

    @abstractmethod
    def __call__(self, fields: Tensor) -> Tensor:
        """Observe a fields tensor ``(B, C, [T], *grid)``."""


@dataclass(frozen=True)
class SensorSet(Observation):
    """Point sensors: ``points[j] = (channel, grid index tuple)``; output ``(B, [T], m)``.

    Build one from field names with :meth:`from_indices`.
    """

    points: tuple[tuple[int, tuple[int, ...]], ...]
    labels: tuple[str, ...] = ()

    @classmethod
    def from_indices(
        cls, field_names: Sequence[str], indices: Mapping[str, Sequence[Any]]
    ) -> SensorSet:
        """``indices[name]`` lists grid indices (ints for 1-D, tuples otherwise) of that field."""
        points, labels = [], []
        for name, idx in indices.items():
            if name not in field_names:
                raise KeyError(f"sensor field {name!r} is not one of {list(field_names)}")
            c = list(field_names).index(name)
            for i in idx:
                point = tuple(int(v) for v in np.atleast_1d(i))
                points.append((c, point))
                labels.append(f"{name}{list(point)}")
        return cls(tuple(points), tuple(labels))

    def __call__(self, fields: Tensor) -> Tensor:
        d = len(self.points[0][1])
        values = [fields[(slice(None), c, ..., *p)] for c, p in self.points]
        if any(v.ndim != fields.ndim - 1 - d for v in values):
            raise ValueError(f"SensorSet: {d}-D points do not fit fields {tuple(fields.shape)}")
        return torch.stack(values, dim=-1)

    def __len__(self) -> int:
        return len(self.points)


@dataclass(frozen=True)
class Downsample(Observation):
    """Coarsen the ``ndim`` trailing grid axes by ``factor``: block ``mean`` or ``subsample``."""

    factor: int
    ndim: int
    mode: str = "mean"

    def __call__(self, fields: Tensor) -> Tensor:
        s, d = self.factor, self.ndim
        grid = fields.shape[fields.ndim - d :]
        if any(n % s for n in grid):
            raise ValueError(f"Downsample: grid {tuple(grid)} is not divisible by {s}")
        if self.mode == "subsample":
            return fields[(..., *([slice(None, None, s)] * d))]
        if self.mode != "mean":
            raise ValueError(f"Downsample: mode must be 'mean' or 'subsample', got {self.mode!r}")
        lead = fields.shape[: fields.ndim - d]
        blocks = [v for n in grid for v in (n // s, s)]
        x = fields.reshape(*lead, *blocks)  # (..., n1/s, s, n2/s, s, ...)
        return x.mean(dim=tuple(range(len(lead) + 1, x.ndim, 2)))


class Problem(ABC):
    """A physical problem: parameters, grid, fields, reference generator and residual.

    Subclasses set the class attributes and implement ``grid``, ``_generate`` and (where the
    physics is a PDE) ``residual`` and ``residual_scale``.

    Class attributes:
        name: short identifier (the module name in ``problems/``).
        Params: a dataclass of the parameters, with the literature's defaults.
        fields: the scalar fields, in channel order.
        pde: the equation, as text for the file's ``pde`` attribute.
        chunk: samples handed to ``_generate`` at once (a batched solver's batch size).

    Args:
        **params: overrides of ``Params`` defaults.
    """

    name: ClassVar[str]
    Params: ClassVar[type]
    fields: ClassVar[tuple[Field, ...]]
    pde: ClassVar[str] = ""
    chunk: ClassVar[int] = 1
    #: Set by :func:`load_class` on a class imported from a file: its path and SHA-256.
    source_file: ClassVar[str | None] = None
    source_sha256: ClassVar[str | None] = None

    def __init__(self, **params: Any) -> None:
        known = {f.name for f in dataclasses.fields(self.Params)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(
                f"problem {self.name!r}: unknown parameter(s) {unknown}; known: {sorted(known)}"
            )
        self.params = self.Params(**params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"

    # --- description -------------------------------------------------------------------
    @property
    @abstractmethod
    def grid(self) -> Grid:
        """The spatial grid (with the boundary conditions)."""

    @property
    def field_names(self) -> tuple[str, ...]:
        """Field (channel) names in order."""
        return tuple(f.name for f in self.fields)

    @property
    def time(self) -> np.ndarray | None:
        """Stored time coordinates for time-dependent problems, else ``None``."""
        return None

    @property
    def time_units(self) -> str:
        """Units of the time coordinate."""
        return "1"

    @property
    def space_units(self) -> str:
        """Units of the spatial coordinates."""
        return "1"

    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample's fields tensor: ``(C, [T], *grid)``."""
        t = () if self.time is None else (len(self.time),)
        return (len(self.fields), *t, *self.grid.shape)

    # --- generation --------------------------------------------------------------------
    @abstractmethod
    def _generate(self, rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
        """One float64 array ``(len(rngs), [T], *grid)`` per field; sample j uses ``rngs[j]``."""

    def generate(
        self,
        n: int,
        seed: int,
        *,
        start: int = 0,
        progress: Callable[[int], None] | None = None,
    ) -> xr.Dataset:
        """Generate samples ``start .. start + n - 1`` of the dataset with seed ``seed``.

        Args:
            n: number of samples.
            seed: dataset seed; sample ``i`` uses ``sample_rng(seed, i)``.
            start: global index of the first sample (shards use disjoint ranges).
            progress: called with the number of samples finished after each chunk.

        Returns:
            A physgen-field/1 dataset (fields float64 in memory; ``write_fields`` casts).
        """
        if n < 1:
            raise ValueError(f"generate: n must be >= 1, got {n}")
        index = np.arange(start, start + n, dtype=np.int64)
        parts: dict[str, list[np.ndarray]] = {f.name: [] for f in self.fields}
        for lo in range(0, n, self.chunk):
            rngs = [sample_rng(seed, int(i)) for i in index[lo : lo + self.chunk]]
            out = self._generate(rngs)
            for f in self.fields:
                parts[f.name].append(np.asarray(out[f.name], dtype=np.float64))
            if progress is not None:
                progress(len(rngs))
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        seeds = np.array([sample_seed(seed, int(i)) for i in index], dtype=np.int64)
        return self.to_dataset(arrays, index, seeds, dataset_seed=seed)

    def to_dataset(
        self,
        arrays: Mapping[str, np.ndarray],
        index: np.ndarray,
        seeds: np.ndarray | None = None,
        *,
        dataset_seed: int | None = None,
    ) -> xr.Dataset:
        """Wrap per-field arrays ``(N, [T], *grid)`` in the physgen-field/1 layout."""
        grid = self.grid
        dims = ("sample", *(("time",) if self.time is not None else ()), *grid.axis_names)
        data_vars: dict[str, Any] = {}
        for f in self.fields:
            a = np.asarray(arrays[f.name])
            expected = (len(index), *self.sample_shape()[1:])
            if a.shape != expected:
                raise ValueError(
                    f"{self.name}: field {f.name!r} has shape {a.shape}, expected {expected}"
                )
            data_vars[f.name] = (dims, a, {"long_name": f.long_name, "units": f.units})
        if seeds is not None:
            data_vars["seed"] = (
                ("sample",),
                np.asarray(seeds, dtype=np.int64),
                {"long_name": "sample seed"},
            )
        coords: dict[str, Any] = {"sample": ("sample", np.asarray(index, dtype=np.int64))}
        if self.time is not None:
            coords["time"] = (
                "time",
                np.asarray(self.time, dtype=np.float64),
                {"units": self.time_units, "axis": "T", "long_name": "time"},
            )
        for axis, name in enumerate(grid.axis_names):
            coords[name] = (
                name,
                grid.coords(axis),
                {"units": self.space_units, "axis": name.upper(), "long_name": name},
            )
        attrs = {
            "title": f"{self.name} samples",
            "source": "physgen reference generator",
            "problem": self.name,
            "pde": self.pde,
            "fields": list(self.field_names),
            **grid.attrs(),
            "params_json": json.dumps(dataclasses.asdict(self.params), sort_keys=True),
            "generator": f"{type(self).__module__}:{type(self).__name__}",
        }
        if self.source_file is not None:  # a problem loaded from a user's file
            attrs["problem_file"] = self.source_file
            attrs["problem_sha256"] = str(self.source_sha256)
        if dataset_seed is not None:
            attrs["dataset_seed"] = int(dataset_seed)
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)

    def to_tensor(
        self, ds: xr.Dataset, *, dtype: torch.dtype = torch.float64, device: Any = None
    ) -> Tensor:
        """Stack ``ds``'s fields into ``(B, C, [T], *grid)`` in ``field_names`` order."""
        missing = [f for f in self.field_names if f not in ds]
        if missing:
            raise KeyError(f"{self.name}: dataset lacks field(s) {missing}")
        stacked = np.stack([np.asarray(ds[f].values) for f in self.field_names], axis=1)
        return torch.as_tensor(stacked, dtype=dtype, device=device)

    # --- physics -----------------------------------------------------------------------
    def residual(self, fields: Tensor) -> Tensor:
        """Per-point residual of the discrete equations, ``(B, ...)`` in physical units."""
        raise NotImplementedError(f"problem {self.name!r} states no PDE residual")

    def residual_scale(self, fields: Tensor) -> Tensor:
        """A physical scale ``(B,)`` of the equation's terms, to make the residual relative."""
        raise NotImplementedError(f"problem {self.name!r} states no PDE residual")

    def relative_residual(self, fields: Tensor) -> Tensor:
        """Per-sample ``RMS(residual) / residual_scale``, shape ``(B,)``."""
        return rms(self.residual(fields)) / self.residual_scale(fields)

    def solve_state(self, fields: Tensor) -> Tensor:
        """``fields`` with the state channels replaced by the generator's discrete solution for
        their coefficient channels: the hard physics projection of a generated sample (its
        residual then sits at the solver's floor). Implemented by steady problems whose state
        is determined by their coefficients, e.g. Darcy's pressure by its permeability."""
        raise NotImplementedError(f"problem {self.name!r} has no solve_state")

    def _solve_from_coefficient(
        self, fields: Tensor, solve: Callable[[np.ndarray], np.ndarray]
    ) -> Tensor:
        """``solve_state`` for a two-field problem (coefficient, state): ``solve`` maps one
        positive coefficient ``(*grid)`` to its discrete state, sample by sample in float64."""
        self._check_fields(fields)
        coefficient = fields[:, 0].detach().cpu().double().numpy()
        first = self.fields[0]
        check_positive(coefficient, f"{first.name} ({first.long_name})", self.name)
        state = np.stack([solve(sample) for sample in coefficient])
        return torch.stack([fields[:, 0], torch.as_tensor(state).to(fields)], dim=1)

    def constraints(self, fields: Tensor) -> dict[str, Tensor]:
        """Per-sample violations ``(B,)`` (zero when satisfied) of inequalities/conservation."""
        return {}

    def observations(self) -> dict[str, Observation]:
        """Default observation operators for inverse tasks, by name."""
        return {}

    def _check_fields(self, fields: Tensor) -> None:
        expected = self.sample_shape()
        if tuple(fields.shape[1:]) != expected:
            raise ValueError(
                f"{self.name}: fields tensor must be (B, *{expected}) in the order "
                f"{list(self.field_names)}, got {tuple(fields.shape)}"
            )


class TimeDependentProblem(Problem):
    r"""An evolution problem u_t = F(u) stored as frames u_j = u(t_j), t_{j+1} − t_j = Δt.

    ``Params`` must have ``t_end``, ``dt_save`` and ``time_order`` (and may have ``t_start``,
    the time of the first stored frame). Subclasses implement ``tendency`` — F in the
    generator's own spatial discretisation (same stencils/FFTs, same dealiasing) — and, where
    the generator is a time stepper that torch can run, ``advance``: the generator's discrete
    solution operator :math:`S_{\Delta t}` over one frame interval.

    ``residual`` is then the **one-step defect** of the stored trajectory,

    .. math:: r_j = \frac{u_{j+1} - S_{\Delta t}\,u_j}{\Delta t}, \qquad j = 0 .. T-2,

    relative to RMS((u_{j+1} − u_j)/Δt): frame j is advanced by the reference solver and
    compared with frame j + 1 (the solver-in-the-loop consistency of Um et al., NeurIPS 2020,
    arXiv:2007.00016). For data made by the generator it vanishes to round-off (float32
    storage sets the floor), whatever the frame spacing, while a time difference over stored
    frames has an O(Δt^p) truncation floor that hides errors of the size of that floor
    (Kolmogorov flow and Navier–Stokes store frames too coarsely for it). For a smooth
    trajectory, r_j → u_t − F(u) averaged over the interval as Δt → 0, so it is the same
    equation. Problems without ``advance`` keep the time-difference residual
    (``difference_residual``), which stays available to all as a cheap differentiable form.
    """

    # Grid points advanced at once by ``residual`` (bounds the memory of one solver call).
    advance_chunk_points: ClassVar[int] = 2**22

    @property
    def time(self) -> np.ndarray:
        p = self.params
        start = getattr(p, "t_start", 0.0)
        return frame_times(p.t_end - start, p.dt_save, start)

    @abstractmethod
    def tendency(self, fields: Tensor) -> Tensor:
        """F(u) for fields ``(B, C, T, *grid)``, same shape."""

    def advance(self, states: Tensor) -> Tensor:
        """States ``(N, C, *grid)`` at t → the generator's states at t + ``dt_save`` (torch).

        Problems whose generator can run on torch override this; the default states no
        solver, and ``residual`` falls back to ``difference_residual``.
        """
        raise NotImplementedError(f"problem {self.name!r} has no torch solver")

    @property
    def has_solver(self) -> bool:
        """Whether ``advance`` is implemented (the residual is then the one-step defect)."""
        return type(self).advance is not TimeDependentProblem.advance

    def time_derivative(self, fields: Tensor) -> Tensor:
        """u_t at the interior frames, ``(B, C, T − time_order, *grid)``."""
        p = self.params
        return time_derivative(fields, p.dt_save, dim=2, order=p.time_order)

    def difference_residual(self, fields: Tensor) -> Tensor:
        """u_t − F(u) at the interior frames, ``(B, C, T − time_order, *grid)``, with u_t the
        central difference of order ``time_order``: floor O(dt_save^time_order)."""
        self._check_fields(fields)
        h = self.params.time_order // 2
        return self.time_derivative(fields) - self.tendency(fields[:, :, h : fields.shape[2] - h])

    def relative_difference_residual(self, fields: Tensor) -> Tensor:
        """Per-sample RMS(``difference_residual``) / RMS(u_t), shape ``(B,)``."""
        return rms(self.difference_residual(fields)) / rms(self.time_derivative(fields))

    def step_residual(self, fields: Tensor) -> Tensor:
        """The one-step defect (u_{j+1} − S u_j)/Δt, ``(B, C, T − 1, *grid)``."""
        self._check_fields(fields)
        b, c, t = fields.shape[:3]
        grid = fields.shape[3:]
        starts = fields[:, :, :-1].transpose(1, 2).reshape(b * (t - 1), c, *grid)
        size = max(1, self.advance_chunk_points // max(1, c * math.prod(grid)))
        stepped = torch.cat([self.advance(part) for part in starts.split(size)])
        predicted = stepped.reshape(b, t - 1, c, *grid).transpose(1, 2)
        return (fields[:, :, 1:] - predicted) / self.params.dt_save

    def residual(self, fields: Tensor) -> Tensor:
        """The one-step defect ``step_residual`` where the problem has a solver, else
        ``difference_residual``."""
        if self.has_solver:
            return self.step_residual(fields)
        return self.difference_residual(fields)

    def residual_scale(self, fields: Tensor) -> Tensor:
        """RMS of (u_{j+1} − u_j)/Δt with a solver, else RMS of u_t at the interior frames."""
        if self.has_solver:
            self._check_fields(fields)
            return rms(fields.diff(dim=2) / self.params.dt_save)
        return rms(self.time_derivative(fields))

    def spectral_grid(self, like: Tensor) -> TorchSpectralGrid:
        """The grid's :class:`~physgen.solvers.TorchSpectralGrid` in ``like``'s dtype and device."""
        key = (like.dtype, like.device)
        cache = self.__dict__.setdefault("_spectral_grids", {})
        if key not in cache:
            cache[key] = TorchSpectralGrid(self.grid, dtype=like.dtype, device=like.device)
        return cache[key]


def rms(x: Tensor) -> Tensor:
    """Per-sample root mean square over every axis but the first."""
    return x.pow(2).flatten(1).mean(1).sqrt()


def frame_times(t_end: float, dt_save: float, t_start: float = 0.0) -> np.ndarray:
    """Stored times ``t_start + j dt_save`` for j = 0 .. t_end / dt_save."""
    steps = round(t_end / dt_save)
    if dt_save <= 0 or steps < 1 or not math.isclose(steps * dt_save, t_end, rel_tol=1e-9):
        raise ValueError(f"t_end={t_end} must be a positive multiple of dt_save={dt_save}")
    return t_start + dt_save * np.arange(steps + 1, dtype=np.float64)


def substeps(dt_save: float, dt: float) -> int:
    """Solver steps per stored frame; ``dt_save`` must be a multiple of ``dt``."""
    steps = round(dt_save / dt)
    if dt <= 0 or steps < 1 or not math.isclose(steps * dt, dt_save, rel_tol=1e-9):
        raise ValueError(f"dt_save={dt_save} must be a positive multiple of the solver dt={dt}")
    return steps


ENTRY_POINT_GROUP = "physgen.problems"


def _folder_problems() -> list[str]:
    """Names of the problem modules in the problems folder."""
    folder = find_project_dir("problems")
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def problem_entry_points() -> dict[str, metadata.EntryPoint]:
    """The installed ``physgen.problems`` entry points by name; nothing is imported here.

    Raises:
        ValueError: two installed packages declare one name with different targets.
    """
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        other = found.setdefault(ep.name, ep)
        if other.value != ep.value:
            raise ValueError(
                f"entry-point group {ENTRY_POINT_GROUP!r}: problem {ep.name!r} is declared "
                f"twice, as {other.value!r} and {ep.value!r}; uninstall one of the packages"
            )
    return found


def available_problems() -> list[str]:
    """Names of the problems in the problems folder and of the ``physgen.problems`` entry points."""
    return sorted({*_folder_problems(), *problem_entry_points()})


_PROBLEM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class UnregisteredProblemError(ValueError):
    """A problem named by data (a file attribute, a checkpoint) is not a registered problem."""


def registered_problem_path(name: str) -> Path:
    """The file of the problem module ``name`` of the problems folder: ``<folder>/<name>.py``.

    ``name`` must be a plain module name (``[A-Za-z_][A-Za-z0-9_]*``: no folder, no ``..``,
    no suffix), and the file, after symlinks are resolved, must lie inside the problems
    folder. Nothing is imported here. Entry-point problems have no file in the folder: this
    raises ``FileNotFoundError`` for them; :func:`load_registered` loads both kinds.

    Raises:
        UnregisteredProblemError: ``name`` looks like a path (a separator, a leading ``.`` or
            ``~``, a ``.py`` suffix), or its file resolves outside the problems folder.
        FileNotFoundError: the problems folder has no module ``name`` (any other text that is
            not a plain name, such as a free-text label, ends here too).
    """
    text = str(name)
    if _looks_like_path(text):
        raise UnregisteredProblemError(
            f"{text!r} is a path, not the name of a registered problem (letters, digits and "
            "underscores: a module in the problems folder)"
        )
    folder = find_project_dir("problems")
    path = folder / f"{text}.py"
    if not _PROBLEM_NAME.fullmatch(text) or not path.is_file():
        raise FileNotFoundError(
            f"no problem {text!r} in {folder} (known: {', '.join(_folder_problems())})"
        )
    if not path.resolve().is_relative_to(folder.resolve()):
        raise UnregisteredProblemError(
            f"problem {text!r}: {path} resolves to {path.resolve()}, outside the problems "
            f"folder {folder.resolve()}"
        )
    return path


def _looks_like_path(text: str) -> bool:
    """Whether ``text`` names a file rather than a problem (separators, ``..``, ``~``, ``.py``)."""
    return (
        "/" in text
        or "\\" in text
        or text.startswith((".", "~"))
        or text.endswith(".py")
        or Path(text).is_absolute()
    )


def _problem_class(path: Path, module_name: str) -> type[Problem]:
    """Import ``path`` as ``module_name`` and return its one concrete Problem subclass."""
    module = load_module_from_path(path, module_name)
    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, Problem)
        and obj.__module__ == module.__name__
        and not getattr(obj, "__abstractmethods__", None)
    ]
    if len(found) != 1:
        raise ValueError(
            f"{path}: expected exactly one concrete Problem subclass, found "
            f"{[c.__name__ for c in found] or 'none'}"
        )
    return found[0]


def _entry_point_class(ep: metadata.EntryPoint) -> type[Problem]:
    """Import the target of a ``physgen.problems`` entry point: a concrete Problem subclass.

    Raises:
        TypeError: the target is not a concrete Problem subclass.
        ValueError: the class's ``name`` differs from the entry point's (files it writes
            would name a problem that does not load back).
    """
    where = f"entry point {ep.name!r} = {ep.value!r} (group {ENTRY_POINT_GROUP!r})"
    cls = ep.load()
    if (
        not isinstance(cls, type)
        or not issubclass(cls, Problem)
        or getattr(cls, "__abstractmethods__", None)
    ):
        raise TypeError(
            f"{where}: expected a concrete physgen.problem.Problem subclass, got {cls!r}"
        )
    if getattr(cls, "name", None) != ep.name:
        raise ValueError(
            f"{where}: the class's name is {getattr(cls, 'name', None)!r}; it must equal the "
            "entry point's name"
        )
    return cls


def _registered_class(name: str) -> type[Problem]:
    """The class of the registered problem ``name``: a folder module, else an entry point.

    Raises:
        UnregisteredProblemError: ``name`` is a path or resolves outside the problems folder.
        FileNotFoundError: neither the problems folder nor an entry point has that name.
    """
    text = str(name)
    try:
        path = registered_problem_path(text)
    except FileNotFoundError as err:
        entry_points = problem_entry_points()
        if text not in entry_points:
            raise FileNotFoundError(
                f"{err}; no {ENTRY_POINT_GROUP!r} entry point either "
                f"(installed: {', '.join(sorted(entry_points)) or 'none'})"
            ) from None
        return _entry_point_class(entry_points[text])
    return _problem_class(path, f"physgen_problem_{text}")


def load_class(name_or_path: str | Path) -> type[Problem]:
    """The Problem subclass of a registered name or of the Python file at a path.

    A path is imported as given, so only a user's own argument may reach this function; a
    name read from a file goes through :func:`load_registered`.
    """
    text = str(name_or_path)
    path = Path(text)
    if text.endswith(".py") or path.is_file():
        # A user's file may share a stem with a built-in problem: key the module by its path.
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
        cls = _problem_class(path, f"physgen_problem_{path.stem}_{digest}")
        # Provenance only: files generated by this class name the file and its content hash,
        # so a later command can say which file to pass back and check it is the same one.
        cls.source_file = str(path.resolve())
        cls.source_sha256 = file_sha256(path)
        return cls
    return _registered_class(text)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def problem_named_by(
    attrs: Mapping[str, Any],
    source: str | Path,
    remedy: str = "pass a problem file explicitly (--problem PATH, or problem= in Python)",
) -> tuple[str, dict[str, Any]] | None:
    """The registered problem a field file names, with the parameters it was generated with.

    ``attrs`` are the file's global attributes: ``problem`` (a name) and ``params_json``.
    The attribute is data, so it may only name a registered problem (see
    :func:`registered_problem_path`); nothing is imported unless it does. ``remedy`` ends
    the refusal: what the caller's user can do instead.

    Returns:
        ``(name, params)``, or None when the file names no problem or a name that no
        registered problem has (importers write free-text labels there).

    Raises:
        UnregisteredProblemError: the attribute is a path or resolves outside the problems
            folder; the message names ``source`` and says to pass the file explicitly.
        ValueError: ``params_json`` is not a JSON object.
    """
    name = str(attrs.get("problem", "") or "")
    if not name:
        return None
    try:
        registered_problem_path(name)
    except FileNotFoundError:
        if name not in problem_entry_points():
            return None
    except UnregisteredProblemError as err:
        raise UnregisteredProblemError(
            f"{source}: refusing the 'problem' attribute: {err}; {remedy}"
        ) from None
    return name, recorded_params(attrs, source)


def recorded_params(attrs: Mapping[str, Any], source: str | Path) -> dict[str, Any]:
    """The problem parameters a field file records (``params_json``; none when absent).

    Raises:
        ValueError: ``params_json`` is not a JSON object; the message names ``source``.
    """
    try:
        params = json.loads(str(attrs.get("params_json", "{}") or "{}"))
    except json.JSONDecodeError:
        params = None
    if not isinstance(params, dict):
        raise ValueError(f"{source}: attribute params_json is not a JSON object")
    return params


def load_registered(name: str, **params: Any) -> Problem:
    """Instantiate the registered problem ``name`` (never a path): for names read from data.

    Registered problems are the modules of the problems folder and the installed
    ``physgen.problems`` entry points (a package installed on purpose).

    Raises:
        UnregisteredProblemError: ``name`` is a path or resolves outside the problems folder.
        FileNotFoundError: no registered problem has that name.
    """
    return _registered_class(name)(**params)


def load(name_or_path: str | Path, **params: Any) -> Problem:
    """Instantiate a problem by registered name (``problems/<name>.py`` or an entry point) or
    by file path, with parameters.

    Example:
        >>> sde = load("sde1d")  # doctest: +SKIP
        >>> ds = sde.generate(8, seed=0)  # doctest: +SKIP
    """
    return load_class(name_or_path)(**params)

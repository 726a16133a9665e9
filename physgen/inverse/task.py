"""An inverse task: which fields, which observation operator, which channels to infer.

A :class:`Task` ties an :class:`~physgen.inverse.operators.ObservationOperator` to named
channels. The operator acts on the task's fields tensor ``(B, len(fields), *grid)``; a
conditional model is trained to produce the ``targets`` channels from the lifted observation;
a guided prior samples all ``fields`` and is steered by the observation.

Task strings (the CLI's ``--task``):

* ``srK[:F1,F2]`` — K× super-resolution by block averaging (default: all fields);
* ``subK[:F1,F2]`` — K× super-resolution from strided point values;
* ``colorize:F1[,F2]`` — infer the named fields from the others on the same grid;
* ``sensors:N[:F1,F2]`` — N random sensor points, each reading the named fields (default all);
* ``inpaint:F1[,F2]:MASK`` — fill the missing points of the named fields, with ``MASK`` one of
  ``randomP`` (a fraction P of the points missing, drawn with the seed), ``box[P]`` (a centred
  box of a fraction P, default 0.25) or the path of a netCDF file whose variable ``mask`` is 1
  where missing.

Example:
    >>> from physgen.grids import Grid
    >>> task = parse_task("colorize:u", ["a", "u"], Grid((32, 32), bc="dirichlet"))
    >>> task.observed_fields, task.targets
    (('a',), ('u',))
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from physgen.grids import Grid
from physgen.inverse.mask import Mask, box_mask, random_mask, read_mask
from physgen.inverse.operators import (
    BlockAverage,
    ChannelMask,
    ObservationOperator,
    Sensors,
    Subsample,
)

__all__ = ["Task", "parse_task"]


@dataclass(frozen=True)
class Task:
    """An observation operator on named channels, and the channels to infer.

    Attributes:
        name: the task string it was parsed from (or a label).
        fields: channel names of the tensor the operator acts on, in order.
        operator: the observation operator ``A`` on ``(B, len(fields), *grid)``.
        targets: the channels a conditional model generates (colorization: the unobserved
            ones; super-resolution and sensors: all ``fields``).
        grid_shape: the grid of the fields.
    """

    name: str
    fields: tuple[str, ...]
    operator: ObservationOperator
    targets: tuple[str, ...]
    grid_shape: tuple[int, ...]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one full sample, ``(len(fields), *grid_shape)``."""
        return (len(self.fields), *self.grid_shape)

    @property
    def target_shape(self) -> tuple[int, ...]:
        """Shape of one generated target, ``(len(targets), *grid_shape)``."""
        return (len(self.targets), *self.grid_shape)

    @property
    def target_index(self) -> list[int]:
        """Channel positions of ``targets`` within ``fields``."""
        return [self.fields.index(f) for f in self.targets]

    @property
    def observed_fields(self) -> tuple[str, ...]:
        """The fields the observation reads."""
        if isinstance(self.operator, ChannelMask):
            return self.operator.observed
        if isinstance(self.operator, Sensors):
            return tuple(self.fields[c] for c in self.operator.channels)
        return self.fields

    def observe(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A noisy observation of full fields ``x`` ``(B, len(fields), *grid)``."""
        self.check(x)
        return self.operator.observe(x, generator)

    def condition(self, y: Tensor) -> Tensor:
        """The observation lifted onto the grid: a conditional model's input channels."""
        return self.operator.lift(y, self.sample_shape)

    def assemble(self, y: Tensor, targets: Tensor) -> Tensor:
        """Full fields from generated ``targets`` ``(..., len(targets), *grid)``.

        Colorization puts the observed channels back beside the inferred ones (from ``y``,
        ``(B, k, *grid)``, broadcast over any member axis between batch and channel); other
        tasks already generate every field.
        """
        if self.targets == self.fields:
            return targets
        if not isinstance(self.operator, ChannelMask):
            raise ValueError(f"task {self.name!r}: cannot assemble fields from {self.targets}")
        c = targets.ndim - 1 - (y.ndim - 2)  # the channel axis, after batch (and member)
        lead = targets.shape[:c]
        obs = y.reshape(y.shape[0], *([1] * (c - 1)), *y.shape[1:]).expand(*lead, *y.shape[1:])
        parts = {name: obs.narrow(c, i, 1) for i, name in enumerate(self.operator.observed)}
        parts.update({name: targets.narrow(c, i, 1) for i, name in enumerate(self.targets)})
        return torch.cat([parts[f] for f in self.fields], dim=c)

    def pairs(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Training pairs ``(target, cond)`` from full fields ``x`` ``(B, len(fields), *grid)``.

        ``target = x[:, targets]``; ``cond`` = the lifted noisy observation.
        """
        y = self.observe(x, generator)
        return x[:, self.target_index], self.condition(y)

    @property
    def fraction(self) -> float:
        """Observed values per unknown target value (the observation fraction)."""
        observed = self.operator.observed_shape(self.sample_shape)
        return math.prod(observed) / math.prod(self.target_shape)

    def check(self, x: Tensor) -> None:
        """Raise a clear error unless ``x`` is ``(B, len(fields), *grid_shape)``."""
        if tuple(x.shape[1:]) != self.sample_shape:
            shape = ", ".join(map(str, self.sample_shape))
            raise ValueError(
                f"task {self.name!r}: expected fields (B, {shape}) with channels "
                f"{list(self.fields)}, got {tuple(x.shape)}"
            )


_SPEC = re.compile(r"^(sr|sub)(\d+)(?::(.+))?$")


def _names(text: str | None, known: Sequence[str], spec: str) -> tuple[str, ...]:
    if text is None:
        return tuple(known)
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise KeyError(f"task {spec!r}: unknown field(s) {unknown or [text]}; known: {list(known)}")
    return names


def parse_task(
    spec: str,
    field_names: Sequence[str],
    grid: Grid,
    *,
    noise_std: float = 0.0,
    seed: int = 0,
) -> Task:
    """Build a :class:`Task` from a task string (see the module docstring).

    Args:
        spec: ``srK[:F]``, ``subK[:F]``, ``colorize:F``, ``sensors:N[:F]`` or
            ``inpaint:F:MASK``.
        field_names: the channels available (a problem's or a file's fields, in order).
        grid: the grid (its boundary conditions make coarsening periodic-aware).
        noise_std: observation-noise σ, in the units of the tensors the task will see.
        seed: seed of random sensor positions and random inpainting masks.
    """
    field_names = tuple(field_names)
    periodic = tuple(b == "periodic" for b in grid.bc)
    m = _SPEC.match(spec)
    if m:
        kind, factor, names = m.group(1), int(m.group(2)), _names(m.group(3), field_names, spec)
        cls = BlockAverage if kind == "sr" else Subsample
        op = cls(factor, grid.ndim, periodic=periodic, noise_std=noise_std)
        return Task(spec, names, op, names, grid.shape)
    if spec.startswith("colorize:"):
        infer = _names(spec.split(":", 1)[1], field_names, spec)
        observed = tuple(f for f in field_names if f not in infer)
        if not observed:
            raise ValueError(f"task {spec!r}: nothing left to observe among {list(field_names)}")
        op = ChannelMask(field_names, observed, noise_std=noise_std)
        return Task(spec, field_names, op, infer, grid.shape)
    if spec.startswith("sensors:"):
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[1].isdigit():
            raise ValueError(f"task {spec!r}: expected sensors:N or sensors:N:FIELDS")
        names = _names(parts[2] if len(parts) == 3 else None, field_names, spec)
        op = Sensors.random(
            field_names, grid.shape, int(parts[1]), fields=names, seed=seed, noise_std=noise_std
        )
        return Task(spec, field_names, op, field_names, grid.shape)
    if spec.startswith("inpaint:"):
        parts = spec.split(":", 2)
        if len(parts) != 3 or not parts[2]:
            raise ValueError(f"task {spec!r}: expected inpaint:FIELDS:MASK")
        names = _names(parts[1], field_names, spec)
        op = Mask(_inpaint_mask(parts[2], grid.shape, seed, spec), noise_std=noise_std)
        return Task(spec, names, op, names, grid.shape)
    raise ValueError(
        f"unknown task {spec!r}; expected srK[:FIELDS], subK[:FIELDS], colorize:FIELDS, "
        "sensors:N[:FIELDS] or inpaint:FIELDS:MASK"
    )


_FRACTION = re.compile(r"^(random|box)(\d*\.?\d+)?$")


def _inpaint_mask(text: str, shape: tuple[int, ...], seed: int, spec: str) -> Tensor:
    """The observed-point mask of ``inpaint:F:MASK`` (see the module docstring)."""
    m = _FRACTION.match(text)
    if m is None:
        return read_mask(text, shape)
    if m.group(2) is None and m.group(1) == "random":
        raise ValueError(f"task {spec!r}: random needs the missing fraction, e.g. random0.3")
    fraction = 0.25 if m.group(2) is None else float(m.group(2))
    return (
        random_mask(shape, fraction, seed=seed)
        if m.group(1) == "random"
        else box_mask(shape, fraction)
    )

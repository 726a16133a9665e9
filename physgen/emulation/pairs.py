"""(History of k frames [+ parameters] → next frame) pairs from time-dependent fields."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from physgen.data import Normalizer, field_names, open_fields, spatial_dims
from physgen.data.fields import SAMPLE_DIM, TIME_DIM

__all__ = ["TrajectoryPairs", "channel_statistics", "pack_history", "read_trajectories"]


def channel_statistics(values: Tensor, channel_dim: int = 1) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over every other axis (std 1 for a constant channel)."""
    x = values.movedim(channel_dim, 0).flatten(1).double()
    std = x.std(1, correction=0)
    return x.mean(1).tolist(), torch.where(std > 0, std, torch.ones_like(std)).tolist()


def pack_history(
    frames: Tensor,
    normalizer: Normalizer,
    params: Tensor | None = None,
    param_normalizer: Normalizer | None = None,
) -> Tensor:
    """The conditioning tensor of a history: ``(B, k·C [+ P], *grid)``, normalized.

    ``frames`` ``(B, k, C, *grid)`` (physical units, oldest first) become ``k·C`` channels,
    frame by frame; per-sample ``params`` ``(B, P)`` are appended as ``P`` constant channels.
    """
    b, k, c = frames.shape[:3]
    grid = frames.shape[3:]
    normalized = normalizer.normalize(frames.reshape(b * k, c, *grid))
    cond = normalized.reshape(b, k * c, *grid)
    if params is not None:
        if param_normalizer is not None:
            params = param_normalizer.normalize(params)
        planes = params.to(cond).reshape(b, -1, *([1] * len(grid))).expand(-1, -1, *grid)
        cond = torch.cat([cond, planes], dim=1)
    return cond


def read_trajectories(
    path: str | os.PathLike[str],
    fields: Sequence[str] | None = None,
    param_fields: Sequence[str] = (),
) -> tuple[Tensor, Tensor | None, dict[str, Any]]:
    """A time-dependent field file as ``(N, C, T, *grid)`` float64 trajectories, the per-sample
    parameters ``(N, P)`` (or ``None``) and a description (fields, times, grid coordinates).

    Raises:
        ValueError: a chosen field has no ``time`` dim, or a parameter is not ``(sample,)``.
    """
    with open_fields(path, load=True) as ds:
        names = list(fields) if fields is not None else field_names(ds)
        names = [n for n in names if n not in param_fields]
        missing = [n for n in [*names, *param_fields] if n not in ds]
        if missing:
            raise KeyError(f"{path}: no variable(s) {missing} (fields: {field_names(ds)})")
        grid = spatial_dims(ds)
        for name in names:
            if ds[name].dims != (SAMPLE_DIM, TIME_DIM, *grid):
                raise ValueError(
                    f"{path}: field {name!r} has dims {ds[name].dims}; emulation needs "
                    f"time-dependent fields {(SAMPLE_DIM, TIME_DIM, *grid)}"
                )
        for name in param_fields:
            if ds[name].dims != (SAMPLE_DIM,):
                raise ValueError(
                    f"{path}: parameter {name!r} has dims {ds[name].dims}, expected ('sample',)"
                )
        data = torch.as_tensor(np.stack([ds[n].values for n in names], axis=1), dtype=torch.float64)
        params = None
        if param_fields:
            values = np.stack([ds[n].values for n in param_fields], axis=1)
            params = torch.as_tensor(values, dtype=torch.float64)
        description = {
            "fields": names,
            "param_fields": list(param_fields),
            "time": ds[TIME_DIM].values.astype(float).tolist(),
            "grid_dims": list(grid),
            "field_attrs": {n: dict(ds[n].attrs) for n in names},
            "problem": ds.attrs.get("problem"),
            "params_json": ds.attrs.get("params_json"),
        }
    return data, params, description


class TrajectoryPairs(Dataset):
    r"""Training pairs of an autoregressive emulator: :math:`(u_{j-k}, …, u_{j-1}) \to u_j`.

    Pair ``i`` is sample ``s`` with target frame ``j`` (``index[i] = (s, j)``, ``k ≤ j < T``);
    its condition holds frames ``j − k .. j − 1`` of the same sample only, so no pair sees
    its target or any later frame. Items are ``(x, cond)`` with ``x`` the normalized target
    ``(C, *grid)`` and ``cond`` = :func:`pack_history` ``(k·C [+ P], *grid)``: the history as
    channels, the input of a conditional U-Net (as in the conditional diffusion baselines of
    PDEArena, Gupta & Brandstetter 2022, and PDE-Refiner, Lippe et al. 2023).

    Args:
        trajectories: ``(N, C, T, *grid)`` in physical units.
        history: k, the frames each prediction sees.
        params: per-sample parameters ``(N, P)`` appended as constant channels.
        mean, scale: per-channel statistics (default: from ``trajectories``, i.e. the
            training split's statistics; pass the training set's for valid/test pairs).
        param_mean, param_scale: the same for ``params``.
        target: ``"frame"`` (default): x is the normalized next frame u_j; ``"increment"``:
            x is the normalized increment u_j − u_{j−1} (the residual target of PDEArena and
            GenCast, Price et al. 2025), whose scale follows the dynamics, so a model's
            noise shrinks where the field stops changing.
        increment_mean, increment_scale: the increment statistics (default: from
            ``trajectories``' frame differences).
    """

    def __init__(
        self,
        trajectories: Tensor,
        history: int,
        *,
        params: Tensor | None = None,
        mean: Sequence[float] | None = None,
        scale: Sequence[float] | None = None,
        param_mean: Sequence[float] | None = None,
        param_scale: Sequence[float] | None = None,
        target: str = "frame",
        increment_mean: Sequence[float] | None = None,
        increment_scale: Sequence[float] | None = None,
    ) -> None:
        if trajectories.ndim < 4:
            raise ValueError(
                f"trajectories must be (N, C, T, *grid), got shape {tuple(trajectories.shape)}"
            )
        n, c, t = trajectories.shape[:3]
        if not 1 <= history < t:
            raise ValueError(f"history must lie in [1, T) = [1, {t}), got {history}")
        if params is not None and tuple(params.shape) != (n, params.shape[-1]):
            raise ValueError(f"params must be (N={n}, P), got {tuple(params.shape)}")
        self.trajectories, self.history, self.params = trajectories, history, params
        self.channels, self.grid_shape = c, tuple(trajectories.shape[3:])
        if mean is None or scale is None:
            mean, scale = channel_statistics(trajectories)
        self.normalizer = Normalizer(list(mean), list(scale), len(self.grid_shape))
        self.param_normalizer = None
        if params is not None:
            if param_mean is None or param_scale is None:
                param_mean, param_scale = channel_statistics(params)
            self.param_normalizer = Normalizer(list(param_mean), list(param_scale), 0)
        if target not in ("frame", "increment"):
            raise ValueError(f"target must be 'frame' or 'increment', got {target!r}")
        self.target, self.increment_normalizer = target, None
        if target == "increment":
            if increment_mean is None or increment_scale is None:
                increment_mean, increment_scale = channel_statistics(trajectories.diff(dim=2))
            self.increment_normalizer = Normalizer(
                list(increment_mean), list(increment_scale), len(self.grid_shape)
            )
        targets = torch.arange(history, t)
        self.index = torch.cartesian_prod(torch.arange(n), targets)  # (pairs, 2): (s, j)
        self.description: dict[str, Any] = {}

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        history: int,
        *,
        fields: Sequence[str] | None = None,
        param_fields: Sequence[str] = (),
        like: TrajectoryPairs | None = None,
        target: str = "frame",
    ) -> TrajectoryPairs:
        """Pairs of a physgen-field/1 file's time-dependent ``fields`` (default: all).

        ``like`` (the training pairs) supplies the statistics and the target, for valid/test
        files.
        """
        data, params, description = read_trajectories(path, fields, param_fields)
        stats: dict[str, Any] = {"target": target}
        if like is not None:
            settings = like.describe()
            keys = ("mean", "scale", "param_mean", "param_scale", "target")
            stats = {k: settings[k] for k in (*keys, "increment_mean", "increment_scale")}
        pairs = cls(data, history, params=params, **stats)
        pairs.description = description
        return pairs

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of a target: ``(C, *grid)``."""
        return (self.channels, *self.grid_shape)

    @property
    def cond_shape(self) -> tuple[int, ...]:
        """Shape of a condition: ``(k·C + P, *grid)``."""
        p = 0 if self.params is None else self.params.shape[1]
        return (self.history * self.channels + p, *self.grid_shape)

    def history_frames(self, i: int) -> list[int]:
        """The frame indices pair ``i`` is conditioned on (oldest first)."""
        j = int(self.index[i, 1])
        return list(range(j - self.history, j))

    def __len__(self) -> int:
        return len(self.index)

    def get_batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """``(x, cond)`` of the pairs ``indices`` (float32, normalized)."""
        s, j = self.index[indices, 0], self.index[indices, 1]
        frames = self.trajectories.transpose(1, 2)  # (N, T, C, *grid)
        offsets = torch.arange(-self.history, 0)
        past = frames[s[:, None], j[:, None] + offsets]  # (B, k, C, *grid)
        params = None if self.params is None else self.params[s]
        cond = pack_history(past, self.normalizer, params, self.param_normalizer)
        if self.increment_normalizer is not None:
            x = self.increment_normalizer.normalize(frames[s, j] - frames[s, j - 1])
        else:
            x = self.normalizer.normalize(frames[s, j])
        return x.float(), cond.float()

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x, cond = self.get_batch(torch.tensor([i]))
        return x[0], cond[0]

    def tensors(self) -> tuple[Tensor, Tensor]:
        """Every pair at once, ``(x, cond)``: the in-memory training data of ``fit``."""
        return self.get_batch(torch.arange(len(self)))

    def describe(self) -> dict[str, Any]:
        """The JSON-able settings an emulator needs to rebuild its conditioning."""
        norm, pnorm, inorm = self.normalizer, self.param_normalizer, self.increment_normalizer
        return {
            **self.description,
            "history": self.history,
            "sample_shape": list(self.sample_shape),
            "cond_shape": list(self.cond_shape),
            "mean": norm.mean.flatten().tolist(),
            "scale": norm.scale.flatten().tolist(),
            "param_mean": None if pnorm is None else pnorm.mean.flatten().tolist(),
            "param_scale": None if pnorm is None else pnorm.scale.flatten().tolist(),
            "target": self.target,
            "increment_mean": None if inorm is None else inorm.mean.flatten().tolist(),
            "increment_scale": None if inorm is None else inorm.scale.flatten().tolist(),
        }

"""Pair a dataset of fields into (target, lifted observation) items for conditional training."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from physgen.inverse.task import Task

__all__ = ["PairedDataset", "pair_tensors"]


def pair_tensors(
    x: Tensor, task: Task, *, seed: int = 0, batch_size: int = 1024
) -> tuple[Tensor, Tensor]:
    """All training pairs of a fields tensor at once: ``(targets, conds)``.

    Args:
        x: fields ``(N, len(task.fields), *grid)`` in the units the model sees (normalized
            when the model is trained on z-scores; the task's noise σ is in those units).
        task: the inverse task.
        seed: seed of the observation noise (one generator for the whole tensor).
        batch_size: items per call of the operator (memory bound).

    Returns:
        ``targets (N, len(task.targets), *grid)`` and ``conds (N, C_lift, *grid)``.
    """
    task.check(x)
    gen = torch.Generator().manual_seed(seed)
    targets, conds = [], []
    for i in range(0, x.shape[0], batch_size):
        t, c = task.pairs(x[i : i + batch_size], gen)
        targets.append(t)
        conds.append(c)
    return torch.cat(targets), torch.cat(conds)


class PairedDataset(Dataset):
    """A dataset of fields seen as ``(target, cond)`` pairs of an inverse task.

    Item ``i`` of the wrapped dataset (a tensor ``(len(task.fields), *grid)``, e.g. from
    :class:`~physgen.data.FieldDataset` with ``fields=task.fields``) becomes
    ``(x[targets], lift(A(x) + σ ε_i))``. The noise of item ``i`` comes from a generator
    seeded by ``(seed, i)``, so every epoch and every DataLoader worker sees the same pair.

    Args:
        data: items ``(C, *grid)`` with channels in ``task.fields`` order.
        task: the inverse task.
        seed: noise seed.

    Example:
        >>> pairs = PairedDataset(FieldDataset("train.nc", ["a", "u"]), task)  # doctest: +SKIP
        >>> target, cond = pairs[0]  # doctest: +SKIP
    """

    def __init__(self, data: Dataset | Sequence[Tensor], task: Task, *, seed: int = 0) -> None:
        self.data, self.task, self.seed = data, task, seed

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        item = self.data[index]
        if isinstance(item, tuple):
            raise ValueError(
                "PairedDataset: the wrapped dataset yields (x, cond) pairs; give it the task's "
                f"fields {list(self.task.fields)} as plain items (no cond_fields)"
            )
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(index))
        target, cond = self.task.pairs(item[None], gen)
        return target[0], cond[0]

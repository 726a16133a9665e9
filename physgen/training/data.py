"""Deterministic batch order: batch ``k`` is a pure function of ``(seed, k)``, sharded by rank."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

__all__ = ["BatchOrder", "DataLike", "batches", "num_samples", "sequential_batches", "split_batch"]

# A tensor of samples, an ``(x, cond)`` pair of tensors, or a Dataset yielding either.
DataLike = Tensor | Sequence[Tensor] | Dataset


class BatchOrder:
    """Sample indices of global batch ``k``; each epoch a permutation seeded by ``(seed, epoch)``.

    Because the order depends only on ``(seed, k)``, a resumed run sees exactly the batches an
    uninterrupted run would, with no sampler state to save. The last incomplete batch of an
    epoch is dropped, so every step sees ``batch_size`` samples.

    Example:
        >>> order = BatchOrder(10, batch_size=4, seed=0)
        >>> order.per_epoch, order(0).shape
        (2, torch.Size([4]))
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if batch_size > n:
            raise ValueError(f"batch_size {batch_size} exceeds the {n} samples of the data")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.per_epoch = n // batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def permutation(self, epoch: int) -> Tensor:
        """The sample order of ``epoch``."""
        if epoch != self._epoch:
            state = np.random.SeedSequence([self.seed, epoch]).generate_state(1, np.uint64)[0]
            generator = torch.Generator().manual_seed(int(state))
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=generator)
        return self._perm

    def __call__(self, k: int) -> Tensor:
        epoch, position = divmod(k, self.per_epoch)
        start = position * self.batch_size
        return self.permutation(epoch)[start : start + self.batch_size]


def _shard(indices: Tensor, rank: int, world_size: int) -> Tensor:
    """This rank's contiguous slice of a global batch (equal slices, so DDP's mean is exact)."""
    size = len(indices) // world_size
    return indices[rank * size : (rank + 1) * size]


class _ShardSampler(Sampler[list[int]]):
    def __init__(self, order: BatchOrder, start: int, stop: int, rank: int, world: int) -> None:
        self.order, self.start, self.stop, self.rank, self.world = order, start, stop, rank, world

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[list[int]]:
        for k in range(self.start, self.stop):
            yield _shard(self.order(k), self.rank, self.world).tolist()


def _tensors(data: DataLike) -> tuple[Tensor, ...] | None:
    """The tensors behind ``data`` when it is held in memory as tensors, else ``None``."""
    if isinstance(data, Tensor):
        return (data,)
    if isinstance(data, TensorDataset):
        return tuple(data.tensors)
    if isinstance(data, (tuple, list)) and all(isinstance(t, Tensor) for t in data):
        return tuple(data)
    return None


def num_samples(data: DataLike, name: str = "data") -> int:
    """Number of samples in ``data``, checking that paired tensors agree."""
    tensors = _tensors(data)
    if tensors is not None:
        if not 1 <= len(tensors) <= 2:
            raise ValueError(f"{name}: expected a tensor or an (x, cond) pair, got {len(tensors)}")
        lengths = {len(t) for t in tensors}
        if len(lengths) != 1:
            raise ValueError(f"{name}: x and cond have different numbers of samples: {lengths}")
        return lengths.pop()
    if isinstance(data, Dataset) and hasattr(data, "__len__"):
        return len(data)
    raise TypeError(
        f"{name}: expected a tensor, an (x, cond) pair of tensors or a sized Dataset, "
        f"got {type(data).__name__}"
    )


def _move(t: Tensor, device: torch.device) -> Tensor:
    """``t`` on ``device``; CPU → CUDA copies go from pinned memory, without blocking."""
    if device.type == "cuda" and t.device.type == "cpu" and not t.is_pinned():
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


def split_batch(batch: Any, device: torch.device) -> tuple[Tensor, Tensor | None]:
    """``(x, cond)`` on ``device`` from a collated batch (a tensor or an ``(x, cond)`` pair)."""
    if isinstance(batch, Tensor):
        return _move(batch, device), None
    if isinstance(batch, (tuple, list)) and len(batch) in (1, 2):
        x = _move(batch[0], device)
        cond = _move(batch[1], device) if len(batch) == 2 else None
        return x, cond
    raise TypeError(
        f"a data item must be a tensor or an (x, cond) pair, got {type(batch).__name__}"
    )


class _BatchReads(Dataset):
    """A dataset with ``get_batch`` seen as one whose item ``[indices]`` is a whole batch.

    Handed to ``DataLoader`` without automatic batching, so each batch is read in one call
    (no per-item reads and no collation copy).
    """

    def __init__(self, data: Any) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, indices: list[int]) -> Any:
        return self.data.get_batch(indices)


def _reads_batches(data: DataLike) -> bool:
    """True for datasets that read a list of indices in one call (``get_batch``)."""
    return isinstance(data, Dataset) and callable(getattr(data, "get_batch", None))


def batches(
    data: DataLike,
    order: BatchOrder,
    start: int,
    stop: int,
    *,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """This rank's shard of global batches ``start, ..., stop - 1`` as ``(x, cond)`` on ``device``.

    In-memory tensors are indexed directly; other datasets go through a ``DataLoader`` with
    ``num_workers`` workers, batch by batch through ``get_batch`` where the dataset has one
    (e.g. :class:`~physgen.data.FieldDataset`), else item by item.
    """
    tensors = _tensors(data)
    if tensors is not None:
        for k in range(start, stop):
            idx = order(k)
            if world_size > 1:
                idx = _shard(idx, rank, world_size)
            # Index where the data lives, then move the batch.
            batch = [t[idx if t.device == idx.device else idx.to(t.device)] for t in tensors]
            yield split_batch(batch, device)
        return
    sampler = _ShardSampler(order, start, stop, rank, world_size)
    source: Dataset
    if _reads_batches(data):
        # Without automatic batching each index list of the sampler goes to __getitem__ whole.
        source, batching = _BatchReads(data), {"sampler": sampler, "batch_size": None}
    else:
        source, batching = data, {"batch_sampler": sampler}  # type: ignore[assignment]
    loader = DataLoader(
        source,
        **batching,  # type: ignore[arg-type]
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        # Its own generator, so creating the loader never draws from the global torch RNG
        # (which would shift a resumed run's random stream).
        generator=torch.Generator(),
    )
    for batch in loader:
        yield split_batch(batch, device)


def sequential_batches(
    data: DataLike, batch_size: int, *, device: torch.device, rank: int = 0, world_size: int = 1
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Every sample of ``data`` once, in order, in batches assigned round-robin to ranks."""
    n = num_samples(data)
    tensors = _tensors(data)
    for j, first in enumerate(range(0, n, batch_size)):
        if j % world_size != rank:
            continue
        idx = torch.arange(first, min(first + batch_size, n))
        if tensors is not None:
            yield split_batch(tuple(t[idx.to(t.device)] for t in tensors), device)
        elif _reads_batches(data):
            yield split_batch(data.get_batch(idx.tolist()), device)  # type: ignore[union-attr]
        else:
            items = [data[int(i)] for i in idx]
            yield split_batch(torch.utils.data.default_collate(items), device)

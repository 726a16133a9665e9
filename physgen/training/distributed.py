"""DDP under ``torchrun``: process group from the environment, wrapping, and small collectives."""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["Objective", "Process", "all_sum", "gather", "setup", "wrap"]


@dataclass(frozen=True)
class Process:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0, the only process that writes logs and checkpoints."""
        return self.rank == 0


def setup(device: torch.device) -> tuple[Process, torch.device]:
    """Join the process group ``torchrun`` describes in the environment, if any.

    ``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address; the
    backend is NCCL for CUDA and gloo for CPU. Without ``WORLD_SIZE > 1`` this is a no-op, so
    the same script runs single-process. On CUDA each process takes GPU ``LOCAL_RANK``.

    A group created here lives until the process exits (then it is destroyed), so several
    ``fit`` calls in one script share it: re-creating a group on the same rendezvous store
    can pick up the previous group's stale addresses and hang.

    Returns:
        The process description and the device this process trains on.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size == 1:
        return Process(), device
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(_leave)
    return Process(dist.get_rank(), dist.get_world_size(), local_rank), device


#: How long a process waits at exit for its peers before destroying the group alone.
LEAVE_TIMEOUT = datetime.timedelta(seconds=60)


def _leave() -> None:
    """Destroy the group at exit, after every rank has arrived (gloo).

    A gloo process that tears its connections down while a peer is still finishing its last
    collective can make the peer's transport thread call ``std::terminate`` (SIGABRT at exit,
    seen intermittently under load). A monitored barrier first lets every rank finish; it
    fails, rather than hangs, when a peer died, and the group is destroyed either way. A
    process ending on an uncaught exception (``sys.last_value`` is set before ``atexit`` runs)
    skips the barrier: its peers are blocked in a collective and would never arrive.
    """
    if not dist.is_initialized():
        return
    crashed = getattr(sys, "last_value", None) is not None
    if dist.get_backend() == "gloo" and not crashed:
        with contextlib.suppress(RuntimeError):  # a peer is gone; its launcher reports it
            dist.monitored_barrier(timeout=LEAVE_TIMEOUT, wait_all_ranks=True)
    dist.destroy_process_group()


class Objective(nn.Module):
    """Routes ``forward(method, x, cond)`` to ``model.<method>(x, cond)``.

    DDP synchronizes gradients only for computations that enter through ``forward``, while
    physgen models train through ``loss`` (or ``generator_loss``/``discriminator_loss``); this
    thin module is what gets wrapped.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, method: str, x: Tensor, cond: Tensor | None) -> Tensor:
        return getattr(self.model, method)(x, cond)


def wrap(
    model: nn.Module, process: Process, device: torch.device, two_player: bool
) -> Callable[[str, Tensor, Tensor | None], Tensor]:
    """``objective(method, x, cond)``: the model's loss ``method``, through DDP when multi-process.

    Single-process runs call the model directly (no wrapper module on the hot path).
    Two-player models leave one player's parameters unused in each step, so DDP is told to
    look for unused parameters there (and only there: the search costs a graph traversal).
    """
    if process.world_size == 1:
        return lambda method, x, cond: getattr(model, method)(x, cond)
    return DistributedDataParallel(
        Objective(model),
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=two_player,
    )


def all_sum(values: Tensor, process: Process) -> Tensor:
    """Sum ``values`` over processes (in place; gloo has no average, so callers divide)."""
    if process.world_size > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def gather(obj: Any, process: Process) -> list[Any]:
    """Every process's ``obj``, in rank order (a one-element list when single-process)."""
    if process.world_size == 1:
        return [obj]
    out: list[Any] = [None] * process.world_size
    dist.all_gather_object(out, obj)
    return out

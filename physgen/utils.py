"""Small tensor helpers shared by every family: broadcasting, seeding, float32 islands."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

__all__ = ["append_dims", "fp32", "full_precision", "seed_everything"]

# Device types on which torch.autocast can be active; fp32() turns all of them off.
_AUTOCAST_DEVICES = ("cpu", "cuda")

# The floating types autocast produces.
_REDUCED = (torch.float16, torch.bfloat16)


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dimensions to ``v`` until it has ``ndim`` dimensions.

    The one broadcasting helper for time-dependent scalars: a per-sample ``t`` of shape
    ``(B,)`` becomes ``(B, 1, 1, 1)`` against a ``(B, C, H, W)`` field, ``(B, 1, 1)`` against a
    1-D field and ``(B, 1)`` against vectors, so no code hard-codes the field dimension.

    Example:
        >>> append_dims(torch.ones(4), 4).shape
        torch.Size([4, 1, 1, 1])
    """
    missing = ndim - v.ndim
    if missing < 0:
        raise ValueError(f"append_dims: tensor has {v.ndim} dims, more than the target {ndim}")
    return v.reshape(*v.shape, *([1] * missing))


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _autocast_enabled() -> bool:
    try:
        return any(torch.is_autocast_enabled(d) for d in _AUTOCAST_DEVICES)
    except TypeError:  # torch < 2.4 takes no device argument: assume it may be on
        return True


@contextlib.contextmanager
def fp32() -> Iterator[None]:
    """Run the enclosed code with autocast disabled, so it computes in float32.

    Use it in model code around numerically delicate terms — log-determinants, KL
    divergences, divergence/trace estimates, gradient penalties, log-sum-exp bounds — which
    lose too much precision in bf16. Tensors computed *before* the block may already be bf16:
    cast them with ``.float()`` inside it.

    Example:
        >>> x = torch.randn(4, 3)
        >>> with torch.autocast("cpu", dtype=torch.bfloat16):
        ...     h = x @ x.T  # bf16 under autocast
        ...     with fp32():
        ...         logdet = torch.logdet(h.float() + 10 * torch.eye(4))
        >>> h.dtype, logdet.dtype
        (torch.bfloat16, torch.float32)
    """
    if not _autocast_enabled():
        yield  # nothing to disable (entering the contexts costs ~30 µs, per ODE step)
        return
    with contextlib.ExitStack() as stack:
        for device_type in _AUTOCAST_DEVICES:
            stack.enter_context(torch.autocast(device_type=device_type, enabled=False))
        yield


def full_precision(t: Tensor) -> Tensor:
    """``t`` in float32 if autocast left it in half or bfloat16; otherwise ``t`` itself.

    Elementwise arithmetic follows its inputs' dtype, so a log-scale coming out of a bf16
    network is promoted before it is exponentiated or summed into a log-determinant
    (float64 inputs stay float64).
    """
    return t.float() if t.dtype in _REDUCED else t

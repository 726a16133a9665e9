"""Small tensor helpers shared by every family: broadcasting of per-sample scalars, seeding."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import Tensor

__all__ = ["append_dims", "seed_everything"]


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

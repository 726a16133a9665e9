"""Mixed precision: bf16 autocast for training, ``fp32()`` for terms that must stay float32."""

from __future__ import annotations

import contextlib

import torch

from physgen.utils import fp32

__all__ = ["autocast", "fp32"]


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled``; a no-op context otherwise.

    bf16 keeps fp32's exponent range, so no gradient scaler is needed (unlike fp16).
    """
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

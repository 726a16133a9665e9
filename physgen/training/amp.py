"""Mixed precision: bf16 autocast for training, ``fp32()`` for terms that must stay float32."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["autocast", "fp32"]

# Device types on which torch.autocast can be active; fp32() turns all of them off.
_AUTOCAST_DEVICES = ("cpu", "cuda")


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled``; a no-op context otherwise.

    bf16 keeps fp32's exponent range, so no gradient scaler is needed (unlike fp16).
    """
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


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
    with contextlib.ExitStack() as stack:
        for device_type in _AUTOCAST_DEVICES:
            stack.enter_context(torch.autocast(device_type=device_type, enabled=False))
        yield

"""Smooth periodic Gaussian fields for the translation models' learning tests."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["smooth_fields"]


def smooth_fields(n: int, size: int, seed: int, width: float = 2.0) -> Tensor:
    r"""``n`` fields ``(n, 1, size, size)``: white noise filtered by :math:`e^{-|k|^2/2w^2}`
    (``k`` in cycles per box), each scaled to unit standard deviation over its pixels."""
    gen = torch.Generator().manual_seed(seed)
    k = torch.fft.fftfreq(size, d=1.0 / size, dtype=torch.float64)
    gain = torch.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / (2 * width**2))
    white = torch.randn(n, size, size, generator=gen, dtype=torch.float64)
    f = torch.fft.ifft2(gain * torch.fft.fft2(white)).real
    return (f / f.flatten(1).std(1)[:, None, None])[:, None]

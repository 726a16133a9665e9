"""Time embeddings, and the time-conditioned MLP of CNF, flow matching and diffusion on vectors."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .mlp import MLP

__all__ = ["FourierTime", "SinusoidalEmbedding", "TimeMLP"]


class FourierTime(nn.Module):
    r"""Time features :math:`[\cos(\pi k t), \sin(\pi k t)]_{k=1..K}` for :math:`t \in [0, 1]`
    (the layout of zuko's CNF), shape ``(B, 2K)``."""

    def __init__(self, freqs: int = 3) -> None:
        super().__init__()
        self.register_buffer("k", math.pi * torch.arange(1, freqs + 1, dtype=torch.float32))

    @property
    def features(self) -> int:
        return 2 * self.k.numel()

    def forward(self, t: Tensor) -> Tensor:
        angle = t[:, None] * self.k.to(t.dtype)  # (B, K)
        return torch.cat([angle.cos(), angle.sin()], dim=1)


class SinusoidalEmbedding(nn.Module):
    r"""Transformer sinusoidal embedding of ``scale * t`` (Vaswani et al. 2017; DDPM's U-Net):
    :math:`[\sin(s t\,\omega_j), \cos(s t\,\omega_j)]`, :math:`\omega_j = P^{-j/(d/2)}`."""

    def __init__(self, dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"SinusoidalEmbedding: dim must be even, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs)
        self.scale = scale

    def forward(self, t: Tensor) -> Tensor:
        angle = self.scale * t[:, None] * self.freqs.to(t.dtype)  # (B, dim/2)
        return torch.cat([angle.sin(), angle.cos()], dim=1)


class TimeMLP(nn.Module):
    r"""A time-conditioned vector field on ``(B, *shape)``: an MLP on
    ``[FourierTime(t), flatten(x), cond]``, output reshaped like ``x``.

    The input order (time features first) matches zuko's ``CNF`` so weights transfer.

    Example:
        >>> net = TimeMLP((2,), hidden=(16, 16))
        >>> net(torch.zeros(3, 2), torch.rand(3)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        shape: Sequence[int],
        cond_features: int = 0,
        hidden: Sequence[int] = (64, 64, 64),
        act: str = "silu",
        freqs: int = 3,
    ) -> None:
        super().__init__()
        self.shape = tuple(shape)
        features = math.prod(self.shape)
        self.time = FourierTime(freqs)
        self.cond_features = cond_features
        self.net = MLP(self.time.features + features + cond_features, features, hidden, act)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        parts = [self.time(t).to(x.dtype), x.flatten(1)]
        if self.cond_features:
            if cond is None:
                raise ValueError(f"TimeMLP: expected cond with {self.cond_features} features")
            parts.append(cond.flatten(1).to(x.dtype))
        return self.net(torch.cat(parts, dim=1)).reshape(x.shape)

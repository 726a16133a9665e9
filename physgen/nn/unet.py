"""A dimension-generic (1-D/2-D/3-D) time-conditioned U-Net with an optional periodic padding."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .conv import conv_nd
from .embeddings import SinusoidalEmbedding

__all__ = ["UNet", "twice_differentiable"]


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


class _ResBlock(nn.Module):
    """GroupNorm–SiLU–conv twice, the embedding added in between (Ho et al. 2020)."""

    def __init__(self, conv: type[nn.Module], c_in: int, c_out: int, emb: int, pad: str) -> None:
        super().__init__()
        self.norm1, self.norm2 = _norm(c_in), _norm(c_out)
        self.conv1 = conv(c_in, c_out, 3, padding=1, padding_mode=pad)
        self.conv2 = conv(c_out, c_out, 3, padding=1, padding_mode=pad)
        self.emb = nn.Linear(emb, c_out)
        self.skip = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb)).reshape(*h.shape[:2], *([1] * (h.ndim - 2)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


def twice_differentiable() -> AbstractContextManager[None]:
    """Attention computed by composite operations, so its gradient can be differentiated."""
    return sdpa_kernel(SDPBackend.MATH)


class _Attention(nn.Module):
    """Multi-head self-attention over all grid points, residual.

    Always the fused kernel (``scaled_dot_product_attention``), in training too. Its fused
    CPU/GPU backends have no second derivative, so code that differentiates a gradient
    through the network (a divergence kept for training, see
    :func:`physgen.likelihood.divergence`) runs the forward pass under
    ``twice_differentiable()``, which selects the composite (math) backend.
    """

    def __init__(self, channels: int, head_dim: int = 32) -> None:
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = _norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, L, C)
        q, k, v = self.qkv(h).reshape(b, -1, 3, self.heads, c // self.heads).unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, L, d)
        a = F.scaled_dot_product_attention(q, k, v)
        a = a.transpose(1, 2).reshape(b, -1, c)  # (B, L, C)
        return x + self.out(a).transpose(1, 2).reshape(x.shape)


class UNet(nn.Module):
    r"""Time-conditioned U-Net on fields ``(B, C, *grid)`` with ``len(grid)`` = 1, 2 or 3
    (Ronneberger et al. 2015, in the DDPM form of Ho et al. 2020).

    Each level has ``blocks`` residual blocks (and self-attention where ``attention[i]``),
    then a stride-2 convolution; the decoder mirrors it with skip connections and
    nearest-neighbour upsampling to the skip's exact size, so any grid size works (not only
    powers of two). ``periodic=True`` pads circularly, which makes the network equivariant
    to periodic shifts by multiples of ``2**(levels-1)``. Conditioning: a vector ``cond``
    (``cond_features``) is added to the time embedding; a field ``cond`` with
    ``cond_channels`` is concatenated to the input. The last convolution starts at zero.
    The time enters through ``SinusoidalEmbedding`` of ``time_scale * t``: DDPM's 1000 for
    noise levels, or a small scale where the output must be smooth in ``t`` (an ODE's
    velocity: the fastest feature varies at ``time_scale`` radians per unit time).

    Example:
        >>> net = UNet(ndim=1, in_channels=2, channels=(16, 32))
        >>> net(torch.zeros(3, 2, 30), torch.rand(3)).shape
        torch.Size([3, 2, 30])
    """

    def __init__(
        self,
        ndim: int,
        in_channels: int,
        out_channels: int | None = None,
        channels: Sequence[int] = (32, 64, 64),
        blocks: int = 1,
        attention: Sequence[bool] | None = None,
        periodic: bool = False,
        cond_features: int = 0,
        cond_channels: int = 0,
        time_scale: float = 1000.0,
    ) -> None:
        super().__init__()
        if ndim not in (1, 2, 3):
            raise ValueError(f"UNet: ndim must be 1, 2 or 3, got {ndim}")
        attention = list(attention) if attention is not None else [False] * len(channels)
        if len(attention) != len(channels):
            raise ValueError("UNet: attention needs one flag per entry of channels")
        conv, pad = conv_nd(ndim), "circular" if periodic else "zeros"
        out_channels = out_channels or in_channels
        emb = 4 * channels[0]
        self.cond_features, self.cond_channels = cond_features, cond_channels
        self.time = nn.Sequential(
            SinusoidalEmbedding(channels[0], scale=time_scale), nn.Linear(channels[0], emb),
            nn.SiLU(), nn.Linear(emb, emb),
        )  # fmt: skip
        self.cond = nn.Linear(cond_features, emb) if cond_features else None
        c_in = in_channels + cond_channels
        self.conv_in = conv(c_in, channels[0], 3, padding=1, padding_mode=pad)

        self.down = nn.ModuleList()
        skips, c = [channels[0]], channels[0]
        for i, width in enumerate(channels):
            for _ in range(blocks):
                layer = nn.ModuleList([_ResBlock(conv, c, width, emb, pad)])
                if attention[i]:
                    layer.append(_Attention(width))
                self.down.append(layer)
                c = width
                skips.append(c)
            if i < len(channels) - 1:
                downsample = conv(c, c, 3, stride=2, padding=1, padding_mode=pad)
                self.down.append(nn.ModuleList([downsample]))
                skips.append(c)
        self.mid = nn.ModuleList(
            [_ResBlock(conv, c, c, emb, pad), _Attention(c), _ResBlock(conv, c, c, emb, pad)]
        )
        self.up = nn.ModuleList()
        for i, width in reversed(list(enumerate(channels))):
            for _ in range(blocks + 1):
                layer = nn.ModuleList([_ResBlock(conv, c + skips.pop(), width, emb, pad)])
                if attention[i]:
                    layer.append(_Attention(width))
                self.up.append(layer)
                c = width
            if i > 0:
                self.up.append(nn.ModuleList([conv(c, c, 3, padding=1, padding_mode=pad)]))
        self.norm_out = _norm(c)
        self.conv_out = conv(c, out_channels, 3, padding=1, padding_mode=pad)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @staticmethod
    def _is_resample(layer: nn.ModuleList) -> bool:
        return not isinstance(layer[0], _ResBlock)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is None and (self.cond is not None or self.cond_channels):
            raise ValueError("UNet: this network is conditional; pass cond")
        emb = self.time(t.to(x.dtype))
        if self.cond is not None:
            emb = emb + self.cond(cond.flatten(1))
        if self.cond_channels:
            x = torch.cat([x, cond], dim=1)
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            if self._is_resample(layer):
                h = layer[0](h)
            else:
                h = layer[0](h, emb)
                for extra in layer[1:]:
                    h = extra(h)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for layer in self.up:
            if self._is_resample(layer):
                # Upsample to the size of the next skip: exact for odd grid sizes too.
                h = layer[0](F.interpolate(h, size=skips[-1].shape[2:], mode="nearest"))
            else:
                h = layer[0](torch.cat([h, skips.pop()], dim=1), emb)
                for extra in layer[1:]:
                    h = extra(h)
        return self.conv_out(F.silu(self.norm_out(h)))

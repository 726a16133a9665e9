"""Glow-style multi-scale flow for 1-D and 2-D fields of any grid size, periodic or not."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import ContextEncoder, activation, conv_nd
from ..transforms import (
    ActNormTransform,
    AffineCouplingTransform,
    ComposeTransform,
    Conv1x1Transform,
    MaskedAffineCouplingTransform,
    MultiScaleTransform,
    Transform,
    checkerboard_mask,
)
from ..utils import fp32
from .base import register_model
from .flows import Flow

__all__ = ["Glow", "PeriodicConv"]


class PeriodicConv(nn.Module):
    """Convolution with 'same' padding: wrapped on periodic axes, zeros on the others."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, periodic: Sequence[bool], zero: bool = False
    ) -> None:
        super().__init__()
        self.periodic, self.pad = tuple(periodic), kernel // 2
        self.conv = conv_nd(len(self.periodic))(c_in, c_out, kernel)
        if zero:  # the coupling starts at the identity map
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        d = len(self.periodic)
        for k, wrap in enumerate(self.periodic):
            if self.pad:
                pad = [0, 0] * d
                pad[2 * (d - 1 - k) : 2 * (d - k)] = [self.pad, self.pad]
                x = F.pad(x, pad, mode="circular" if wrap else "constant")
        return self.conv(x)


def _resize(h: Tensor, grid: tuple[int, ...]) -> Tensor:
    """A context ``(B, E)`` broadcast over ``grid``, or a context map resampled onto it."""
    if h.ndim == 2:
        return h.reshape(*h.shape, *([1] * len(grid))).expand(*h.shape, *grid)
    if tuple(h.shape[2:]) == grid:
        return h
    if all(m <= n for m, n in zip(grid, h.shape[2:], strict=True)):
        pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d}[len(grid)]
        return pool(h, grid)
    return F.interpolate(h, size=grid, mode="linear" if len(grid) == 1 else "bilinear")


class _ConvConditioner(nn.Module):
    """``(kept field, context map) -> (shift, log-scale)``: 3×3, 1×1, zero-initialised 3×3."""

    def __init__(
        self, c_in: int, c_out: int, context: int, hidden: int, act: str, periodic: Sequence[bool]
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            PeriodicConv(c_in + context, hidden, 3, periodic),
            activation(act),
            PeriodicConv(hidden, hidden, 1, periodic),
            activation(act),
            PeriodicConv(hidden, 2 * c_out, 3, periodic, zero=True),
        )
        self.d = len(periodic)

    def bind(self, h: Tensor | None) -> Any:
        def conditioner(kept: Tensor) -> tuple[Tensor, ...]:
            event = kept.shape[kept.ndim - 1 - self.d :]
            flat = kept.reshape(-1, *event)  # (N, C, *grid): sample dims folded into the batch
            if h is not None:
                ctx = _resize(h, tuple(event[1:]))
                lead = kept.shape[: kept.ndim - 1 - self.d]
                ctx = ctx.expand(*lead, *ctx.shape[1:]).reshape(-1, *ctx.shape[1:])
                flat = torch.cat([flat, ctx], dim=1)
            out = self.net(flat)
            return out.reshape(*kept.shape[: kept.ndim - 1 - self.d], *out.shape[1:]).chunk(
                2, dim=-1 - self.d
            )

        return conditioner


class _ActNorm(nn.Module):
    """Per-channel ActNorm whose first data batch sets its parameters (Glow §3.1)."""

    def __init__(self, channels: int, spatial_dims: int) -> None:
        super().__init__()
        shape = (channels,) + (1,) * spatial_dims
        self.loc = nn.Parameter(torch.zeros(shape))
        self.log_scale = nn.Parameter(torch.zeros(shape))
        self.register_buffer("initialized", torch.tensor(False))

    def _initialize(self, x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            flat = x.movedim(-self.loc.ndim, 0).reshape(self.loc.shape[0], -1)  # (C, N)
            self.loc.copy_(flat.mean(1).reshape(self.loc.shape))
            std = flat.std(1) if flat.shape[1] > 1 else torch.ones_like(flat[:, 0])
            self.log_scale.copy_(std.clamp_min(1e-6).log().reshape(self.loc.shape))
            self.initialized.fill_(True)
        return self.loc, self.log_scale

    def forward(self, h: Tensor | None) -> Transform:
        init = None if bool(self.initialized) else self._initialize
        return ActNormTransform(self.loc, self.log_scale, self.loc.ndim, initialize=init)


class _InvConv1x1(nn.Module):
    r"""LU-parametrised 1×1 convolution :math:`W = P L (U + \mathrm{diag}(s))` (Glow §3.2)."""

    def __init__(self, channels: int, spatial_dims: int) -> None:
        super().__init__()
        q = torch.linalg.qr(torch.randn(channels, channels))[0]
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign", torch.sign(s))
        self.lower = nn.Parameter(torch.tril(lower, -1))
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(s.abs().log())
        self.event_dim = 1 + spatial_dims

    def forward(self, h: Tensor | None) -> Transform:
        eye = torch.eye(self.lower.shape[0], device=self.lower.device, dtype=self.lower.dtype)
        lower = torch.tril(self.lower, -1) + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign * self.log_s.exp())
        with fp32():  # a bf16 product would not be the map whose log-det is sum(log_s)
            weight = self.perm @ lower @ upper
        return Conv1x1Transform(weight, self.event_dim, log_det=self.log_s.sum())


class _ChannelCoupling(nn.Module):
    def __init__(self, channels: int, context: int, hidden: int, act: str,
                 periodic: Sequence[bool], keep_first: bool) -> None:  # fmt: skip
        super().__init__()
        self.split, self.keep_first, self.d = channels // 2, keep_first, len(periodic)
        kept = self.split if keep_first else channels - self.split
        self.net = _ConvConditioner(kept, channels - kept, context, hidden, act, periodic)

    def forward(self, h: Tensor | None) -> Transform:
        return AffineCouplingTransform(
            self.net.bind(h), self.split, -1 - self.d, 1 + self.d, self.keep_first
        )


class _CheckerboardCoupling(nn.Module):
    def __init__(self, channels: int, grid: tuple[int, ...], context: int, hidden: int, act: str,
                 periodic: Sequence[bool], parity: int) -> None:  # fmt: skip
        super().__init__()
        self.register_buffer("mask", checkerboard_mask(grid, parity), persistent=False)
        self.net = _ConvConditioner(channels, channels, context, hidden, act, periodic)
        self.d = len(grid)

    def forward(self, h: Tensor | None) -> Transform:
        return MaskedAffineCouplingTransform(self.net.bind(h), self.mask, 1 + self.d)


@register_model("glow")
class Glow(Flow):
    r"""Multi-scale flow for fields ``(C, *grid)``, 1-D or 2-D, any grid size, conditional.

    Level ``l`` (RealNVP/Glow multi-scale, :class:`~physgen.transforms.MultiScaleTransform`):

    * ``checker_steps`` × [ActNorm, checkerboard affine coupling] at the current resolution
      (alternating parity; every site, odd edges included, is transformed);
    * on all but the coarsest level: trailing slices of odd-sized axes factored out, squeeze
      ``(C, n) -> (2^d C, n/2)``, ``steps`` × [ActNorm, invertible 1×1 convolution (LU),
      channel affine coupling], then half of the channels factored out and the rest passed on.

    Conditioners are small conv nets (3×3, 1×1, 3×3 zero-initialised) whose padding wraps
    around the axes flagged ``periodic``. A context (``cond_shape``) is embedded by
    :class:`~physgen.nn.ContextEncoder` (a vector, or a field on any grid) and
    fed to every conditioner as extra channels, resampled onto each level's grid.

    ActNorm layers take their initial values from the first batch they transform.

    Example:
        >>> flow = Glow(shape=[1, 7, 5], levels=2, hidden=8)
        >>> flow.sample(2).shape
        torch.Size([2, 1, 7, 5])

    References:
        Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma and Dhariwal, 2018),
        https://arxiv.org/abs/1807.03039; Density estimation using Real NVP (Dinh et al.,
        2017), https://arxiv.org/abs/1605.08803
    """

    example_shape: ClassVar[tuple[int, ...]] = (1, 6, 5)
    example_cond_shape: ClassVar[tuple[int, ...] | None] = (1, 3, 3)  # a coarser field

    def __init__(
        self,
        shape: Sequence[int],
        cond_shape: Sequence[int] | None = None,
        levels: int | None = None,
        steps: int = 2,
        checker_steps: int = 2,
        hidden: int = 64,
        act: str = "relu",
        periodic: bool | Sequence[bool] = False,
        context_features: int = 16,
    ) -> None:
        super().__init__()
        shape = tuple(int(n) for n in shape)
        d = len(shape) - 1
        if d not in (1, 2):
            raise ValueError(f"Glow: shape must be (C, n) or (C, n1, n2), got {shape}")
        wrap = (bool(periodic),) * d if isinstance(periodic, bool) else tuple(periodic)
        if len(wrap) != d:
            raise ValueError(f"Glow: periodic needs one flag per spatial axis ({d}), got {wrap}")
        max_levels = 1 + math.floor(math.log2(min(shape[1:])))
        levels = min(3, max_levels) if levels is None else levels
        if not 1 <= levels <= max_levels:
            raise ValueError(
                f"Glow: grid {shape[1:]} allows 1 to {max_levels} levels, got {levels}"
            )
        self.event_shape, self.d = shape, d
        self.encoder = (
            None
            if cond_shape is None
            else ContextEncoder(cond_shape, context_features, act, keep_grid=True)
        )
        ctx = 0 if self.encoder is None else self.encoder.features
        channels, grid = shape[0], shape[1:]
        pre, post = nn.ModuleList(), nn.ModuleList()
        for level in range(levels):
            layers = nn.ModuleList()
            for i in range(checker_steps):
                if checkerboard_mask(grid, i % 2).all():
                    continue  # a single site: this parity would leave everything unchanged
                layers.append(_ActNorm(channels, d))
                layers.append(_CheckerboardCoupling(channels, grid, ctx, hidden, act, wrap, i % 2))
            pre.append(layers)
            if level == levels - 1:
                break
            channels, grid = channels * 2**d, tuple(n // 2 for n in grid)
            layers = nn.ModuleList()
            for i in range(steps):
                layers.append(_ActNorm(channels, d))
                layers.append(_InvConv1x1(channels, d))
                layers.append(_ChannelCoupling(channels, ctx, hidden, act, wrap, i % 2 == 0))
            post.append(layers)
            channels = channels - channels // 2
        self.pre, self.post = pre, post

    def initialize(self, x: Tensor, cond: Tensor | None = None) -> None:
        """Set every ActNorm layer not yet initialised from the batch ``x`` (one pass)."""
        if any(isinstance(m, _ActNorm) and not m.initialized for m in self.modules()):
            with torch.no_grad():
                self.log_prob(x, cond)

    def transform(self, cond: Tensor | None = None) -> Transform:
        h = self._embed(cond)
        ev = 1 + self.d

        def compose(layers: nn.ModuleList) -> Transform:
            return ComposeTransform([layer(h) for layer in layers], ev)

        t: Transform | None = None
        for level in reversed(range(len(self.pre))):
            post = compose(self.post[level]) if level < len(self.post) else None
            t = MultiScaleTransform(self.d, compose(self.pre[level]), post, t)
        assert t is not None
        return t

    @classmethod
    def for_shape(cls, sample_shape: tuple[int, ...], cond_shape: tuple[int, ...] | None = None,
                  **overrides: Any) -> Glow:  # fmt: skip
        return cls(**{"shape": list(sample_shape), "cond_shape": cond_shape, "hidden": 32,
                      **overrides})  # fmt: skip

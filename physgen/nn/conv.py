"""Dimension-generic encoders and decoders for vectors and 1-D/2-D/3-D fields."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mlp import MLP, activation

__all__ = ["ConvDecoder", "ConvEncoder", "conv_nd", "field_decoder", "field_encoder"]


def conv_nd(spatial_dims: int) -> type[nn.Module]:
    """``nn.Conv1d``, ``nn.Conv2d`` or ``nn.Conv3d`` for a field of ``spatial_dims`` axes."""
    try:
        return {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]
    except KeyError:
        raise ValueError(f"fields must have 1 to 3 spatial axes, got {spatial_dims}") from None


_POOLS = ("flatten", "mean", "moments")


def _halved(grid: Sequence[int], levels: int) -> list[tuple[int, ...]]:
    """Grid sizes after each stride-2 convolution (kernel 3, padding 1): ``ceil(n / 2)``."""
    sizes = [tuple(grid)]
    for _ in range(levels):
        sizes.append(tuple(math.ceil(n / 2) for n in sizes[-1]))
    return sizes


class ConvEncoder(nn.Module):
    """Field ``(B, C, *grid)`` → vector ``(B, out_features)`` by stride-2 convolutions.

    Each level halves every grid axis (``ceil(n/2)``, so any grid size works, not only powers
    of two); the last feature map is flattened (``pool="flatten"``) or averaged over the grid
    (``pool="mean"``, global average pooling, Lin et al. 2014), or summarised by its mean and
    standard deviation over the grid (``pool="moments"``, 2 numbers per channel), and mapped
    linearly to ``out_features``. Pooled features are local statistics of the field (its
    level, local energy, roughness) summed over position: the output no longer depends on
    *where* a feature sits, only on how much of it there is.

    Example:
        >>> import torch
        >>> enc = ConvEncoder((1, 20, 12), 8, channels=(8, 16))
        >>> enc(torch.zeros(3, 1, 20, 12)).shape
        torch.Size([3, 8])
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        out_features: int,
        channels: Sequence[int] = (32, 64),
        act: str = "silu",
        pool: str = "flatten",
    ) -> None:
        super().__init__()
        if pool not in _POOLS:
            raise ValueError(f"pool must be one of {_POOLS}, got {pool!r}")
        self.pool = pool
        in_channels, *grid = in_shape
        conv = conv_nd(len(grid))
        layers: list[nn.Module] = []
        width = in_channels
        for c in channels:
            layers += [conv(width, c, kernel_size=3, stride=2, padding=1), activation(act)]
            width = c
        self.features = nn.Sequential(*layers)
        last = _halved(grid, len(channels))[-1]
        per_channel = {"mean": 1, "moments": 2}.get(pool, math.prod(last))
        self.head = nn.Linear(width * per_channel, out_features)

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x)  # (B, C_last, *grid_last)
        if self.pool == "mean":
            return self.head(h.flatten(2).mean(2))  # (B, C_last) → (B, F)
        if self.pool == "moments":  # a feature's spread is first order in the field's size
            std, mean = torch.std_mean(h.flatten(2), dim=2, correction=0)
            return self.head(torch.cat([mean, std], 1))  # (B, 2 C_last) → (B, F)
        return self.head(h.flatten(1))  # (B, C_last * prod(grid_last)) → (B, F)


class ConvDecoder(nn.Module):
    """Vector ``(B, in_features)`` → field ``(B, C, *grid)``, the mirror of `ConvEncoder`.

    A linear layer fills the coarsest feature map; each level upsamples (linear interpolation)
    to the exact size the encoder saw at that level and applies a 3-point convolution, so odd
    grid sizes come back exactly.

    Example:
        >>> import torch
        >>> dec = ConvDecoder(8, (2, 21), channels=(16, 8))
        >>> dec(torch.zeros(3, 8)).shape
        torch.Size([3, 2, 21])
    """

    def __init__(
        self,
        in_features: int,
        out_shape: Sequence[int],
        channels: Sequence[int] = (64, 32),
        act: str = "silu",
    ) -> None:
        super().__init__()
        out_channels, *grid = out_shape
        conv = conv_nd(len(grid))
        self.sizes = _halved(grid, len(channels))[::-1]  # coarsest first
        self.channels = tuple(channels)
        self.head = nn.Linear(in_features, channels[0] * math.prod(self.sizes[0]))
        self.act = activation(act)
        widths = [*channels, channels[-1]]
        self.convs = nn.ModuleList(
            conv(widths[i], widths[i + 1], kernel_size=3, padding=1) for i in range(len(channels))
        )
        self.out = conv(channels[-1], out_channels, kernel_size=3, padding=1)
        self._mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(grid)]

    def forward(self, z: Tensor) -> Tensor:
        h = self.act(self.head(z)).reshape(z.shape[0], self.channels[0], *self.sizes[0])
        for conv, size in zip(self.convs, self.sizes[1:], strict=True):
            h = F.interpolate(h, size=size, mode=self._mode, align_corners=False)
            h = self.act(conv(h))  # (B, C_level, *size)
        return self.out(h)


class _Flatten(nn.Module):
    """``(B, *shape)`` → MLP → ``(B, out)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


class _Unflatten(nn.Module):
    """``(B, in)`` → MLP → ``(B, *shape)``."""

    def __init__(self, net: nn.Module, shape: Sequence[int]) -> None:
        super().__init__()
        self.net = net
        self.shape = tuple(shape)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).reshape(z.shape[0], *self.shape)


def field_encoder(
    shape: Sequence[int],
    out_features: int,
    arch: str = "mlp",
    hidden: Sequence[int] = (128, 128),
    channels: Sequence[int] = (32, 64),
    act: str = "silu",
    pool: str = "flatten",
) -> nn.Module:
    """Encoder from samples of ``shape`` to vectors: ``"mlp"`` (flattened) or ``"conv"``.

    ``"conv"`` needs ``shape = (C, *grid)`` with a 1-, 2- or 3-D grid; ``pool`` is
    `ConvEncoder`'s (``"mean"``, ``"moments"``: pooled over the grid; only with ``"conv"``).
    """
    if arch == "mlp":
        if pool != "flatten":
            raise ValueError(f"pool={pool!r} needs arch='conv', got arch='mlp'")
        return _Flatten(MLP(math.prod(shape), out_features, hidden=hidden, act=act))
    if arch == "conv":
        if len(shape) < 2:
            raise ValueError(f"arch='conv' needs a (C, *grid) sample shape, got {tuple(shape)}")
        return ConvEncoder(shape, out_features, channels=channels, act=act, pool=pool)
    raise ValueError(f"unknown arch {arch!r}; expected 'mlp' or 'conv'")


def field_decoder(
    in_features: int,
    shape: Sequence[int],
    arch: str = "mlp",
    hidden: Sequence[int] = (128, 128),
    channels: Sequence[int] = (32, 64),
    act: str = "silu",
) -> nn.Module:
    """Decoder from vectors to samples of ``shape``, mirroring `field_encoder`.

    ``channels`` is given in encoder order; the decoder walks it backwards.
    """
    if arch == "mlp":
        mlp = MLP(in_features, math.prod(shape), hidden=tuple(hidden)[::-1], act=act)
        return _Unflatten(mlp, shape)
    if arch == "conv":
        if len(shape) < 2:
            raise ValueError(f"arch='conv' needs a (C, *grid) sample shape, got {tuple(shape)}")
        return ConvDecoder(in_features, shape, channels=tuple(channels)[::-1], act=act)
    raise ValueError(f"unknown arch {arch!r}; expected 'mlp' or 'conv'")

"""Networks chosen by the shape of what they read: MLPs for vectors, convolutions for fields."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from .conv import conv_nd
from .embeddings import TimeMLP
from .mlp import activation
from .unet import UNet

__all__ = ["ContextEncoder", "time_network"]


def time_network(
    sample_shape: tuple[int, ...],
    cond_shape: tuple[int, ...] | None,
    *,
    hidden: list[int],
    act: str,
    freqs: int,
    channels: list[int],
    blocks: int,
    attention: list[bool] | None,
    periodic: bool,
    time_scale: float = 1000.0,
) -> nn.Module:
    """``net(x, t, cond)`` for samples of ``sample_shape``: ``TimeMLP`` on vectors, ``UNet`` on
    fields ``(C, *grid)`` (time embedded at ``time_scale``). A field ``cond`` (same grid) is
    stacked as channels, any other is flattened into features."""
    if len(sample_shape) == 1:
        features = math.prod(cond_shape) if cond_shape else 0
        return TimeMLP(sample_shape, features, hidden, act, freqs)
    field_cond = cond_shape is not None and tuple(cond_shape[1:]) == tuple(sample_shape[1:])
    return UNet(
        ndim=len(sample_shape) - 1,
        in_channels=sample_shape[0],
        channels=channels,
        blocks=blocks,
        attention=attention,
        periodic=periodic,
        cond_features=math.prod(cond_shape) if cond_shape and not field_cond else 0,
        cond_channels=cond_shape[0] if field_cond else 0,
        time_scale=time_scale,
    )


class ContextEncoder(nn.Module):
    """Embed a context for the conditioners: a vector as is, a field by a small conv net.

    * vector context ``(B, Dc)``: returned unchanged (``features = Dc``);
    * field context ``(B, Cc, *grid)``: two 3×3 convolutions to ``features`` channels, then
      (``keep_grid=False``) a mean over the grid and a linear layer, giving ``(B, features)``,
      or (``keep_grid=True``) the feature map ``(B, features, *grid)`` itself, which field
      flows resample to each scale.
    """

    def __init__(
        self,
        cond_shape: Sequence[int],
        features: int = 16,
        act: str = "relu",
        keep_grid: bool = False,
    ) -> None:
        super().__init__()
        self.cond_shape = tuple(cond_shape)
        if len(self.cond_shape) == 1:
            self.features, self.net = self.cond_shape[0], None
            return
        d = len(self.cond_shape) - 1
        conv = conv_nd(d)
        layers: list[nn.Module] = [
            conv(self.cond_shape[0], features, 3, padding=1),
            activation(act),
            conv(features, features, 3, padding=1),
        ]
        if not keep_grid:
            layers += [activation(act), nn.Flatten(2), _MeanLast(), nn.Linear(features, features)]
        self.features, self.net = features, nn.Sequential(*layers)

    def forward(self, cond: Tensor) -> Tensor:
        if tuple(cond.shape[1:]) != self.cond_shape:
            raise ValueError(
                f"cond: expected shape (B, {', '.join(map(str, self.cond_shape))}), "
                f"got {tuple(cond.shape)}"
            )
        return cond if self.net is None else self.net(cond)


class _MeanLast(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.mean(-1)

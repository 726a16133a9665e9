r"""PatchGAN critic: a fully convolutional map of real/fake logits, one per input patch.

Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks" (CVPR 2017,
arXiv:1611.07004), in 1-D, 2-D or 3-D. ``n`` feature layers of kernel 4 (strides 2, ..., 2, 1)
with LeakyReLU(0.2), then a kernel-4 stride-1 output layer. Each logit sees a cube of

.. math:: r = 1 + \sum_i (k_i - 1)\prod_{j<i} s_j = 1 + 3(2^n - 1) + 3\cdot 2^{n-1}

grid points per axis (16, 34, 70 for n = 2, 3, 4; the paper's "70 × 70 PatchGAN" is n = 4).
No normalization layers: an instance or batch norm would couple every patch (and every
sample), which the patch receptive field and per-sample gradient penalties both exclude.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["PatchGAN", "patch_receptive_field"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
KERNEL = 4


def patch_receptive_field(levels: int) -> int:
    """Receptive field per axis of a PatchGAN with ``levels`` feature layers (the formula)."""
    return 1 + 3 * (2**levels - 1) + 3 * 2 ** (levels - 1)


def _out_size(n: int, stride: int) -> int:
    return (n + 2 - KERNEL) // stride + 1  # padding 1 on each side


class PatchGAN(nn.Module):
    """Fields ``(B, C, *grid)`` → patch logits ``(B, 1, *patches)``.

    Args:
        ndim: number of grid axes (1, 2 or 3).
        in_channels: input channels (the sample and its conditioning, concatenated).
        channels: widths of the feature layers; their number ``n`` sets the patch size.
        periodic: pad circularly (periodic grids) instead of with zeros.

    Example:
        >>> import torch
        >>> net = PatchGAN(2, 3, channels=(8, 16, 16))
        >>> net(torch.zeros(2, 3, 32, 32)).shape, net.receptive_field
        (torch.Size([2, 1, 6, 6]), 34)
    """

    def __init__(
        self,
        ndim: int,
        in_channels: int,
        channels: Sequence[int] = (64, 128, 256),
        *,
        periodic: bool = False,
    ) -> None:
        super().__init__()
        if ndim not in _CONV:
            raise ValueError(f"PatchGAN: ndim must be 1, 2 or 3, got {ndim}")
        if not channels:
            raise ValueError("PatchGAN: need at least one feature layer")
        conv, pad = _CONV[ndim], "circular" if periodic else "zeros"
        layers: list[nn.Module] = []
        width = in_channels
        for i, c in enumerate(channels):
            stride = 2 if i < len(channels) - 1 else 1
            layers += [conv(width, c, KERNEL, stride, 1, padding_mode=pad), nn.LeakyReLU(0.2)]
            width = c
        layers.append(conv(width, 1, KERNEL, 1, 1, padding_mode=pad))
        self.net = nn.Sequential(*layers)
        self.levels = len(channels)

    @property
    def receptive_field(self) -> int:
        """Grid points per axis that one logit sees, from the layers' kernels and strides."""
        size, jump = 1, 1
        for layer in self.net:
            if isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Conv3d):
                size += (layer.kernel_size[0] - 1) * jump
                jump *= layer.stride[0]
        return size

    def patches(self, grid: Sequence[int]) -> tuple[int, ...]:
        """The logit map's shape for an input grid (empty axes mean the grid is too small)."""
        out = []
        for n in grid:
            for i in range(self.levels + 1):
                n = _out_size(n, 2 if i < self.levels - 1 else 1)
            out.append(n)
        return tuple(out)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

"""Multi-layer perceptron with activations chosen by name (so model configs stay JSON-able)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "MLP", "CoordinateNet", "activation"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module from its name (one of ``ACTIVATIONS``)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}"
        ) from None


class MLP(nn.Sequential):
    r"""Fully connected network ``in_features -> hidden... -> out_features``.

    .. math:: h_{k+1} = \sigma(W_k h_k + b_k), \qquad y = W_L h_L + b_L

    The last layer is linear (no activation). ``zero_last=True`` initialises it to zero, the
    usual start for residual parameterisations (coupling layers, velocity fields) so the model
    begins at the identity.

    Example:
        >>> import torch
        >>> net = MLP(3, 2, hidden=(16, 16), act="silu")
        >>> net(torch.zeros(5, 3)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (64, 64),
        act: str = "relu",
        zero_last: bool = False,
    ) -> None:
        widths = [in_features, *hidden]
        layers: list[nn.Module] = []
        for width_in, width_out in pairwise(widths):
            layers += [nn.Linear(width_in, width_out), activation(act)]
        last = nn.Linear(widths[-1], out_features)
        if zero_last:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        super().__init__(*layers, last)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x)


class CoordinateNet(nn.Module):
    r"""Field as a function of coordinate and latent: :math:`(x, z)\mapsto\mathrm{MLP}([x, z])`.

    The coordinate-conditioned decoder/generator of PI-GAN (Yang, Zhang & Karniadakis 2020)
    and of the SDE PI-VAE (Zhong & Meidani 2023): ``depth`` hidden layers of ``width``.
    """

    def __init__(self, latent_dim: int, width: int, depth: int, act: str) -> None:
        super().__init__()
        self.net = MLP(1 + latent_dim, 1, hidden=(width,) * depth, act=act)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        """Coordinates ``(B, P)`` and latents ``(B, L)`` to values ``(B, P)``."""
        zp = z[:, None, :].expand(*x.shape, z.shape[1])  # (B, P, L)
        return self.net(torch.cat([x[..., None].to(z.dtype), zp], dim=-1)).squeeze(-1)

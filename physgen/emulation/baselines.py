"""Reference forecasters of the next frame: persistence, climatology and a deterministic U-Net."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from physgen.emulation.emulator import SolverModel
from physgen.models import GenerativeModel
from physgen.nn.unet import UNet

__all__ = ["Regressor", "climatology_model", "persistence_model"]


def persistence_model(settings: dict[str, Any]) -> SolverModel:
    """Persistence, u_j = u_{j−1}: the identity map behind the model protocol."""
    return SolverModel(lambda frame: frame, settings)


def climatology_model(frames: Tensor, settings: dict[str, Any]) -> SolverModel:
    """Climatology: each draw is a frame of the training distribution picked at random,
    whatever the history (``frames`` ``(N, C, *grid)`` in physical units)."""

    def draw(newest: Tensor) -> Tensor:
        pick = torch.randint(len(frames), (len(newest),))
        return frames[pick].to(newest)

    return SolverModel(draw, settings)


class Regressor(GenerativeModel):
    r"""A deterministic U-Net of the next frame, :math:`\hat u_j = f_\theta(u_{j-k..j-1})`,
    trained by the mean squared error on the same pairs as the generative emulators (the
    deterministic baseline of PDEArena, Gupta & Brandstetter 2022). ``sample`` returns
    :math:`f_\theta` for every draw: an ensemble without spread.
    """

    example_shape = (1, 8)
    example_cond_shape = (2, 8)

    def __init__(
        self,
        sample_shape: list[int] | tuple[int, ...],
        cond_shape: list[int] | tuple[int, ...],
        *,
        channels: list[int] | tuple[int, ...] = (32, 64),
        blocks: int = 1,
        periodic: bool = False,
    ) -> None:
        super().__init__(
            sample_shape=list(sample_shape), cond_shape=list(cond_shape),
            channels=list(channels), blocks=blocks, periodic=periodic,
        )  # fmt: skip
        if len(sample_shape) < 2 or tuple(cond_shape[1:]) != tuple(sample_shape[1:]):
            raise ValueError(
                f"Regressor needs fields of one grid, got {sample_shape} and {cond_shape}"
            )
        self.sample_shape, self.cond_shape = tuple(sample_shape), tuple(cond_shape)
        self.net = UNet(
            ndim=len(sample_shape) - 1, in_channels=cond_shape[0], out_channels=sample_shape[0],
            channels=channels, blocks=blocks, periodic=periodic,
        )  # fmt: skip

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> Regressor:
        if cond_shape is None:
            raise ValueError("Regressor needs a cond_shape (the history channels)")
        return cls(sample_shape, cond_shape, **overrides)

    def predict(self, cond: Tensor) -> Tensor:
        """f_θ(cond), ``(B, *sample_shape)``."""
        return self.net(cond, torch.zeros(len(cond), device=cond.device, dtype=cond.dtype))

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is None:
            raise ValueError("Regressor.loss needs cond")
        return (self.predict(cond) - x).pow(2).flatten(1).mean(1)

    @torch.no_grad()
    def sample(self, n: int, cond: Tensor | None = None, **options: Any) -> Tensor:
        if cond is None or len(cond) != n:
            raise ValueError("Regressor.sample needs one condition per sample")
        return self.predict(cond)

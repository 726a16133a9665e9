"""DCGAN for 1-D, 2-D and 3-D fields: convolutional generator and critic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ..nn.conv import ConvDecoder, ConvEncoder
from .adversarial import AdversarialModel
from .base import register_model

__all__ = ["DCGAN"]


@register_model("dcgan")
class DCGAN(AdversarialModel):
    r"""Deep convolutional GAN (Radford, Metz & Chintala 2016) for fields ``(C, *grid)``.

    The generator is ``physgen.nn.ConvDecoder`` (a linear map to the coarsest feature map,
    then interpolation + 3-point convolutions up to the exact grid, so any grid size works);
    the critic is ``physgen.nn.ConvEncoder`` (stride-2 convolutions, a linear head). Neither
    uses batch normalization: per-sample critic outputs are what the gradient penalty
    assumes, and sampling then does not depend on the batch.

    ``objective`` is ``non_saturating`` (default), ``minimax`` or ``wasserstein``;
    ``lipschitz`` is ``none``, ``clip`` or ``gp`` (default ``gp`` for the Wasserstein
    objective, ``none`` otherwise); ``spectral_norm=True`` normalizes every critic layer.

    Example:
        >>> model = DCGAN(sample_shape=[1, 24], latent_dim=4, channels=[8, 16])
        >>> model.sample(3).shape
        torch.Size([3, 1, 24])
    """

    example_shape = (1, 12, 10)

    def __init__(
        self,
        sample_shape: Sequence[int],
        latent_dim: int = 64,
        channels: Sequence[int] = (32, 64),
        act: str = "relu",
        critic_act: str = "leaky_relu",
        objective: str = "non_saturating",
        lipschitz: str | None = None,
        gp_weight: float = 10.0,
        clip_value: float = 0.01,
        n_critic: int = 1,
        spectral_norm: bool = False,
        physics_weight: float = 0.0,
    ) -> None:
        if len(sample_shape) not in (2, 3, 4):
            raise ValueError(
                f"DCGAN needs fields (C, *grid) with a 1-, 2- or 3-D grid; got {list(sample_shape)}"
            )
        if lipschitz is None:
            lipschitz = "gp" if objective == "wasserstein" else "none"
        config = {
            "sample_shape": [int(s) for s in sample_shape],
            "latent_dim": latent_dim,
            "channels": [int(c) for c in channels],
            "act": act,
            "critic_act": critic_act,
            "objective": objective,
            "lipschitz": lipschitz,
            "gp_weight": gp_weight,
            "clip_value": clip_value,
            "n_critic": n_critic,
            "spectral_norm": spectral_norm,
            "physics_weight": physics_weight,
        }
        super().__init__(objective, lipschitz, config, sample_shape, None, latent_dim)

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> DCGAN:
        if cond_shape is not None:
            raise ValueError("dcgan is unconditional; use cgan for conditional generation")
        return cls(sample_shape=sample_shape, **overrides)

    def build_generator(self) -> nn.Module:
        channels = self.config["channels"][::-1]  # coarsest (widest) first
        return ConvDecoder(self.latent_dim, self.sample_shape, channels, self.config["act"])

    def build_critic(self) -> nn.Module:
        cfg = self.config
        return ConvEncoder(self.sample_shape, 1, cfg["channels"], cfg["critic_act"])

    def generate(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.generator_net(z)  # (B, C, *grid)

    def score(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.critic_net(x).squeeze(-1)

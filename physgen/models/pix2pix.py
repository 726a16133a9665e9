r"""pix2pix: paired field-to-field translation by a conditional GAN with a U-Net and a PatchGAN.

Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks" (CVPR 2017,
arXiv:1611.07004). The generator :math:`G(z, c)` is a U-Net (:class:`physgen.nn.UNet`) on the
condition field :math:`c` with a noise field :math:`z` as extra input channels; the critic
:math:`D(x, c)` is a :class:`physgen.nn.patchgan.PatchGAN` on the concatenated fields, which
scores every patch. Per sample, with :math:`\ell` the adversarial objective averaged over
the patch logits,

.. math:: L_D = \overline{\ell_D(D(x, c), D(G(z, c), c))},\qquad
          L_G = \overline{\ell_G(D(G(z, c), c))} + \lambda_1 \overline{|G(z, c) - x|}
          + \lambda_P P(G(z, c)),

the L1 term tying the output to the paired target (λ₁ = 100 in the paper) and :math:`P` an
optional physics penalty (PI-GAN's residual term). As the paper notes, the generator learns
to ignore much of the noise, so its ensembles are narrow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..nn import UNet
from ..nn.patchgan import PatchGAN
from .adversarial import AdversarialModel
from .base import register_model
from .gan_losses import critic_objective, generator_objective

__all__ = ["Pix2Pix", "check_field_pair", "check_patch_map", "critic_levels", "default_critic"]


def critic_levels(grid: Sequence[int], most: int = 3) -> int:
    """The deepest PatchGAN (at most ``most`` levels) whose patch map is at least 2 per axis."""
    for levels in range(most, 0, -1):
        if min(PatchGAN(len(grid), 1, [1] * levels).patches(grid)) >= 2:
            return levels
    raise ValueError(f"pix2pix: grid {tuple(grid)} is too small for a PatchGAN critic")


def default_critic(sample_shape: Sequence[int], overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with PatchGAN widths that fit the grid of ``sample_shape``, unless set."""
    if "critic_channels" not in overrides and len(sample_shape) > 1:
        overrides["critic_channels"] = [64, 128, 256][: critic_levels(sample_shape[1:])]
    return overrides


def check_field_pair(family: str, sample_shape: Sequence[int], cond_shape: Any) -> None:
    """Refuse anything but two fields ``(C, *grid)`` and ``(C', *grid)`` on one grid."""
    if cond_shape is None or len(sample_shape) not in (2, 3, 4):
        raise ValueError(
            f"{family} needs fields (C, *grid) and condition fields on the same grid; got "
            f"sample_shape {list(sample_shape)} and cond_shape {cond_shape}"
        )
    if list(cond_shape)[1:] != list(sample_shape)[1:]:
        raise ValueError(
            f"{family}: condition grid {list(cond_shape)[1:]} differs from the sample grid "
            f"{list(sample_shape)[1:]}"
        )


def check_patch_map(family: str, critic: PatchGAN, grid: Sequence[int]) -> None:
    """Refuse a critic whose patch map on ``grid`` is empty."""
    patches = critic.patches(grid)
    if min(patches) < 1:
        raise ValueError(
            f"{family}: grid {tuple(grid)} is too small for {critic.levels} critic levels "
            f"(patch map {patches}); use fewer critic_channels"
        )


@register_model("pix2pix")
class Pix2Pix(AdversarialModel):
    """Conditional GAN for paired translation of fields ``(C_c, *grid)`` → ``(C, *grid)``.

    Args:
        sample_shape: ``(C, *grid)`` of the target fields.
        cond_shape: ``(C_c, *grid)`` of the source fields (same grid).
        channels: U-Net widths per level.
        critic_channels: PatchGAN feature widths (their number sets the patch size).
        noise_channels: channels of the standard-normal noise field fed to the generator.
        periodic: circular padding in both networks (periodic grids).
        objective, lipschitz, gp_weight, n_critic, spectral_norm: the critic's training, as
            for the other adversarial families.
        l1_weight: λ₁ of the L1 term.
        physics_weight: λ_P of the physics penalty (set ``physics_penalty`` to use it).

    Example:
        >>> model = Pix2Pix([1, 16, 16], [2, 16, 16], channels=[8], critic_channels=[8, 8])
        >>> model.sample(2, torch.zeros(2, 2, 16, 16)).shape
        torch.Size([2, 1, 16, 16])
    """

    example_shape = (1, 16, 12)
    example_cond_shape = (2, 16, 12)

    def __init__(
        self,
        sample_shape: Sequence[int],
        cond_shape: Sequence[int],
        channels: Sequence[int] = (32, 64),
        critic_channels: Sequence[int] = (64, 128, 256),
        noise_channels: int = 1,
        periodic: bool = False,
        objective: str = "non_saturating",
        lipschitz: str | None = None,
        gp_weight: float = 10.0,
        n_critic: int = 1,
        spectral_norm: bool = False,
        l1_weight: float = 100.0,
        physics_weight: float = 0.0,
    ) -> None:
        check_field_pair("pix2pix", sample_shape, cond_shape)
        if noise_channels < 1 or l1_weight < 0:
            raise ValueError("pix2pix: noise_channels must be >= 1 and l1_weight >= 0")
        if lipschitz is None:
            lipschitz = "gp" if objective == "wasserstein" else "none"
        config = {
            "sample_shape": [int(s) for s in sample_shape],
            "cond_shape": [int(s) for s in cond_shape],
            "channels": [int(c) for c in channels],
            "critic_channels": [int(c) for c in critic_channels],
            "noise_channels": int(noise_channels),
            "periodic": bool(periodic),
            "objective": objective,
            "lipschitz": lipschitz,
            "gp_weight": gp_weight,
            "n_critic": n_critic,
            "spectral_norm": spectral_norm,
            "l1_weight": l1_weight,
            "physics_weight": physics_weight,
        }
        self.grid = tuple(int(n) for n in sample_shape[1:])
        self.l1_weight = float(l1_weight)
        latent = int(noise_channels) * math.prod(self.grid)
        super().__init__(objective, lipschitz, config, sample_shape, cond_shape, latent)
        check_patch_map("pix2pix", self.critic_net, self.grid)

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> Pix2Pix:
        if cond_shape is None:
            raise ValueError("pix2pix is conditional: give condition fields (--cond-fields)")
        overrides = default_critic(sample_shape, overrides)
        return cls(sample_shape=sample_shape, cond_shape=cond_shape, **overrides)

    def build_generator(self) -> nn.Module:
        cfg = self.config
        return UNet(
            len(self.grid), cfg["noise_channels"], self.sample_shape[0], cfg["channels"],
            periodic=cfg["periodic"], cond_channels=self.cond_shape[0],
        )  # fmt: skip

    def build_critic(self) -> nn.Module:
        cfg = self.config
        c = self.sample_shape[0] + self.cond_shape[0]
        return PatchGAN(len(self.grid), c, cfg["critic_channels"], periodic=cfg["periodic"])

    def generate(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        noise = z.reshape(z.shape[0], self.config["noise_channels"], *self.grid)
        t = torch.zeros(z.shape[0], device=z.device, dtype=z.dtype)  # the U-Net's time input
        return self.generator_net(noise, t, cond.to(z.dtype))

    def patch_logits(self, x: Tensor, cond: Tensor | None) -> Tensor:
        """Critic logits ``(B, patches)`` of fields ``x`` given ``cond``."""
        return self.critic_net(torch.cat([x, cond.to(x.dtype)], dim=1)).flatten(1)

    def score(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.patch_logits(x, cond).mean(1)

    def critic_terms(self, real: Tensor, fake: Tensor, cond: Tensor | None = None) -> Tensor:
        real_l, fake_l = self.patch_logits(real, cond), self.patch_logits(fake, cond)
        return critic_objective(real_l, fake_l, self.objective).mean(1)  # mean over patches

    def generator_terms(self, fake: Tensor, real: Tensor, cond: Tensor | None = None) -> Tensor:
        self.check_sample(real)
        adversarial = generator_objective(self.patch_logits(fake, cond), self.objective).mean(1)
        return adversarial + self.l1_weight * (fake - real).abs().flatten(1).mean(1)

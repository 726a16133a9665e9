"""Fully connected GANs: GAN (minimax / non-saturating), WGAN, WGAN-GP and conditional GAN."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..nn import MLP
from .adversarial import AdversarialModel
from .base import register_model

__all__ = ["GAN", "WGAN", "WGANGP", "ConditionalGAN", "MLPAdversarialModel"]

_HIDDEN = (128, 128, 128)


class MLPAdversarialModel(AdversarialModel):
    r"""Generator and critic are MLPs on flattened samples (and flattened conditioning).

    .. math:: G(z, c) = \mathrm{MLP}_G([z, c]), \qquad D(x, c) = \mathrm{MLP}_D([x, c])

    Works for vectors ``(D,)`` and, for small grids, for fields ``(C, *grid)``, which are
    flattened on the way in and reshaped on the way out.
    """

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> MLPAdversarialModel:
        return cls(sample_shape=sample_shape, cond_shape=cond_shape, **overrides)

    def build_generator(self) -> nn.Module:
        hidden = self.config.get("hidden", _HIDDEN)
        act = self.config.get("act", "relu")
        return MLP(self.latent_dim + self.cond_numel, self.sample_numel, hidden, act)

    def build_critic(self) -> nn.Module:
        hidden = self.config.get("hidden", _HIDDEN)
        act = self.config.get("critic_act", "leaky_relu")
        return MLP(self.sample_numel + self.cond_numel, 1, hidden, act)

    def _with_cond(self, h: Tensor, cond: Tensor | None) -> Tensor:
        if cond is None:
            return h
        return torch.cat([h, cond.flatten(1).to(h.dtype)], dim=1)  # (B, features + cond)

    def generate(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        out = self.generator_net(self._with_cond(z, cond))  # (B, prod(sample_shape))
        return out.reshape(z.shape[0], *self.sample_shape)

    def score(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.critic_net(self._with_cond(x.flatten(1), cond)).squeeze(-1)


def _net_config(
    sample_shape: Sequence[int],
    cond_shape: Sequence[int] | None,
    latent_dim: int,
    hidden: Sequence[int],
    act: str,
    critic_act: str,
) -> dict[str, Any]:
    """The JSON-able network settings every MLP GAN stores in its config."""
    return {
        "sample_shape": [int(s) for s in sample_shape],
        "cond_shape": None if cond_shape is None else [int(s) for s in cond_shape],
        "latent_dim": latent_dim,
        "hidden": list(hidden),
        "act": act,
        "critic_act": critic_act,
    }


@register_model("gan")
class GAN(MLPAdversarialModel):
    r"""The original GAN (Goodfellow et al. 2014) with an MLP generator and discriminator.

    ``objective="minimax"`` trains the generator on :math:`\log(1-D(G(z)))`;
    ``"non_saturating"`` (default) on :math:`-\log D(G(z))`, which keeps gradients alive when
    the discriminator wins early. ``spectral_norm=True`` gives SN-GAN (Miyato et al. 2018).

    Example:
        >>> model = GAN(sample_shape=[2], latent_dim=2, hidden=[16])
        >>> model.sample(5).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        sample_shape: Sequence[int],
        cond_shape: Sequence[int] | None = None,
        latent_dim: int = 8,
        hidden: Sequence[int] = _HIDDEN,
        act: str = "relu",
        critic_act: str = "leaky_relu",
        objective: str = "non_saturating",
        n_critic: int = 1,
        spectral_norm: bool = False,
    ) -> None:
        if objective == "wasserstein":
            raise ValueError("GAN: use WGAN or WGANGP for the Wasserstein objective")
        config = {
            **_net_config(sample_shape, cond_shape, latent_dim, hidden, act, critic_act),
            "objective": objective,
            "n_critic": n_critic,
            "spectral_norm": spectral_norm,
        }
        super().__init__(objective, "none", config, sample_shape, cond_shape, latent_dim)


@register_model("wgan")
class WGAN(MLPAdversarialModel):
    r"""Wasserstein GAN with weight clipping (Arjovsky, Chintala, Bottou 2017).

    The critic maximizes :math:`E[D(x)] - E[D(G(z))]` over weights clamped to
    ``±clip_value`` (a crude Lipschitz bound), taking ``n_critic`` steps per generator step;
    the paper trains with RMSProp, lr 5e-5.
    """

    def __init__(
        self,
        sample_shape: Sequence[int],
        cond_shape: Sequence[int] | None = None,
        latent_dim: int = 8,
        hidden: Sequence[int] = _HIDDEN,
        act: str = "relu",
        critic_act: str = "leaky_relu",
        clip_value: float = 0.01,
        n_critic: int = 5,
    ) -> None:
        config = {
            **_net_config(sample_shape, cond_shape, latent_dim, hidden, act, critic_act),
            "clip_value": clip_value,
            "n_critic": n_critic,
        }
        super().__init__("wasserstein", "clip", config, sample_shape, cond_shape, latent_dim)


@register_model("wgan-gp")
class WGANGP(MLPAdversarialModel):
    r"""WGAN with gradient penalty (Gulrajani et al. 2017).

    Critic loss per sample :math:`D(\tilde x) - D(x) + \lambda(\lVert\nabla D(\hat x)\rVert-1)^2`
    with :math:`\hat x` on the segment between the real and generated sample
    (``physgen.models.gan_losses.gradient_penalty``); the paper's defaults are
    :math:`\lambda=10`, ``n_critic=5``, Adam(1e-4, betas=(0.5, 0.9)).

    Example:
        >>> model = WGANGP(sample_shape=[2], latent_dim=2, hidden=[16])
        >>> model.discriminator_loss(torch.randn(4, 2)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        sample_shape: Sequence[int],
        cond_shape: Sequence[int] | None = None,
        latent_dim: int = 8,
        hidden: Sequence[int] = _HIDDEN,
        act: str = "relu",
        critic_act: str = "leaky_relu",
        gp_weight: float = 10.0,
        n_critic: int = 5,
        spectral_norm: bool = False,
    ) -> None:
        config = {
            **_net_config(sample_shape, cond_shape, latent_dim, hidden, act, critic_act),
            "gp_weight": gp_weight,
            "n_critic": n_critic,
            "spectral_norm": spectral_norm,
        }
        super().__init__("wasserstein", "gp", config, sample_shape, cond_shape, latent_dim)


@register_model("cgan")
class ConditionalGAN(MLPAdversarialModel):
    r"""Conditional GAN (Mirza & Osindero 2014): :math:`G(z, c)` and :math:`D(x, c)`.

    The conditioning (a vector or a small field, flattened) is concatenated to the latent and
    to the critic input. ``objective`` may be ``non_saturating`` (default), ``minimax`` or
    ``wasserstein``; ``lipschitz`` is ``gp`` by default for the Wasserstein objective and
    ``none`` otherwise.
    """

    example_cond_shape = (3,)

    def __init__(
        self,
        sample_shape: Sequence[int],
        cond_shape: Sequence[int],
        latent_dim: int = 8,
        hidden: Sequence[int] = _HIDDEN,
        act: str = "relu",
        critic_act: str = "leaky_relu",
        objective: str = "non_saturating",
        lipschitz: str | None = None,
        gp_weight: float = 10.0,
        n_critic: int = 1,
        spectral_norm: bool = False,
    ) -> None:
        if cond_shape is None:
            raise ValueError("ConditionalGAN needs cond_shape (the shape of one conditioning)")
        if lipschitz is None:
            lipschitz = "gp" if objective == "wasserstein" else "none"
        config = {
            **_net_config(sample_shape, cond_shape, latent_dim, hidden, act, critic_act),
            "objective": objective,
            "lipschitz": lipschitz,
            "gp_weight": gp_weight,
            "n_critic": n_critic,
            "spectral_norm": spectral_norm,
        }
        super().__init__(objective, lipschitz, config, sample_shape, cond_shape, latent_dim)

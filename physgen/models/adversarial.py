"""The shared two-player machinery: latent draws, critic/generator losses, Lipschitz control."""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from .base import TwoPlayerModel
from .gan_losses import (
    OBJECTIVES,
    clip_weights,
    critic_objective,
    generator_objective,
    gradient_penalty,
)

__all__ = ["LIPSCHITZ", "AdversarialModel", "apply_spectral_norm"]

LIPSCHITZ = ("none", "clip", "gp")


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    r"""Spectrally normalize every linear and convolution layer of ``module`` (Miyato et al. 2018).

    Each weight :math:`W` is replaced by :math:`W/\sigma(W)`, with the top singular value
    :math:`\sigma` tracked by one power iteration per training forward, bounding every layer's
    Lipschitz constant by 1.
    """
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
            setattr(module, name, spectral_norm(child))
        else:
            apply_spectral_norm(child)
    return module


class AdversarialModel(TwoPlayerModel):
    r"""A generator :math:`G(z, c)` and a critic :math:`D(x, c)` with a chosen objective.

    Subclasses build the two networks (``generator_net``, ``critic_net``) and implement
    ``generate(z, cond)`` and ``score(x, cond)``; this class turns them into the explicit
    two-player protocol that ``physgen.training.fit`` drives:

    * ``discriminator_loss`` — per-sample critic loss on a real batch and as many fresh
      generated samples, plus ``gp_weight`` times the per-sample gradient penalty when
      ``lipschitz="gp"``;
    * ``generator_loss`` — per-sample generator loss on fresh samples;
    * ``physics_weight`` λ > 0 with a per-sample ``physics_penalty`` P (an attribute, e.g. a
      :class:`physgen.physics.ResidualPenalty`; not part of the saved config) adds
      :math:`\lambda P(G(z, c))` to the generator loss: PI-GAN's physics term on generated
      fields (Yang, Zhang & Karniadakis 2020), for any problem;
    * ``lipschitz="clip"`` clamps the critic's weights to ``±clip_value`` before every use,
      which is the same as clipping after each critic update (Arjovsky et al. 2017, Alg. 1)
      without asking the training loop for a hook.

    Args:
        objective: one of ``OBJECTIVES`` (``minimax``, ``non_saturating``, ``wasserstein``).
        lipschitz: one of ``LIPSCHITZ`` (``none``, ``clip``, ``gp``).
        config: the concrete class's constructor arguments, stored as ``.config``; the keys
            read here, where present, are ``n_critic``, ``gp_weight``, ``clip_value``,
            ``spectral_norm`` and ``physics_weight``.
        sample_shape: shape of one sample (no batch dimension).
        cond_shape: shape of one conditioning tensor, ``None`` for unconditional models.
        latent_dim: dimension of the standard-normal latent.
    """

    def __init__(
        self,
        objective: str,
        lipschitz: str,
        config: dict[str, Any],
        sample_shape: Sequence[int],
        cond_shape: Sequence[int] | None,
        latent_dim: int,
    ) -> None:
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective={objective!r}; expected one of {', '.join(OBJECTIVES)}")
        if lipschitz not in LIPSCHITZ:
            raise ValueError(f"lipschitz={lipschitz!r}; expected one of {', '.join(LIPSCHITZ)}")
        self.objective = objective
        self.lipschitz = lipschitz
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.cond_shape = None if cond_shape is None else tuple(int(s) for s in cond_shape)
        self.latent_dim = int(latent_dim)
        self.n_critic = int(config.get("n_critic", 1))
        self.gp_weight = float(config.get("gp_weight", 10.0))
        self.clip_value = float(config.get("clip_value", 0.01))
        self.physics_weight = float(config.get("physics_weight", 0.0))
        self.physics_penalty: Callable[[Tensor], Tensor] | None = None
        for name, value, low in [
            ("latent_dim", self.latent_dim, 1),
            ("n_critic", self.n_critic, 1),
        ]:
            if value < low:
                raise ValueError(f"{type(self).__name__}: {name}={value}; expected >= {low}")
        if self.physics_weight < 0:
            raise ValueError(f"{type(self).__name__}: physics_weight must be >= 0")
        if self.gp_weight < 0 or self.clip_value <= 0:
            raise ValueError(
                f"{type(self).__name__}: gp_weight must be >= 0 and clip_value > 0; "
                f"got {self.gp_weight}, {self.clip_value}"
            )
        self.generator_net = self.build_generator()
        self.critic_net = self.build_critic()
        if config.get("spectral_norm", False):
            apply_spectral_norm(self.critic_net)

    @property
    def sample_numel(self) -> int:
        """Entries per sample (the flattened sample size)."""
        return math.prod(self.sample_shape)

    @property
    def cond_numel(self) -> int:
        """Entries per conditioning tensor (0 for unconditional models)."""
        return 0 if self.cond_shape is None else math.prod(self.cond_shape)

    @abstractmethod
    def build_generator(self) -> nn.Module:
        """The generator network (stored as ``generator_net``)."""

    @abstractmethod
    def build_critic(self) -> nn.Module:
        """The critic network (stored as ``critic_net``)."""

    @abstractmethod
    def generate(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """Map latents ``(B, latent_dim)`` to samples ``(B, *sample_shape)``."""

    @abstractmethod
    def score(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Critic logits (or Wasserstein potentials) of shape ``(B,)``."""

    def generator_parameters(self) -> Iterator[nn.Parameter]:
        return self.generator_net.parameters()

    def discriminator_parameters(self) -> Iterator[nn.Parameter]:
        return self.critic_net.parameters()

    def check_cond(self, cond: Tensor | None, batch: int) -> None:
        """Raise a clear error when ``cond`` is missing, unexpected or mis-shaped."""
        name = type(self).__name__
        if self.cond_shape is None:
            if cond is not None:
                raise ValueError(f"{name} is unconditional (cond_shape=None) but got cond")
            return
        if cond is None:
            raise ValueError(f"{name} needs cond of shape (B, *{self.cond_shape}); got None")
        if tuple(cond.shape) != (batch, *self.cond_shape):
            raise ValueError(
                f"{name}: cond has shape {tuple(cond.shape)}; "
                f"expected ({batch}, *{self.cond_shape})"
            )

    def check_sample(self, x: Tensor) -> None:
        """Raise a clear error when a data batch has the wrong per-sample shape."""
        if tuple(x.shape[1:]) != self.sample_shape:
            raise ValueError(
                f"{type(self).__name__}: x has shape {tuple(x.shape)}; "
                f"expected (B, *{self.sample_shape})"
            )

    def latent(
        self, n: int, device: torch.device, generator: torch.Generator | None = None
    ) -> Tensor:
        """Standard-normal latents ``(n, latent_dim)`` on ``device``, in the generator's dtype."""
        z_device = generator.device if generator is not None else device
        z = torch.randn(n, self.latent_dim, generator=generator, device=z_device)
        dtype = next(self.generator_net.parameters()).dtype
        return z.to(device, dtype)

    def discriminator_loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        self.check_sample(x)
        self.check_cond(cond, x.shape[0])
        if self.lipschitz == "clip":
            clip_weights(self.critic_net, self.clip_value)
        with torch.no_grad():
            fake = self.generate(self.latent(x.shape[0], x.device), cond)
        loss = self.critic_terms(x, fake, cond)
        if self.lipschitz == "gp":
            loss = loss + self.gp_weight * self.penalty(x, fake, cond)
        return loss

    def critic_terms(self, real: Tensor, fake: Tensor, cond: Tensor | None = None) -> Tensor:
        """Per-sample critic objective on a real and a generated batch (before any penalty)."""
        return critic_objective(self.score(real, cond), self.score(fake, cond), self.objective)

    def generator_terms(self, fake: Tensor, real: Tensor, cond: Tensor | None = None) -> Tensor:
        """Per-sample generator objective on generated samples (``real``: the data batch,
        paired with ``cond``; families with a reconstruction term use it)."""
        return generator_objective(self.score(fake, cond), self.objective)

    def penalty(self, real: Tensor, fake: Tensor, cond: Tensor | None = None) -> Tensor:
        """Per-sample gradient penalty of the critic (``gradient_penalty`` on ``score``)."""
        return gradient_penalty(self.score, real, fake, cond)

    def generator_loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        self.check_cond(cond, x.shape[0])
        if self.lipschitz == "clip":
            clip_weights(self.critic_net, self.clip_value)
        fake = self.generate(self.latent(x.shape[0], x.device), cond)
        loss = self.generator_terms(fake, x, cond)
        if self.physics_weight and self.physics_penalty is not None:
            loss = loss + self.physics_weight * self.physics_penalty(fake)
        return loss

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Tensor:
        r"""Draw ``n`` samples ``G(z, cond)`` with :math:`z\sim N(0, I)`.

        Args:
            n: number of samples (``cond`` must then have batch size ``n``).
            cond: conditioning ``(n, *cond_shape)`` for conditional models.
            generator: random generator for the latents.
        """
        if options:
            raise TypeError(f"{type(self).__name__}.sample: unknown options {sorted(options)}")
        self.check_cond(cond, n)
        return self.generate(self.latent(n, self.device, generator), cond)

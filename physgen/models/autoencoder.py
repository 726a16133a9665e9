"""Deterministic autoencoders: stacked (MLP) and convolutional, denoising and sparse variants."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..nn.conv import field_decoder, field_encoder
from .base import GenerativeModel, register_model

__all__ = ["Autoencoder", "sparsity_kl"]

_NOISES = ("none", "gaussian", "dropout")
_SPARSITIES = ("none", "l1", "kl")


def sparsity_kl(codes: Tensor, target: float, eps: float = 1e-6) -> Tensor:
    r"""KL sparsity penalty of Ng's sparse autoencoder, summed over code units.

    .. math:: \sum_j \rho\log\frac{\rho}{\hat\rho_j}
              + (1-\rho)\log\frac{1-\rho}{1-\hat\rho_j},
              \qquad \hat\rho_j = \frac1B\sum_i h_{ij}

    ``codes`` are activations in (0, 1) of shape ``(B, L)``; ``target`` is the rate ρ.
    Zero exactly when every unit's mean activation equals ρ.
    """
    rate = codes.mean(0).clamp(eps, 1 - eps)
    return (
        target * torch.log(target / rate) + (1 - target) * torch.log((1 - target) / (1 - rate))
    ).sum()


@register_model("ae")
class Autoencoder(GenerativeModel):
    r"""Autoencoder ``x ↦ z = E(x) ↦ D(z)`` trained on the per-sample reconstruction error.

    .. math:: \mathcal L(x) = \tfrac1D\lVert D(E(\tilde x)) - x\rVert^2 + \lambda\,\Omega(z)

    * ``arch="mlp"``: stacked fully connected encoder/decoder on flattened samples;
      ``arch="conv"``: stride-2 convolutional encoder and its mirror (1-D/2-D/3-D fields).
    * Denoising (Vincent et al. 2008): ``x̃`` is ``x`` with Gaussian noise of std
      ``noise_level`` (``noise="gaussian"``) or with each input set to zero with probability
      ``noise_level`` (``noise="dropout"``, their masking noise); only in training mode, the
      target stays clean.
    * Sparse: ``sparsity="l1"`` adds ``λ‖z‖₁``; ``sparsity="kl"`` squashes codes through a
      sigmoid and adds ``λ·KL(ρ‖ρ̂)`` toward the activation rate ``sparsity_target``
      (`sparsity_kl`, a batch statistic shared by every sample of the batch).

    An autoencoder has no prior, so ``sample`` decodes draws from a Gaussian fitted to the
    training codes (running mean and covariance kept as buffers during training).

    Example:
        >>> import torch
        >>> ae = Autoencoder((1, 16), latent_dim=3, arch="conv", channels=(4, 8))
        >>> ae.loss(torch.randn(5, 1, 16)).shape
        torch.Size([5])
    """

    example_shape = (1, 16)

    def __init__(
        self,
        sample_shape: Sequence[int],
        latent_dim: int = 8,
        arch: str = "mlp",
        hidden: Sequence[int] = (128, 128),
        channels: Sequence[int] = (32, 64),
        act: str = "silu",
        noise: str = "none",
        noise_level: float = 0.1,
        sparsity: str = "none",
        sparsity_weight: float = 1e-3,
        sparsity_target: float = 0.05,
        code_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if noise not in _NOISES:
            raise ValueError(f"noise must be one of {_NOISES}, got {noise!r}")
        if sparsity not in _SPARSITIES:
            raise ValueError(f"sparsity must be one of {_SPARSITIES}, got {sparsity!r}")
        if sparsity == "kl" and not 0 < sparsity_target < 1:
            raise ValueError(f"sparsity_target must lie in (0, 1), got {sparsity_target}")
        self.sample_shape = tuple(sample_shape)
        self.latent_dim = latent_dim
        self.noise, self.noise_level = noise, noise_level
        self.sparsity, self.sparsity_weight = sparsity, sparsity_weight
        self.sparsity_target, self.code_momentum = sparsity_target, code_momentum
        codec = {"arch": arch, "hidden": hidden, "channels": channels, "act": act}
        self.encoder = field_encoder(self.sample_shape, latent_dim, **codec)
        self.decoder = field_decoder(latent_dim, self.sample_shape, **codec)
        self.register_buffer("code_mean", torch.zeros(latent_dim))
        self.register_buffer("code_cov", torch.eye(latent_dim))

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> Autoencoder:
        if cond_shape is not None:
            raise ValueError("Autoencoder is unconditional; got a cond_shape")
        defaults: dict[str, Any] = {"arch": "conv" if len(sample_shape) >= 2 else "mlp"}
        return cls(sample_shape, **{**defaults, **overrides})

    def encode(self, x: Tensor) -> Tensor:
        """Codes ``(B, latent_dim)``; in (0, 1) when ``sparsity="kl"``."""
        z = self.encoder(x)
        return torch.sigmoid(z) if self.sparsity == "kl" else z

    def decode(self, z: Tensor) -> Tensor:
        """Reconstruction ``(B, *sample_shape)`` from codes."""
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def corrupt(self, x: Tensor) -> Tensor:
        """The denoising corruption x̃ (identity outside training or with ``noise="none"``)."""
        if not self.training or self.noise == "none":
            return x
        if self.noise == "gaussian":
            return x + self.noise_level * torch.randn_like(x)
        # Masking noise: entries are zeroed, the survivors left as they are (no 1/(1-p)
        # rescaling as in dropout), so kept inputs look exactly like clean ones.
        keep = torch.rand_like(x) >= self.noise_level
        return x * keep

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        z = self.encode(self.corrupt(x))
        recon = (self.decode(z) - x).pow(2).flatten(1).mean(1)
        if self.training:
            self._track_codes(z.detach())
        if self.sparsity == "l1":
            recon = recon + self.sparsity_weight * z.abs().sum(1)
        elif self.sparsity == "kl":
            recon = recon + self.sparsity_weight * sparsity_kl(z, self.sparsity_target)
        return recon

    @torch.no_grad()
    def _track_codes(self, z: Tensor) -> None:
        """Exponential moving average of the code mean and covariance (for ``sample``)."""
        if z.shape[0] < 2:
            return
        m = self.code_momentum
        centred = z - z.mean(0)
        cov = centred.T @ centred / (z.shape[0] - 1)
        self.code_mean.lerp_(z.mean(0), m)
        self.code_cov.lerp_(cov, m)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Tensor:
        """Decode ``n`` codes drawn from N(code_mean, code_cov)."""
        if cond is not None:
            raise ValueError("Autoencoder is unconditional; got cond")
        like = {"device": self.code_cov.device, "dtype": self.code_cov.dtype}
        chol = torch.linalg.cholesky(self.code_cov + 1e-6 * torch.eye(self.latent_dim, **like))
        eps = torch.randn(n, self.latent_dim, generator=generator, **like)
        return self.decode(self.code_mean + eps @ chol.T)

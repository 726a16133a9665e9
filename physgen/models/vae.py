"""Variational autoencoders: VAE and conditional VAE, with ELBO and importance-weighted bounds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.conv import field_decoder, field_encoder
from ..nn.mlp import MLP
from ..utils import full_precision
from .base import GenerativeModel, register_model
from .total_correlation import kl_decomposition

__all__ = ["CVAE", "VAE", "LatentGaussianModel", "gaussian_kl", "gaussian_log_prob"]

_LOG_2PI = math.log(2 * math.pi)
_DECODER_SCALES = ("global", "sample", "pixel", "spectral", "spectral_global_dc")
_SPECTRAL = ("spectral", "spectral_global_dc")
_LOG_SCALE_BOUND = 7.0  # |log s| < 7: s within e^±7 of 1 on standardized data


def gaussian_kl(
    mu: Tensor, logvar: Tensor, mu_p: Tensor | None = None, logvar_p: Tensor | None = None
) -> Tensor:
    r"""Analytic KL(N(μ, diag σ²) ‖ N(μ_p, diag σ_p²)) summed over the last dimension.

    .. math:: \tfrac12\sum_j \Bigl[\frac{\sigma_j^2 + (\mu_j-\mu_{p,j})^2}{\sigma_{p,j}^2}
              - 1 + \log\sigma_{p,j}^2 - \log\sigma_j^2\Bigr]

    With ``mu_p = logvar_p = None`` the prior is N(0, I) (Kingma & Welling 2014, App. B).
    Computed in at least float32: bf16 encoder outputs under autocast are promoted first.
    """
    mu, logvar = full_precision(mu), full_precision(logvar)
    if mu_p is None or logvar_p is None:
        return 0.5 * (logvar.exp() + mu.pow(2) - 1 - logvar).sum(-1)
    mu_p, logvar_p = full_precision(mu_p), full_precision(logvar_p)
    return 0.5 * (
        ((logvar.exp() + (mu - mu_p).pow(2)) / logvar_p.exp()) - 1 + logvar_p - logvar
    ).sum(-1)


def gaussian_log_prob(x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(x; μ, diag exp(logvar)) summed over the last dimension, in float32 or more."""
    x, mu, logvar = full_precision(x), full_precision(mu), full_precision(logvar)
    return -0.5 * (_LOG_2PI + logvar + (x - mu).pow(2) / logvar.exp()).sum(-1)


class LatentGaussianModel(GenerativeModel):
    r"""Shared machinery of the VAE family: Gaussian latent, Gaussian or Bernoulli decoder.

    Subclasses build ``self.encoder_head`` etc. through `_build` and may condition every
    piece on ``cond``. Implemented once here:

    * ELBO (Kingma & Welling 2014):
      :math:`\mathcal L = \mathbb E_{q(z|x)}[\log p(x|z)] - \mathrm{KL}(q(z|x)\,\|\,p(z))`;
      the training loss is ``-(E log p(x|z) - β·KL)`` (β-VAE, Higgins et al. 2017);
    * importance-weighted bound (Burda et al. 2016), for evaluation:
      :math:`\mathcal L_K = \mathbb E\bigl[\log\frac1K\sum_k p(x, z_k)/q(z_k|x)\bigr]`,
      with :math:`\mathcal L = \mathcal L_1 \le \mathcal L_K \le \mathcal L_{K+1} \le \log p(x)`.
    * the Gaussian decoder's scale (``decoder_scale``): one standard deviation for every sample
      (``"global"``, fixed or learned), or predicted from the code,
      :math:`p(x|z) = \mathcal N(m(z), \mathrm{diag}\,s(z)^2)` (heteroscedastic), with one
      :math:`s(z)` per sample (``"sample"``) or per value (``"pixel"``). Only a code-dependent
      scale makes a field's *size* (its amplitude, its residual after the mean) worth encoding.
      ``"spectral"`` (fields ``(C, *grid)``) predicts one scale per coefficient of the
      orthonormal DCT-II over the grid axes, :math:`p(x|z) = \mathcal N(m(z),
      C^\top\mathrm{diag}\,s(z)^2 C)`: a stationary-like Gaussian whose power spectrum comes from
      the code, so a field's roughness (its correlation length) is worth encoding too. With
      :math:`C` orthonormal, :math:`\log p(x|z) = \log\mathcal N(C(x - m); 0, \mathrm{diag}\,s^2)`.
      ``"spectral_global_dc"`` is ``"spectral"`` with the scale of each channel's constant
      coefficient (the DC term, :math:`k = 0` on every grid axis, :math:`\sqrt N` times the
      grid mean for N values) a learned constant :math:`s_0` rather than a function of z:
      :math:`s_k(z)` for :math:`k \ne 0`. A code-dependent :math:`s_0(z)` can explain a
      field's level as noise (a wide DC scale costs one coefficient's log-density, not N
      values'), so the code need not carry the level; with :math:`s_0` shared by all fields
      the level must come through the mean :math:`m(z)`, i.e. be encoded.
      :math:`\log s = 7\tanh(r/7)` of the network's output (or the parameter) :math:`r`
      keeps the likelihood bounded when a value is fit exactly.
    * the decoder's mean (``decoder_mean``): a field (``"field"``) or, for fields
      ``(C, *grid)``, one level per channel (``"constant"``): the network's output averaged
      over the grid, :math:`m(z) = a(z)\mathbf 1` with :math:`a(z) = \frac1N\sum_i
      \mathrm{net}(z)_i`. With a spectral scale the decoder is then the law of a
      statistically homogeneous field — its level and its power spectrum come from the code,
      the pattern does not: in DCT coefficients :math:`C(a\mathbf 1) = a\sqrt N\,e_0`, so
      the coefficients are independent, :math:`N(a\sqrt N, s_0^2)` for the DC term and
      :math:`N(0, s_k^2)` for the rest. It suits a translation-invariant code (a pooled
      encoder), which holds no position to place a pattern at.
    """

    sample_shape: tuple[int, ...]
    latent_dim: int
    _cond_shape: tuple[int, ...] = ()
    tc_weight: float = 0.0  # weight of the total-correlation penalty (VAE only)
    dataset_size: int = 0

    def _build(
        self,
        sample_shape: Sequence[int],
        latent_dim: int,
        arch: str,
        hidden: Sequence[int],
        channels: Sequence[int],
        act: str,
        likelihood: str,
        sigma: float | None,
        beta: float,
        cond_shape: Sequence[int] | None = None,
        cond_features: int = 0,
        prior: str = "standard",
        decoder_scale: str = "global",
        pool: str = "flatten",
        decoder_mean: str = "field",
    ) -> None:
        if decoder_mean not in ("field", "constant"):
            raise ValueError(f"decoder_mean must be 'field' or 'constant', got {decoder_mean!r}")
        if decoder_mean == "constant" and len(sample_shape) < 2:
            raise ValueError(
                "decoder_mean='constant' needs a (C, *grid) sample shape, got "
                f"{tuple(sample_shape)}"
            )
        if decoder_scale not in _DECODER_SCALES:
            raise ValueError(
                f"decoder_scale must be one of {_DECODER_SCALES}, got {decoder_scale!r}"
            )
        if decoder_scale != "global" and (likelihood != "gaussian" or sigma is not None):
            raise ValueError(
                f"decoder_scale={decoder_scale!r} predicts the Gaussian decoder's scale: it needs "
                f"likelihood='gaussian' and sigma=None, got {likelihood!r} and {sigma}"
            )
        if likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"likelihood must be 'gaussian' or 'bernoulli', got {likelihood!r}")
        if prior not in ("standard", "learned"):
            raise ValueError(f"prior must be 'standard' or 'learned', got {prior!r}")
        if sigma is not None and sigma <= 0:
            raise ValueError(f"sigma must be positive (or None to learn it), got {sigma}")
        self.sample_shape = tuple(sample_shape)
        self.latent_dim, self.likelihood, self.beta = latent_dim, likelihood, beta
        width = hidden[-1] if hidden else 64
        codec = {"arch": arch, "hidden": hidden, "channels": channels, "act": act}
        self.encoder = field_encoder(self.sample_shape, width, **codec, pool=pool)
        self.encoder_head = nn.Linear(width + cond_features, 2 * latent_dim)
        self.decoder = field_decoder(latent_dim + cond_features, self.sample_shape, **codec)
        self.cond_encoder: nn.Module | None = None
        self.prior_net: nn.Module | None = None
        if cond_shape is not None:
            cond_arch = arch if len(cond_shape) >= 2 else "mlp"
            self.cond_encoder = field_encoder(
                tuple(cond_shape), cond_features, **{**codec, "arch": cond_arch}
            )
            if prior == "learned":
                self.prior_net = MLP(cond_features, 2 * latent_dim, hidden=(width,), act=act)
        self.decoder_scale, self.decoder_mean = decoder_scale, decoder_mean
        self.scale_net: nn.Module | None = None
        if decoder_scale == "sample":
            self.scale_net = MLP(latent_dim + cond_features, 1, hidden=(width,), act=act)
        elif decoder_scale in ("pixel", *_SPECTRAL):
            if decoder_scale in _SPECTRAL and len(self.sample_shape) < 2:
                raise ValueError(
                    f"decoder_scale={decoder_scale!r} needs a (C, *grid) sample shape, got "
                    f"{self.sample_shape}"
                )
            self.scale_net = field_decoder(latent_dim + cond_features, self.sample_shape, **codec)
        # raw log scale r of each channel's DC coefficient (log s₀ = 7 tanh(r/7)), shared by all z
        self.dc_log_scale: nn.Parameter | None = None
        if decoder_scale == "spectral_global_dc":
            self.dc_log_scale = nn.Parameter(torch.zeros(self.sample_shape[0]))
        if likelihood == "gaussian" and sigma is None and self.scale_net is None:
            self.log_sigma: nn.Parameter | None = nn.Parameter(torch.zeros(()))
        else:
            self.log_sigma = None
        self._fixed_log_sigma = math.log(sigma) if sigma is not None else 0.0

    # -- the three distributions -------------------------------------------------------------

    def _features(self, cond: Tensor | None, n: int) -> Tensor | None:
        """Conditioning features ``(n, F)`` (``None`` for unconditional models)."""
        if self.cond_encoder is None:
            if cond is not None:
                raise ValueError(f"{type(self).__name__} is unconditional; got cond")
            return None
        if cond is None:
            raise ValueError(f"{type(self).__name__} needs cond")
        return self.cond_encoder(cond)

    def encode(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Posterior q(z | x[, cond]) as ``(mu, logvar)``, each ``(B, latent_dim)``."""
        return self._posterior(x, self._features(cond, x.shape[0]))

    def prior(self, cond: Tensor | None, n: int) -> tuple[Tensor, Tensor]:
        """Prior p(z[ | cond]) as ``(mu, logvar)`` of shape ``(n, latent_dim)``."""
        return self._prior(self._features(cond, n), n)

    def decoder_output(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """Decoder mean (Gaussian) or logits (Bernoulli), ``(B, *sample_shape)``."""
        return self._decoder_output(z, self._features(cond, z.shape[0]))

    # The three networks from the conditioning features ``c`` (``_features``), so that one
    # loss embeds its condition once and shares the features among them.

    def _posterior(self, x: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        if c is not None:
            h = torch.cat([h, c], dim=1)
        mu, logvar = self.encoder_head(h).chunk(2, dim=1)
        return mu, logvar

    def _prior(self, c: Tensor | None, n: int) -> tuple[Tensor, Tensor]:
        if self.prior_net is not None and c is not None:
            mu, logvar = self.prior_net(c).chunk(2, dim=1)
            return mu, logvar
        w = self.encoder_head.weight
        zeros = torch.zeros(n, self.latent_dim, device=w.device, dtype=w.dtype)
        return zeros, zeros

    def _decoder_output(self, z: Tensor, c: Tensor | None) -> Tensor:
        out = self.decoder(z if c is None else torch.cat([z, c], dim=1))
        if self.decoder_mean == "constant":  # each channel's level, the same at every point
            grid = tuple(range(2, out.ndim))
            out = out.mean(grid, keepdim=True).expand_as(out)
        return out

    def _decoder_logvar(self, z: Tensor, c: Tensor | None) -> Tensor:
        """Log variance of the Gaussian p(x | z), ``(B, D)`` with D values per sample."""
        d = math.prod(self.sample_shape)
        if self.scale_net is None:
            log_sigma = self.log_sigma if self.log_sigma is not None else self._fixed_log_sigma
            # the parameters' dtype, not z's: under autocast z may be bf16
            dtype = self.encoder_head.weight.dtype
            logvar = torch.as_tensor(2 * log_sigma, device=z.device, dtype=dtype)
            return logvar.expand(z.shape[0], d)
        raw = full_precision(self.scale_net(z if c is None else torch.cat([z, c], dim=1)))
        raw = raw.flatten(1)
        if self.dc_log_scale is not None:  # channel-major: each channel's DC term comes first
            per_channel = raw.reshape(raw.shape[0], self.sample_shape[0], -1)
            dc = self.dc_log_scale.to(raw.dtype)[None, :, None].expand(raw.shape[0], -1, 1)
            raw = torch.cat([dc, per_channel[:, :, 1:]], dim=2).flatten(1)
        return (2 * _LOG_SCALE_BOUND * torch.tanh(raw / _LOG_SCALE_BOUND)).expand(-1, d)

    def decode_std(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        r"""Pointwise standard deviation of the Gaussian p(x | z[, cond]), ``(B, *sample_shape)``.

        For the spectral scales this is :math:`\sqrt{\sum_k C_{ki}^2 s_k^2}` at each
        value i, the diagonal of :math:`C^\top\mathrm{diag}\,s^2 C`.
        """
        if self.likelihood != "gaussian":
            raise ValueError(f"decode_std needs likelihood='gaussian', got {self.likelihood!r}")
        logvar = self._decoder_logvar(z, self._features(cond, z.shape[0]))
        var = logvar.exp().reshape(z.shape[0], *self.sample_shape)
        if self.decoder_scale in _SPECTRAL:
            var = _dct(var, len(self.sample_shape) - 1, inverse=True, squared=True)
        return var.sqrt()

    def decode(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """Mean of p(x | z[, cond]): the Gaussian mean or the Bernoulli probabilities."""
        out = self.decoder_output(z, cond)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def log_likelihood(self, x: Tensor, out: Tensor, logvar: Tensor | None = None) -> Tensor:
        """log p(x | z) per sample from the decoder output ``out`` (and, for a Gaussian,
        its log variance ``(B, D)`` from `_decoder_logvar`; needed when the scale is predicted)."""
        if self.likelihood == "bernoulli":
            # Outside [0, 1] the cross-entropy is no log-likelihood (and unbounded below).
            if bool(((x < 0) | (x > 1)).any()):
                raise ValueError(
                    f"{type(self).__name__} with likelihood='bernoulli' needs data in [0, 1]; "
                    f"got values in [{x.min().item():.4g}, {x.max().item():.4g}] (use "
                    "likelihood='gaussian' for standardized data)"
                )
            return -F.binary_cross_entropy_with_logits(out, x, reduction="none").flatten(1).sum(1)
        if logvar is None:
            if self.scale_net is not None:
                raise ValueError(
                    f"decoder_scale={self.decoder_scale!r}: log_likelihood needs the logvar"
                )
            logvar = self._decoder_logvar(out.flatten(1), None)
        if self.decoder_scale in _SPECTRAL:  # the residual's coefficients, independent
            residual = _dct(x - out, len(self.sample_shape) - 1).flatten(1)
            return gaussian_log_prob(residual, torch.zeros_like(residual), logvar)
        return gaussian_log_prob(x.flatten(1), out.flatten(1), logvar)

    # -- bounds and protocol -----------------------------------------------------------------

    def _terms(self, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """(log p(x|z) at one reparameterized draw z ~ q(z|x), analytic KL, decoder output)."""
        c = self._features(cond, x.shape[0])  # the condition's embedding, once per loss
        mu, logvar = self._posterior(x, c)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        mu_p, logvar_p = self._prior(c, x.shape[0])
        kl = gaussian_kl(mu, logvar, mu_p, logvar_p)
        out = self._decoder_output(z, c)
        return self.log_likelihood(x, out, self._scale(z, c)), kl, out

    def _scale(self, z: Tensor, c: Tensor | None) -> Tensor | None:
        """The decoder's log variance where the likelihood is Gaussian, else ``None``."""
        return self._decoder_logvar(z, c) if self.likelihood == "gaussian" else None

    def elbo(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Evidence lower bound per sample (β = 1, one reparameterized draw), shape ``(B,)``."""
        rec, kl, _ = self._terms(x, cond)
        return rec - kl

    def iwae(self, x: Tensor, cond: Tensor | None = None, k: int = 64) -> Tensor:
        r"""Importance-weighted bound :math:`\mathcal L_K` per sample, shape ``(B,)``."""
        b = x.shape[0]
        c = self._features(cond, b)
        mu, logvar = self._posterior(x, c)
        mu_p, logvar_p = self._prior(c, b)
        z = mu + (0.5 * logvar).exp() * torch.randn(k, *mu.shape, device=mu.device, dtype=mu.dtype)
        z = z.reshape(k * b, -1)  # (K*B, L), sample-major over K
        rep = lambda t: t.repeat(k, *([1] * (t.ndim - 1)))  # noqa: E731
        c_k = None if c is None else rep(c)
        log_px = self.log_likelihood(rep(x), self._decoder_output(z, c_k), self._scale(z, c_k))
        log_w = (
            log_px
            + gaussian_log_prob(z, rep(mu_p), rep(logvar_p))
            - gaussian_log_prob(z, rep(mu), rep(logvar))
        ).reshape(k, b)
        return torch.logsumexp(log_w, dim=0) - math.log(k)

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if not self.tc_weight:
            rec, kl, _ = self._terms(x, cond)
            return -(rec - self.beta * kl)
        # β-TCVAE: the same draw z enters the reconstruction and the batch's TC estimate.
        mu, logvar = self._posterior(x, None)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        rec = self.log_likelihood(x, self._decoder_output(z, None), self._scale(z, None))
        tc = kl_decomposition(z, mu, logvar, self.dataset_size).total_correlation
        return -(rec - self.beta * gaussian_kl(mu, logvar)) + self.tc_weight * tc

    def _expand_cond(self, cond: Tensor | None, n: int) -> Tensor | None:
        if cond is None or self.cond_encoder is None:
            return cond
        if cond.shape[0] == n and cond.ndim > len(self._cond_shape):
            return cond
        if tuple(cond.shape) == self._cond_shape:
            return cond.expand(n, *cond.shape)
        raise ValueError(
            f"cond must have shape (n={n}, *{self._cond_shape}) or {self._cond_shape}, "
            f"got {tuple(cond.shape)}"
        )

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        mean: bool = True,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Tensor:
        """Draw z from the prior and decode; ``mean=False`` also draws the observation noise."""
        c = self._features(self._expand_cond(cond, n), n)
        mu_p, logvar_p = self._prior(c, n)
        z = mu_p + (0.5 * logvar_p).exp() * _normal_like(mu_p, generator)
        out = self._decoder_output(z, c)
        if self.likelihood == "bernoulli":
            p = torch.sigmoid(out)
            return p if mean else torch.bernoulli(p, generator=generator)
        if mean:
            return out
        return out + self._noise(z, c, _normal_like(out, generator))

    def _noise(self, z: Tensor, c: Tensor | None, eps: Tensor) -> Tensor:
        """Observation noise of p(x | z) from standard-normal ``eps`` ``(B, *sample_shape)``."""
        noise = (0.5 * self._decoder_logvar(z, c)).exp().reshape(eps.shape) * eps
        if self.decoder_scale in _SPECTRAL:
            noise = _dct(noise, len(self.sample_shape) - 1, inverse=True)
        return noise

    def decode_draw(self, z: Tensor, eps: Tensor, cond: Tensor | None = None) -> Tensor:
        r"""A draw of the Gaussian p(x | z[, cond]) from given standard-normal ``eps``:
        :math:`m(z) + s(z)\,\varepsilon` (``"spectral"``: :math:`m + C^\top(s\odot\varepsilon)`).

        One ``eps`` shared by several codes shows what the code does to the noise (its size,
        its roughness), which the mean `decode` cannot show.
        """
        if self.likelihood != "gaussian":
            raise ValueError(f"decode_draw needs likelihood='gaussian', got {self.likelihood!r}")
        c = self._features(cond, z.shape[0])
        return self._decoder_output(z, c) + self._noise(
            z, c, eps.expand(z.shape[0], *eps.shape[1:])
        )


def _dct_matrix(n: int, like: Tensor) -> Tensor:
    r"""Orthonormal DCT-II matrix :math:`C_{ki} = \sqrt{2/n}\,c_k\cos(\pi k(2i+1)/2n)`,
    :math:`c_0 = 1/\sqrt2`, else 1 (Ahmed, Natarajan & Rao 1974); :math:`CC^\top = I`."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    c = math.sqrt(2.0 / n) * torch.cos(math.pi * k * (2 * i + 1) / (2 * n))
    c[0] /= math.sqrt(2.0)
    return c.to(device=like.device, dtype=like.dtype)


def _dct(x: Tensor, axes: int, *, inverse: bool = False, squared: bool = False) -> Tensor:
    """The orthonormal DCT-II (or its inverse, the transpose) over the last ``axes`` axes of
    ``x``; ``squared`` applies the elementwise-squared matrices (maps variances to variances)."""
    for axis in range(x.ndim - axes, x.ndim):
        c = _dct_matrix(x.shape[axis], x)
        c = c.square() if squared else c
        x = torch.movedim(torch.movedim(x, axis, -1) @ (c if inverse else c.T), -1, axis)
    return x


def _normal_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal draws of ``x``'s shape, device and dtype, from ``generator``."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _default_arch(shape: Sequence[int]) -> str:
    return "conv" if len(shape) >= 2 else "mlp"


@register_model("vae")
class VAE(LatentGaussianModel):
    """Variational autoencoder for vectors (``arch="mlp"``) or fields (``arch="conv"``).

    ``likelihood="gaussian"`` with observation std ``sigma`` (``None``: learned) or
    ``"bernoulli"`` for data in [0, 1]; ``beta`` weights the KL term in the training loss.
    ``decoder_scale="sample"``, ``"pixel"`` or ``"spectral"`` predicts the Gaussian's
    standard deviation from the code instead, ``"spectral_global_dc"`` all but the scale of
    each channel's constant DC coefficient, which is learned once (see
    `LatentGaussianModel`). ``decoder_mean="constant"`` makes the decoder's mean one level
    per channel (the law of a homogeneous field, with a spectral scale). ``tc_weight`` λ
    adds λ times the batch's total-correlation estimate to the loss, with ``dataset_size``
    the training set's size (`physgen.models.total_correlation`): ``beta=1,
    tc_weight=β-1`` is the β-TCVAE of Chen et al. 2018. ``elbo`` and ``iwae`` give the
    bounds for evaluation. ``pool="mean"`` or ``"moments"`` (with ``arch="conv"``) pools the
    encoder's last feature map over the grid (its mean, or its mean and standard deviation;
    `physgen.nn.ConvEncoder`), so the code sees how much of each local feature a field has,
    not where.

    Example:
        >>> import torch
        >>> vae = VAE((6,), latent_dim=2, hidden=(16,))
        >>> vae.loss(torch.randn(4, 6)).shape, vae.sample(3).shape
        (torch.Size([4]), torch.Size([3, 6]))
    """

    example_shape = (8,)

    def __init__(
        self,
        sample_shape: Sequence[int],
        latent_dim: int = 8,
        arch: str = "mlp",
        hidden: Sequence[int] = (128, 128),
        channels: Sequence[int] = (32, 64),
        act: str = "silu",
        likelihood: str = "gaussian",
        sigma: float | None = None,
        beta: float = 1.0,
        decoder_scale: str = "global",
        tc_weight: float = 0.0,
        dataset_size: int | None = None,
        pool: str = "flatten",
        decoder_mean: str = "field",
    ) -> None:
        super().__init__()
        if tc_weight and (dataset_size is None or dataset_size < 2):
            raise ValueError(
                f"tc_weight={tc_weight} needs dataset_size (the training set's size), got "
                f"{dataset_size}"
            )
        self.tc_weight, self.dataset_size = tc_weight, dataset_size or 0
        self._build(
            sample_shape, latent_dim, arch, hidden, channels, act, likelihood, sigma, beta,
            decoder_scale=decoder_scale, pool=pool, decoder_mean=decoder_mean,
        )  # fmt: skip

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> VAE:
        if cond_shape is not None:
            raise ValueError("VAE is unconditional; use 'cvae' for conditional data")
        return cls(sample_shape, **{"arch": _default_arch(sample_shape), **overrides})


@register_model("cvae")
class CVAE(LatentGaussianModel):
    r"""Conditional VAE (Sohn, Lee & Yan 2015) for inverse problems.

    Notation of the protocol: ``x`` is the target (the paper's y) and ``cond`` the observation
    (the paper's x). Recognition q(z | x, cond), generation p(x | z, cond), and prior
    p(z | cond) (``prior="learned"``) or N(0, I) (``prior="standard"``):

    .. math:: \log p(x|c) \ge \mathbb E_{q(z|x,c)}[\log p(x|z,c)]
              - \mathrm{KL}(q(z|x,c)\,\|\,p(z|c))

    ``cond`` may be a vector or a field; it is embedded by its own encoder into
    ``cond_features`` numbers shared by the three networks.

    Example:
        >>> import torch
        >>> cvae = CVAE((6,), (3,), latent_dim=2, hidden=(16,))
        >>> cvae.sample(4, cond=torch.zeros(3)).shape
        torch.Size([4, 6])
    """

    example_shape = (1, 16)
    example_cond_shape = (4,)

    def __init__(
        self,
        sample_shape: Sequence[int],
        cond_shape: Sequence[int],
        latent_dim: int = 8,
        arch: str = "mlp",
        hidden: Sequence[int] = (128, 128),
        channels: Sequence[int] = (32, 64),
        act: str = "silu",
        likelihood: str = "gaussian",
        sigma: float | None = None,
        beta: float = 1.0,
        cond_features: int = 32,
        prior: str = "learned",
    ) -> None:
        super().__init__()
        self._cond_shape = tuple(cond_shape)
        self._build(
            sample_shape,
            latent_dim,
            arch,
            hidden,
            channels,
            act,
            likelihood,
            sigma,
            beta,
            cond_shape=cond_shape,
            cond_features=cond_features,
            prior=prior,
        )

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> CVAE:
        if cond_shape is None:
            raise ValueError("CVAE needs a cond_shape (the observation's shape)")
        return cls(sample_shape, cond_shape, **{"arch": _default_arch(sample_shape), **overrides})

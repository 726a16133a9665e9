"""Physics-informed VAEs: Zhu et al. (2025) on fields and Zhong & Meidani (2023) for SDEs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..nn.mlp import MLP
from ..physics import PhysicsLoss, latin_hypercube_normal
from .base import GenerativeModel, register_model
from .vae import LatentGaussianModel

__all__ = ["PIVAE", "SDEPIVAE", "mmd_rows", "synthetic_latents"]


def synthetic_latents(n: int, dim: int, method: str = "lhs", seed: int = 0) -> Tensor:
    """The synthetic latent set Z_syn of Zhu et al. (2025), ``(n, dim)``.

    ``"lhs"``: Latin-hypercube sample of N(0, I) (their Algorithm 1, a space-filling cover of
    the prior); ``"normal"``: i.i.d. N(0, I) draws (the ablation).
    """
    g = torch.Generator().manual_seed(seed)
    if method == "lhs":
        return latin_hypercube_normal(n, dim, generator=g)
    if method == "normal":
        return torch.randn(n, dim, generator=g)
    raise ValueError(f"syn_sampling must be 'lhs' or 'normal', got {method!r}")


def mmd_rows(
    source: Tensor, target: Tensor, kernel_mul: float = 2.0, kernel_num: int = 5
) -> Tensor:
    r"""Squared MMD between two batches, split into per-row contributions ``(B,)``.

    .. math:: \mathrm{MMD}^2 = \frac1{B^2}\sum_{ij} k(x_i,x_j) + k(y_i,y_j)
              - k(x_i,y_j) - k(y_i,x_j)

    with a mixture of ``kernel_num`` Gaussian kernels whose bandwidths are the mean pairwise
    squared distance times ``kernel_mul**(i - kernel_num//2)`` (the estimator of Zhong &
    Meidani's code). Row i holds the i-th summand over j, so ``rows.mean()`` is the biased
    (V-statistic) MMD² and ``fit`` can treat it as a per-sample loss.
    """
    if source.shape != target.shape:
        raise ValueError(f"mmd: batches must match, got {source.shape} and {target.shape}")
    b = source.shape[0]
    total = torch.cat([source.flatten(1), target.flatten(1)])  # (2B, D)
    d2 = torch.cdist(total, total).pow(2)
    n = 2 * b
    base = d2.detach().sum() / (n * n - n) / kernel_mul ** (kernel_num // 2)
    if kernel_mul == 2.0:
        # Bandwidths double, so each kernel is the square of the next wider one: one exp only.
        k_i = torch.exp(-d2 / (base * 2.0 ** (kernel_num - 1)))
        kernel = k_i
        for _ in range(kernel_num - 1):
            k_i = k_i * k_i
            kernel = kernel + k_i
    else:
        kernel = sum(torch.exp(-d2 / (base * kernel_mul**i)) for i in range(kernel_num))
    xx, yy = kernel[:b, :b], kernel[b:, b:]
    xy, yx = kernel[:b, b:], kernel[b:, :b]
    return (xx + yy - xy - yx).mean(1)


# --------------------------------------------------------------------------------------------
# Zhu et al. 2025: VAE + physics on reconstructions and on decodings of a synthetic latent set
# --------------------------------------------------------------------------------------------


@register_model("pivae")
class PIVAE(LatentGaussianModel):
    r"""Physics-informed VAE of Zhu, Ren, Weng & Si (Energies 18, 4742, 2025).

    .. math:: L = L_{VAE}(x) + \alpha_1 L_{phy}\bigl(D(E(x))\bigr)
              + \alpha_2 L_{phy}\bigl(D(z_{syn})\bigr)

    ``L_VAE`` is the negative β-ELBO of `LatentGaussianModel`; ``L_phy`` is the per-sample
    `physgen.physics.PhysicsLoss` of the Problem ``problem`` (its discrete PDE residual,
    relative to its scale, plus its constraint violations) on decoded fields de-normalised
    with ``channel_mean``/``channel_std``; ``z_syn`` is a mini-batch (as large as the data
    batch) from a fixed synthetic set of ``n_syn`` latents (`synthetic_latents`, their
    Algorithm 1). Two-stage schedule (their Algorithm 2): the first ``pretrain_steps``
    training steps use ``L_VAE`` only, then the physics terms switch on. The step count is a
    buffer, so it survives checkpoints.

    Samples are fields ``(n, C, *grid)`` in the normalised units of the data.

    Args:
        sample_shape: ``(C, *grid)``, equal to ``problem.sample_shape()``.
        problem: a problem name (``problems/<name>.py``) or path; ``problem_params`` its
            parameters.
        channel_mean, channel_std: per-channel de-normalisation (physical = x·std + mean).
        alpha1, alpha2: weights of the physics terms on reconstructions and on Z_syn.
    """

    example_shape = (3, 17)

    def __init__(
        self,
        sample_shape: Sequence[int],
        problem: str,
        problem_params: dict[str, Any] | None = None,
        channel_mean: Sequence[float] | None = None,
        channel_std: Sequence[float] | None = None,
        latent_dim: int = 8,
        arch: str = "mlp",
        hidden: Sequence[int] = (128, 128),
        channels: Sequence[int] = (32, 64),
        act: str = "silu",
        sigma: float | None = None,
        beta: float = 1.0,
        alpha1: float = 1.0,
        alpha2: float = 1.0,
        n_syn: int = 1000,
        syn_sampling: str = "lhs",
        syn_seed: int = 0,
        pretrain_steps: int = 0,
    ) -> None:
        from physgen.problem import load  # deferred: problems live outside the package

        c = sample_shape[0]
        mean = list(channel_mean) if channel_mean is not None else [0.0] * c
        std = list(channel_std) if channel_std is not None else [1.0] * c
        super().__init__(
            sample_shape=list(sample_shape),
            problem=problem,
            problem_params=dict(problem_params or {}),
            channel_mean=mean,
            channel_std=std,
            latent_dim=latent_dim,
            arch=arch,
            hidden=list(hidden),
            channels=list(channels),
            act=act,
            sigma=sigma,
            beta=beta,
            alpha1=alpha1,
            alpha2=alpha2,
            n_syn=n_syn,
            syn_sampling=syn_sampling,
            syn_seed=syn_seed,
            pretrain_steps=pretrain_steps,
        )
        self.problem = load(problem, **(problem_params or {}))
        expected = tuple(self.problem.sample_shape())
        if tuple(sample_shape) != expected:
            raise ValueError(
                f"PIVAE: sample_shape {tuple(sample_shape)} does not match problem "
                f"{problem!r}, whose fields {list(self.problem.field_names)} have shape {expected}"
            )
        if len(mean) != c or len(std) != c:
            raise ValueError(f"PIVAE: channel_mean/channel_std need {c} entries (one per field)")
        self._build(sample_shape, latent_dim, arch, hidden, channels, act, "gaussian", sigma, beta)
        self.physics = PhysicsLoss(self.problem)
        self.alpha1, self.alpha2, self.pretrain_steps = alpha1, alpha2, pretrain_steps
        self.register_buffer("channel_mean", torch.tensor(mean))
        self.register_buffer("channel_std", torch.tensor(std))
        self.register_buffer("z_syn", synthetic_latents(n_syn, latent_dim, syn_sampling, syn_seed))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> PIVAE:
        if cond_shape is not None:
            raise ValueError("PIVAE is unconditional")
        if "problem" not in overrides:
            # The stochastic elliptic problem on a grid of the sample's length.
            overrides = {"problem": "sde1d", "problem_params": {"n": sample_shape[-1]}, **overrides}
        defaults = {"arch": "conv" if len(sample_shape) >= 2 else "mlp", "n_syn": 256}
        return cls(sample_shape, **{**defaults, **overrides})

    def physical(self, x: Tensor) -> Tensor:
        """Normalised fields → physical units (per-channel affine map)."""
        shape = (1, -1, *([1] * (x.ndim - 2)))
        return x * self.channel_std.reshape(shape) + self.channel_mean.reshape(shape)

    def physics_loss(self, x: Tensor) -> Tensor:
        """Per-sample physical inconsistency L_phy of normalised fields ``x``."""
        return self.physics(self.physical(x))

    @property
    def physics_active(self) -> bool:
        """Whether the two-stage schedule has reached the physics stage."""
        return int(self.steps) >= self.pretrain_steps

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        rec, kl, out = self._terms(x, cond)
        total = -(rec - self.beta * kl)
        active = self.physics_active
        if self.training:
            self.steps += 1
        if active:
            if self.alpha1:
                total = total + self.alpha1 * self.physics_loss(out)
            if self.alpha2:
                idx = torch.randint(len(self.z_syn), (x.shape[0],), device=self.z_syn.device)
                synthetic = self.decoder_output(self.z_syn[idx])
                total = total + self.alpha2 * self.physics_loss(synthetic)
        return total


# --------------------------------------------------------------------------------------------
# Zhong & Meidani 2023: sensor encoder, coordinate decoders, f by autograd, MMD losses
# --------------------------------------------------------------------------------------------


class _CoordinateMLP(nn.Module):
    """(x, z) → scalar: Linear, tanh, ``depth`` × (Linear, tanh), Linear (Zhong's decoder)."""

    def __init__(self, latent_dim: int, width: int, depth: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim + 1, width),
            nn.Tanh(),
            *[m for _ in range(depth) for m in (nn.Linear(width, width), nn.Tanh())],
            nn.Linear(width, 1),
        )

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        """``x`` ``(B, P)`` coordinates, ``z`` ``(B, L)`` → values ``(B, P)``."""
        b, p = x.shape
        zp = z[:, None, :].expand(b, p, z.shape[1])  # (B, P, L)
        return self.net(torch.cat([x[..., None], zp], dim=-1)).squeeze(-1)


class _ChebyshevDecoder(nn.Module):
    r"""(x, z) → :math:`\sum_{j\le n} c_j(z)\,T_j(\hat x)`, coefficients from an MLP of z.

    ``x`` is mapped affinely from ``domain`` to [−1, 1]. A smooth, coordinate-conditioned
    decoder whose cost does not grow with the network width per point.
    """

    def __init__(
        self,
        latent_dim: int,
        width: int,
        depth: int,
        degree: int,
        domain: Sequence[float],
        decay: float = 2.0,
    ) -> None:
        super().__init__()
        self.degree = degree
        self.lo, self.hi = float(domain[0]), float(domain[1])
        self.coef = MLP(latent_dim, degree + 1, hidden=(width,) * depth, act="tanh")
        # |T_j''| grows like j^4 at the ends; damping mode j by (1 + j)^-decay starts the
        # decoder at smooth fields, so f̂ = -c(k u')' is O(1) instead of swamping the MMD.
        self.register_buffer("damping", (1.0 + torch.arange(degree + 1.0)).pow(-decay))

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        t = (2 * x - (self.lo + self.hi)) / (self.hi - self.lo)
        basis = [torch.ones_like(t), t]
        for _ in range(self.degree - 1):
            basis.append(2 * t * basis[-1] - basis[-2])
        phi = torch.stack(basis[: self.degree + 1], dim=-1)  # (B, P, degree + 1)
        return torch.einsum("bpj,bj->bp", phi, self.coef(z) * self.damping)


def _grad(y: Tensor, x: Tensor) -> Tensor:
    """Pointwise dy/dx for y[b, p] depending only on x[b, p] (graph kept for training)."""
    return torch.autograd.grad(y.sum(), x, create_graph=True)[0]


@register_model("pivae-sde")
class SDEPIVAE(GenerativeModel):
    r"""PI-VAE for stochastic differential equations (Zhong & Meidani, CMAME 403, 2023).

    Data are sensor readings of u, k and f for the elliptic problem

    .. math:: -c\,\frac{d}{dx}\Bigl(k(x)\frac{du}{dx}\Bigr) = f(x),

    concatenated as ``x = [u(x_u), k(x_k), f(x_f)]`` (``c = diffusion_scale``, 1/10 in the
    paper). An encoder maps x to z; two coordinate-conditioned decoders give u(x, z) and
    k(x, z) anywhere; f is never decoded but computed by automatic differentiation through the
    operator, :math:`\hat f = -c(k_x u_x + k u_{xx})`. Training matches distributions by MMD:

    .. math:: L = \mathrm{MMD}^2\bigl([\hat u, \hat k, \hat f](z),\, x\bigr)
              + \mathrm{MMD}^2\bigl(z,\, \varepsilon\bigr), \quad \varepsilon\sim N(0, I)

    Options beyond the paper, each off at the paper's defaults:

    * ``decoder="chebyshev"``: u and k as Chebyshev series of degree ``degree`` with
      coefficients from an MLP of z (smooth by construction, far cheaper derivatives);
    * ``k_transform="exp"``: decode log k, so k > 0 (the operator stays elliptic);
    * ``sensor_scale``: divide each sensor value by this scale inside the MMD (e.g. the data's
      per-sensor std), so the 21 weakly varying f readings, which carry the physics, weigh as
      much as the k readings;
    * ``encoder_logvar="linear"``: an unconstrained log-variance. The paper's sigmoid keeps
      log σ² in (0, 1), so training latents are wider than the N(0, I) draws used to sample,
      which shrinks the spread of generated fields;
    * Zhu et al.'s physics terms: ``alpha1`` × the Dirichlet boundary penalty
      :math:`\tfrac12(u(a)-g_a)^2 + \tfrac12(u(b)-g_b)^2` on reconstructions and ``alpha2`` ×
      the same on decodings of a fixed synthetic latent set (``syn_sampling``), switched on
      after ``pretrain_steps`` steps.

    ``sample(n)`` returns sensor vectors like the data; `decode_fields` evaluates u, k and
    f̂ on any coordinates.
    """

    example_shape = (2 + 5 + 4,)

    def __init__(
        self,
        u_sensors: Sequence[float],
        k_sensors: Sequence[float],
        f_sensors: Sequence[float],
        latent_dim: int = 4,
        width: int = 128,
        depth: int = 3,
        decoder: str = "mlp",
        degree: int = 24,
        spectral_decay: float = 2.0,
        k_transform: str = "identity",
        encoder_logvar: str = "sigmoid",
        sensor_scale: Sequence[float] | None = None,
        diffusion_scale: float = 0.1,
        domain: Sequence[float] = (-1.0, 1.0),
        boundary_values: Sequence[float] = (0.0, 0.0),
        kernel_mul: float = 2.0,
        kernel_num: int = 5,
        alpha1: float = 0.0,
        alpha2: float = 0.0,
        n_syn: int = 1000,
        syn_sampling: str = "lhs",
        syn_seed: int = 0,
        pretrain_steps: int = 0,
    ) -> None:
        super().__init__(
            u_sensors=[float(v) for v in u_sensors],
            k_sensors=[float(v) for v in k_sensors],
            f_sensors=[float(v) for v in f_sensors],
            latent_dim=latent_dim,
            width=width,
            depth=depth,
            decoder=decoder,
            degree=degree,
            spectral_decay=spectral_decay,
            k_transform=k_transform,
            encoder_logvar=encoder_logvar,
            sensor_scale=None if sensor_scale is None else [float(v) for v in sensor_scale],
            diffusion_scale=diffusion_scale,
            domain=list(domain),
            boundary_values=list(boundary_values),
            kernel_mul=kernel_mul,
            kernel_num=kernel_num,
            alpha1=alpha1,
            alpha2=alpha2,
            n_syn=n_syn,
            syn_sampling=syn_sampling,
            syn_seed=syn_seed,
            pretrain_steps=pretrain_steps,
        )
        if k_transform not in ("identity", "exp"):
            raise ValueError(f"k_transform must be 'identity' or 'exp', got {k_transform!r}")
        self.n_u, self.n_k, self.n_f = len(u_sensors), len(k_sensors), len(f_sensors)
        if min(self.n_u, self.n_k, self.n_f) < 1:
            raise ValueError("SDEPIVAE needs at least one sensor of each of u, k and f")
        self.latent_dim, self.k_transform = latent_dim, k_transform
        self.c = diffusion_scale
        self.kernel_mul, self.kernel_num = kernel_mul, kernel_num
        self.alpha1, self.alpha2, self.pretrain_steps = alpha1, alpha2, pretrain_steps
        self.domain = (float(domain[0]), float(domain[1]))
        self.boundary_values = (float(boundary_values[0]), float(boundary_values[1]))
        d = self.n_u + self.n_k + self.n_f
        # As in the paper's code: linear layer, tanh blocks, tanh mean, sigmoid log-variance.
        blocks = [m for _ in range(depth) for m in (nn.Linear(width, width), nn.Tanh())]
        self.encoder = nn.Sequential(nn.Linear(d, width), *blocks)
        self.encoder_mu = nn.Sequential(nn.Linear(width, latent_dim), nn.Tanh())
        if encoder_logvar not in ("sigmoid", "linear"):
            raise ValueError(
                f"encoder_logvar must be 'sigmoid' or 'linear', got {encoder_logvar!r}"
            )
        head = nn.Linear(width, latent_dim)
        self.encoder_logvar = (
            nn.Sequential(head, nn.Sigmoid()) if encoder_logvar == "sigmoid" else head
        )
        if decoder == "mlp":
            self.u_decoder: nn.Module = _CoordinateMLP(latent_dim, width, depth)
            self.k_decoder: nn.Module = _CoordinateMLP(latent_dim, width, depth)
        elif decoder == "chebyshev":
            cheb = (latent_dim, width, depth, degree, domain, spectral_decay)
            self.u_decoder = _ChebyshevDecoder(*cheb)
            self.k_decoder = _ChebyshevDecoder(*cheb)
        else:
            raise ValueError(f"decoder must be 'mlp' or 'chebyshev', got {decoder!r}")
        for name, coords in (("u", u_sensors), ("k", k_sensors), ("f", f_sensors)):
            self.register_buffer(f"{name}_coords", torch.tensor([float(v) for v in coords]))
        self.register_buffer("z_syn", synthetic_latents(n_syn, latent_dim, syn_sampling, syn_seed))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        scale = torch.ones(d) if sensor_scale is None else torch.tensor(sensor_scale)
        if scale.shape != (d,) or not torch.all(scale > 0):
            raise ValueError(f"sensor_scale needs {d} positive entries (one per sensor value)")
        self.register_buffer("sensor_scale", scale)

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> SDEPIVAE:
        """Sensor counts split as u: 2 (the boundaries), f: ~40 %, k: the rest, equispaced."""
        if cond_shape is not None or len(sample_shape) != 1:
            raise ValueError("SDEPIVAE takes unconditional sensor vectors of shape (D,)")
        d = sample_shape[0]
        n_f = max(1, (d - 2) * 2 // 5)
        n_k = d - 2 - n_f
        if n_k < 1:
            raise ValueError(f"SDEPIVAE needs at least 4 sensor values, got {d}")
        grid = lambda n: torch.linspace(-1, 1, n).tolist() if n > 1 else [-1.0]  # noqa: E731
        defaults = {"u_sensors": [-1.0, 1.0], "k_sensors": grid(n_k), "f_sensors": grid(n_f)}
        return cls(**{**defaults, "width": 32, "depth": 2, **overrides})

    # -- encoder and decoders ------------------------------------------------------------------

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` of q(z | sensor vector)."""
        h = self.encoder(x)
        return self.encoder_mu(h), self.encoder_logvar(h)

    def _k(self, x: Tensor, z: Tensor) -> Tensor:
        k = self.k_decoder(x, z)
        return k.exp() if self.k_transform == "exp" else k

    def decode_fields(
        self, z: Tensor, coords: Tensor, with_f: bool = True
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """u, k (and f̂ by autograd) at ``coords`` ``(P,)`` for latents ``z`` ``(B, L)``.

        Returns three ``(B, P)`` tensors (f̂ is ``None`` without ``with_f``). Differentiable;
        under ``torch.no_grad`` the derivatives are still taken (then detached).
        """
        b = z.shape[0]
        x = coords.to(z.dtype).expand(b, -1)
        if not with_f:
            return self.u_decoder(x, z), self._k(x, z), None
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            u, k = self.u_decoder(x, z), self._k(x, z)
            u_x = _grad(u, x)
            f = -self.c * (_grad(k, x) * u_x + k * _grad(u_x, x))
        if not torch.is_grad_enabled():
            u, k, f = u.detach(), k.detach(), f.detach()
        return u, k, f

    def sensors(self, z: Tensor) -> Tensor:
        """Decoded sensor vector ``[u(x_u), k(x_k), f̂(x_f)]``, ``(B, D)``."""
        u = self.u_decoder(self.u_coords.expand(z.shape[0], -1), z)
        k = self._k(self.k_coords.expand(z.shape[0], -1), z)
        _, _, f = self.decode_fields(z, self.f_coords)
        return torch.cat([u, k, f], dim=1)

    def boundary_penalty(self, z: Tensor) -> Tensor:
        """Per-sample Dirichlet violation ½Σ(u(end) − g)² at both ends of the domain."""
        ends = torch.tensor(self.domain, device=z.device, dtype=z.dtype)
        u = self.u_decoder(ends.expand(z.shape[0], -1), z)
        g = torch.tensor(self.boundary_values, device=z.device, dtype=z.dtype)
        return 0.5 * (u - g).pow(2).sum(1)

    # -- protocol --------------------------------------------------------------------------

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is not None:
            raise ValueError("SDEPIVAE is unconditional; got cond")
        mu, logvar = self.encode(x)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        recon = self.sensors(z)
        scale = self.sensor_scale
        total = mmd_rows(recon / scale, x / scale, self.kernel_mul, self.kernel_num)
        total = total + mmd_rows(z, torch.randn_like(z), self.kernel_mul, self.kernel_num)
        active = int(self.steps) >= self.pretrain_steps
        if self.training:
            self.steps += 1
        if active:
            if self.alpha1:
                total = total + self.alpha1 * self.boundary_penalty(z)
            if self.alpha2:
                idx = torch.randint(len(self.z_syn), (x.shape[0],), device=self.z_syn.device)
                total = total + self.alpha2 * self.boundary_penalty(self.z_syn[idx])
        return total

    def sample(self, n: int, cond: Tensor | None = None, **options: Any) -> Tensor:
        """``n`` sensor vectors ``(n, D)`` decoded from z ~ N(0, I)."""
        if cond is not None:
            raise ValueError("SDEPIVAE is unconditional; got cond")
        z = self._prior_draw(n)
        with torch.no_grad():
            return self.sensors(z)

    def _prior_draw(self, n: int) -> Tensor:
        c = self.u_coords
        return torch.randn(n, self.latent_dim, device=c.device, dtype=c.dtype)

    def sample_fields(self, n: int, coords: Tensor, z: Tensor | None = None) -> Tensor:
        """``(n, 3, P)`` fields (u, k, f̂) at ``coords`` from z ~ N(0, I) (or the given z)."""
        if z is None:
            z = self._prior_draw(n)
        with torch.no_grad():
            u, k, f = self.decode_fields(z, coords.to(z.device))
        return torch.stack([u, k, f], dim=1)

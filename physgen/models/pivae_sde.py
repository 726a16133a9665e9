"""The PI-VAE for stochastic differential equations on sensor data (Zhong & Meidani 2023)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..nn.mlp import MLP, CoordinateNet
from ..quadrature import indefinite_integral_matrix
from .base import GenerativeModel, register_model
from .pivae import mmd_rows, synthetic_latents

__all__ = ["SDEPIVAE"]


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

    * ``form="flux"``: decode the flux :math:`q = k\,u'` instead of u, and obtain

      .. math:: u(x) = g_a + \int_a^x \frac{q(s)}{k(s)}\,ds, \qquad
                \hat f = -c\,q'(x),

      the integral by Clenshaw–Curtis quadrature on ``integration_nodes`` Chebyshev–Lobatto
      points (`physgen.quadrature`), the derivative by autograd. The decoded triple obeys the
      equation exactly, u(a) = g_a holds by construction and u(b) = g_b is left to the data
      and the physics terms. With u and k decoded (the paper's form) f̂ is independent of k
      only if the u decoder learns u's exact response to k; any shortfall makes f̂ and k
      dependent and, when u is observed only at the walls, shrinks u's spread. In flux form
      f̂ and k come from separate decoders, and u's response to k is built in.
      ``exact_boundary=True`` also makes u(b) = g_b exact, by shifting q by the constant
      :math:`C = \bigl(\int_a^b q/k - (g_b - g_a)\bigr) / \int_a^b 1/k` (f̂ is unchanged);
      the physics terms then have nothing left to do;
    * ``decoder="chebyshev"``: u and k as Chebyshev series of degree ``degree`` with
      coefficients from an MLP of z (smooth by construction, far cheaper derivatives);
    * ``k_transform="exp"``: decode log k, so k > 0 (the operator stays elliptic);
    * ``mmd_k="log"``: compare the k readings as log k inside the MMD (needs k > 0, e.g.
      with ``k_transform="exp"``);
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
        form: str = "u",
        integration_nodes: int = 48,
        exact_boundary: bool = False,
        latent_dim: int = 4,
        width: int = 128,
        depth: int = 3,
        decoder: str = "mlp",
        degree: int = 24,
        spectral_decay: float = 2.0,
        k_transform: str = "identity",
        encoder_logvar: str = "sigmoid",
        mmd_k: str = "k",
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
        super().__init__()
        if form not in ("u", "flux"):
            raise ValueError(f"form must be 'u' or 'flux' (decode q = k u' and k), got {form!r}")
        if integration_nodes < 2:
            raise ValueError(f"integration_nodes must be >= 2, got {integration_nodes}")
        if form == "flux" and k_transform != "exp":
            raise ValueError("form='flux' integrates q/k and needs k > 0: use k_transform='exp'")
        if exact_boundary and form != "flux":
            raise ValueError("exact_boundary=True needs form='flux' (it shifts the decoded flux)")
        self.form, self.integration_nodes = form, integration_nodes
        self.exact_boundary = exact_boundary
        if mmd_k not in ("k", "log"):
            raise ValueError(f"mmd_k must be 'k' or 'log', got {mmd_k!r}")
        self.mmd_k = mmd_k
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
            # Zhong's decoder: Linear, tanh, ``depth`` × (Linear, tanh), Linear.
            make = lambda decay: CoordinateNet(latent_dim, width, depth + 1, "tanh")  # noqa: E731
        elif decoder == "chebyshev":
            make = lambda decay: _ChebyshevDecoder(  # noqa: E731
                latent_dim, width, depth, degree, domain, decay
            )
        else:
            raise ValueError(f"decoder must be 'mlp' or 'chebyshev', got {decoder!r}")
        if form == "u":
            self.u_decoder: nn.Module = make(spectral_decay)
        else:
            # f̂ takes one derivative of q where it took two of u: damp one power less.
            self.flux_decoder: nn.Module = make(max(spectral_decay - 1.0, 0.0))
        self.k_decoder: nn.Module = make(spectral_decay)
        for name, coords in (("u", u_sensors), ("k", k_sensors), ("f", f_sensors)):
            self.register_buffer(f"{name}_coords", torch.tensor([float(v) for v in coords]))
        # The u-sensor coordinates as the buffer holds them, for the flux form's cached
        # integration matrix (`_integral`); the cache lives per device, outside the state.
        self.u_points = tuple(self.u_coords.double().tolist())
        self._integrals: dict[tuple[tuple[float, ...], str], tuple[Tensor, Tensor]] = {}
        self.register_buffer("z_syn", synthetic_latents(n_syn, latent_dim, syn_sampling, syn_seed))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

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

    def _integral(
        self, coords: Tensor | None, device: torch.device, points: Sequence[float] | None
    ) -> tuple[Tensor, Tensor]:
        """Quadrature nodes and integration matrix (float64) for ``coords`` on ``device``.

        For the fixed coordinate sets of training (``points`` given as Python floats) both are
        kept per device, so a training step neither reads coordinates back from the device nor
        copies the matrix to it.
        """
        if points is None:
            return indefinite_integral_matrix(
                coords, self.integration_nodes, self.domain, dtype=torch.float64, device=device
            )
        key = (tuple(points), str(device))
        if key not in self._integrals:
            self._integrals[key] = indefinite_integral_matrix(
                points, self.integration_nodes, self.domain, dtype=torch.float64, device=device
            )
        return self._integrals[key]

    def _u(self, coords: Tensor, z: Tensor, points: Sequence[float] | None = None) -> Tensor:
        """u at ``coords`` ``(P,)`` for latents ``z`` ``(B, L)``: ``(B, P)``, either form.

        ``points``: the same coordinates as Python floats, when known (see `_integral`).
        """
        if self.form == "u":
            return self.u_decoder(coords.to(z.dtype).expand(z.shape[0], -1), z)
        # Flux form: u(x) = g_a + ∫_a^x q/k ds, q/k sampled at the quadrature nodes.
        nodes, matrix = self._integral(coords, z.device, points)
        t = nodes.to(z.dtype).expand(z.shape[0], -1)
        k = self._k(t, z)
        slope = (self.flux_decoder(t, z) / k).double()  # u' = q / k at the nodes, (B, N)
        g_a, g_b = self.boundary_values
        if self.exact_boundary:
            # Flux q − C with the constant C that gives ∫_a^b (q − C)/k = g_b − g_a, so
            # u(b) = g_b exactly; f̂ = −c (q − C)' = −c q' is unchanged.
            whole = self._integral(None, z.device, self.domain)[1][1]  # ∫_a^b weights, (N,)
            inverse_k = 1.0 / k.double()
            shift = (slope @ whole - (g_b - g_a)) / (inverse_k @ whole)  # (B,)
            slope = slope - shift[:, None] * inverse_k
        # The sum cancels terms much larger than u; in float64 u keeps the accuracy of its
        # own dtype, so second differences of u see rounding, not cancellation error.
        return (g_a + slope @ matrix.T).to(z.dtype)

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
            return self._u(coords, z), self._k(x, z), None
        if self.form == "flux":
            return self._u(coords, z), self._k(x, z), self._flux_f(x, z)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            u, k = self.u_decoder(x, z), self._k(x, z)
            u_x = _grad(u, x)
            f = -self.c * (_grad(k, x) * u_x + k * _grad(u_x, x))
        if not torch.is_grad_enabled():
            u, k, f = u.detach(), k.detach(), f.detach()
        return u, k, f

    def _flux_f(self, x: Tensor, z: Tensor) -> Tensor:
        """Flux form: f̂ = −c q′ at coordinates ``x`` ``(B, P)`` by autograd, ``(B, P)``.

        u and k are not needed for f̂ here, so `sensors` takes only this. Under
        ``torch.no_grad`` the derivative is still taken, then detached.
        """
        keep_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            f = -self.c * _grad(self.flux_decoder(x, z), x)
        return f if keep_graph else f.detach()

    def sensors(self, z: Tensor) -> Tensor:
        """Decoded sensor vector ``[u(x_u), k(x_k), f̂(x_f)]``, ``(B, D)``."""
        u = self._u(self.u_coords, z, self.u_points)
        k = self._k(self.k_coords.expand(z.shape[0], -1), z)
        if self.form == "flux":
            f = self._flux_f(self.f_coords.to(z.dtype).expand(z.shape[0], -1), z)
        else:
            _, _, f = self.decode_fields(z, self.f_coords)
        return torch.cat([u, k, f], dim=1)

    def boundary_penalty(self, z: Tensor) -> Tensor:
        """Per-sample Dirichlet violation ½Σ(u(end) − g)² at both ends of the domain."""
        ends = torch.tensor(self.domain, device=z.device, dtype=z.dtype)
        u = self._u(ends, z, self.domain)
        g = torch.tensor(self.boundary_values, device=z.device, dtype=z.dtype)
        return 0.5 * (u - g).pow(2).sum(1)

    # -- protocol --------------------------------------------------------------------------

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is not None:
            raise ValueError("SDEPIVAE is unconditional; got cond")
        mu, logvar = self.encode(x)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        recon = self.sensors(z)
        total = self.sensor_mmd(recon, x)
        total = total + mmd_rows(z, torch.randn_like(z), self.kernel_mul, self.kernel_num)
        # Without a pre-training stage, no host sync: reading the step buffer waits for the GPU.
        active = self.pretrain_steps <= 0 or int(self.steps) >= self.pretrain_steps
        if self.training:
            self.steps += 1
        if active:
            if self.alpha1:
                total = total + self.alpha1 * self.boundary_penalty(z)
            if self.alpha2:
                idx = torch.randint(len(self.z_syn), (x.shape[0],), device=self.z_syn.device)
                total = total + self.alpha2 * self.boundary_penalty(self.z_syn[idx])
        return total

    def sensor_mmd(self, recon: Tensor, x: Tensor) -> Tensor:
        """MMD² between decoded and data sensor readings, the joint vectors ``[u, k, f]``.

        With ``mmd_k="log"`` the k readings are compared as log k, where the data are
        Gaussian and the lower tail of k (which sets the spread of u ~ ∫ f/k) is not crushed
        by the kernel. A subclass adds terms here (the study's variants do).
        """
        if self.mmd_k == "log":
            recon, x = self._log_k(recon), self._log_k(x)
        return mmd_rows(recon, x, self.kernel_mul, self.kernel_num)

    def _log_k(self, v: Tensor) -> Tensor:
        u, k, f = v.split([self.n_u, self.n_k, self.n_f], dim=1)
        if not torch.all(k > 0):
            raise ValueError("mmd_k='log' needs positive k readings in the data and decodings")
        return torch.cat([u, k.log(), f], dim=1)

    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Tensor:
        """``n`` sensor vectors ``(n, D)`` decoded from z ~ N(0, I)."""
        if cond is not None:
            raise ValueError("SDEPIVAE is unconditional; got cond")
        z = self._prior_draw(n, generator)
        with torch.no_grad():
            return self.sensors(z)

    def _prior_draw(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        c = self.u_coords
        return torch.randn(n, self.latent_dim, generator=generator, device=c.device, dtype=c.dtype)

    def sample_fields(self, n: int, coords: Tensor, z: Tensor | None = None) -> Tensor:
        """``(n, 3, P)`` fields (u, k, f̂) at ``coords`` from z ~ N(0, I) (or the given z)."""
        if z is None:
            z = self._prior_draw(n)
        with torch.no_grad():
            u, k, f = self.decode_fields(z, coords.to(z.device))
        return torch.stack([u, k, f], dim=1)

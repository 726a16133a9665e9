"""PI-GAN for the 1-D stochastic elliptic problem: coordinate generators, f by autograd, WGAN-GP."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..nn import MLP
from .adversarial import AdversarialModel
from .base import register_model
from .gan_losses import gradient_penalty

__all__ = ["PIGAN", "CoordinateNet", "elliptic_source"]

FIELDS = ("u", "k", "f")


def elliptic_source(
    u_fn: Callable[[Tensor], Tensor],
    k_fn: Callable[[Tensor], Tensor],
    x: Tensor,
    diffusion_scale: float = 0.1,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""u, k and the source :math:`f = -c\,(k\,u_x)_x = -c\,(k_x u_x + k\,u_{xx})` at ``x``.

    The derivatives are exact (automatic differentiation), as in PI-GAN (Yang, Zhang &
    Karniadakis, SIAM J. Sci. Comput. 42, 2020, §3): the "generator" of f is induced by the
    differential operator acting on the generators of u and k.

    Args:
        u_fn, k_fn: pointwise functions of coordinates, ``(B, P) -> (B, P)`` (entry ``[b, p]``
            may depend only on ``x[b, p]``, which makes one backward pass per derivative exact).
        x: coordinates ``(B, P)``.
        diffusion_scale: :math:`c` (1/10 in the benchmark).

    Returns:
        ``(u, k, f)``, each ``(B, P)``. Differentiable with respect to the parameters of
        ``u_fn``/``k_fn`` when grad mode is on; detached under ``torch.no_grad``.
    """
    keep_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        u, k = u_fn(x), k_fn(x)
        (u_x,) = torch.autograd.grad(u.sum(), x, create_graph=True)
        (u_xx,) = torch.autograd.grad(u_x.sum(), x, create_graph=keep_graph)
        (k_x,) = torch.autograd.grad(k.sum(), x, create_graph=keep_graph)
        f = -diffusion_scale * (k_x * u_x + k * u_xx)
    if not keep_graph:
        u, k, f = u.detach(), k.detach(), f.detach()
    return u, k, f


class CoordinateNet(nn.Module):
    r"""Field as a function of coordinate and latent: :math:`(x, z)\mapsto\mathrm{MLP}([x, z])`."""

    def __init__(self, latent_dim: int, width: int, depth: int, act: str) -> None:
        super().__init__()
        self.net = MLP(1 + latent_dim, 1, hidden=(width,) * depth, act=act)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        """Coordinates ``(B, P)`` and latents ``(B, L)`` to values ``(B, P)``."""
        zp = z[:, None, :].expand(*x.shape, z.shape[1])  # (B, P, L)
        return self.net(torch.cat([x[..., None].to(z.dtype), zp], dim=-1)).squeeze(-1)


@register_model("pigan")
class PIGAN(AdversarialModel):
    r"""Physics-informed WGAN-GP for :math:`-c\,(k u')' = f` (Yang, Zhang & Karniadakis 2020).

    Data are simultaneous sensor readings ``x = [u(x_u), k(x_k), f(x_f)]``. Two coordinate
    generators :math:`\tilde u(x, z)` and :math:`\tilde k(x, z)` (``CoordinateNet``) share the
    noise :math:`z\sim N(0, I)`; the generated f is :math:`-c(\tilde k\tilde u_x)_x` by
    ``elliptic_source``, so every generated triple satisfies the equation exactly, and
    the u-statistics can be learned from f and k sensors alone (the forward problem has u
    only at the two boundary points). One WGAN-GP critic per sensor group
    (``groups``, default one group of all three fields); the critic loss is the sum over
    groups of :math:`D_g(\tilde x_g) - D_g(x_g) + \lambda(\lVert\nabla D_g(\hat x_g)\rVert - 1)^2`
    with a separate per-sample penalty for each critic.

    ``sample(n)`` returns sensor vectors like the data; ``sample_fields`` evaluates
    (u, k, f) at any coordinates.

    Args:
        u_sensors, k_sensors, f_sensors: sensor coordinates of each field.
        latent_dim: noise dimension.
        width, depth, act: generator networks (hidden width, number of hidden layers).
        critic_width, critic_depth, critic_act: critic networks.
        groups: sensor groups, each a list of field names among ``u``, ``k``, ``f``.
        k_transform: ``identity`` (the paper) or ``exp`` (generate log k, so k > 0).
        diffusion_scale: :math:`c`.
        gp_weight: :math:`\lambda`.
        n_critic: critic steps per generator step.
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
        act: str = "tanh",
        critic_width: int = 128,
        critic_depth: int = 4,
        critic_act: str = "tanh",
        groups: Sequence[Sequence[str]] = (FIELDS,),
        k_transform: str = "identity",
        diffusion_scale: float = 0.1,
        gp_weight: float = 10.0,
        n_critic: int = 5,
    ) -> None:
        sensors = {"u": list(u_sensors), "k": list(k_sensors), "f": list(f_sensors)}
        if min(len(v) for v in sensors.values()) < 1:
            raise ValueError("PIGAN needs at least one sensor of each of u, k and f")
        groups = [list(g) for g in groups]
        for group in groups:
            if not group or any(name not in FIELDS for name in group):
                raise ValueError(f"PIGAN: groups must be non-empty lists of {FIELDS}; got {groups}")
        if k_transform not in ("identity", "exp"):
            raise ValueError(f"PIGAN: k_transform must be 'identity' or 'exp'; got {k_transform!r}")
        config = {
            **{f"{name}_sensors": [float(v) for v in sensors[name]] for name in FIELDS},
            "latent_dim": latent_dim,
            "width": width,
            "depth": depth,
            "act": act,
            "critic_width": critic_width,
            "critic_depth": critic_depth,
            "critic_act": critic_act,
            "groups": groups,
            "k_transform": k_transform,
            "diffusion_scale": diffusion_scale,
            "gp_weight": gp_weight,
            "n_critic": n_critic,
        }
        self.n_sensors = {name: len(sensors[name]) for name in FIELDS}
        shape = (sum(self.n_sensors.values()),)
        super().__init__("wasserstein", "gp", config, shape, None, latent_dim)
        for name in FIELDS:
            self.register_buffer(f"{name}_coords", torch.tensor(sensors[name]))
        offsets = torch.cumsum(torch.tensor([0, *self.n_sensors.values()]), 0).tolist()
        span = {name: range(offsets[i], offsets[i + 1]) for i, name in enumerate(FIELDS)}
        for i, group in enumerate(groups):
            columns = [c for name in group for c in span[name]]
            self.register_buffer(f"group{i}", torch.tensor(columns), persistent=False)

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> PIGAN:
        """Sensor vectors of ``sample_shape == (D,)`` split as u: 2 (the boundaries of [-1, 1]),
        f: about 40 %, k: the rest, each equispaced, unless sensors are given."""
        if cond_shape is not None or len(sample_shape) != 1:
            raise ValueError("pigan takes unconditional sensor vectors of shape (D,)")
        d = sample_shape[0]
        n_f = max(1, (d - 2) * 2 // 5)
        n_k = d - 2 - n_f
        if n_k < 1:
            raise ValueError(f"pigan needs at least 4 sensor values; got {d}")
        defaults = {
            "u_sensors": [-1.0, 1.0],
            "k_sensors": torch.linspace(-1, 1, n_k).tolist(),
            "f_sensors": torch.linspace(-1, 1, n_f).tolist(),
            "width": 32,
            "depth": 2,
            "critic_width": 32,
            "critic_depth": 2,
        }
        return cls(**{**defaults, **overrides})

    def build_generator(self) -> nn.Module:
        cfg = self.config
        return nn.ModuleDict(
            {
                name: CoordinateNet(self.latent_dim, cfg["width"], cfg["depth"], cfg["act"])
                for name in ("u", "k")
            }
        )

    def build_critic(self) -> nn.Module:
        cfg = self.config
        hidden = (cfg["critic_width"],) * cfg["critic_depth"]
        return nn.ModuleList(
            MLP(sum(self.n_sensors[name] for name in group), 1, hidden, cfg["critic_act"])
            for group in cfg["groups"]
        )

    def _u(self, x: Tensor, z: Tensor) -> Tensor:
        return self.generator_net["u"](x, z)

    def _k(self, x: Tensor, z: Tensor) -> Tensor:
        k = self.generator_net["k"](x, z)
        return k.exp() if self._config["k_transform"] == "exp" else k

    def fields(self, z: Tensor, coords: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Generated u, k and f at ``coords`` ``(P,)`` for latents ``(B, L)``; each ``(B, P)``."""
        x = coords.to(z.dtype).expand(z.shape[0], -1)  # (B, P)
        return elliptic_source(
            lambda c: self._u(c, z), lambda c: self._k(c, z), x, self._config["diffusion_scale"]
        )

    def generate(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        b = z.shape[0]
        u = self._u(self.u_coords.to(z.dtype).expand(b, -1), z)
        k = self._k(self.k_coords.to(z.dtype).expand(b, -1), z)
        _, _, f = self.fields(z, self.f_coords)
        return torch.cat([u, k, f], dim=1)  # (B, n_u + n_k + n_f)

    def _groups(self) -> list[Tensor]:
        return [getattr(self, f"group{i}") for i in range(len(self.critic_net))]

    def score(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Sum of the group critics' potentials, ``(B,)``."""
        return sum(
            critic(x[:, columns]).squeeze(-1)
            for critic, columns in zip(self.critic_net, self._groups(), strict=True)
        )

    def penalty(self, real: Tensor, fake: Tensor, cond: Tensor | None = None) -> Tensor:
        """Sum over groups of each critic's own per-sample gradient penalty."""
        return sum(
            gradient_penalty(
                lambda v, c, net=critic: net(v).squeeze(-1), real[:, cols], fake[:, cols]
            )
            for critic, cols in zip(self.critic_net, self._groups(), strict=True)
        )

    @torch.no_grad()
    def sample_fields(
        self,
        n: int,
        coords: Tensor,
        z: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``(n, 3, P)`` fields (u, k, f) at ``coords`` from fresh noise (or the given ``z``)."""
        if z is None:
            z = self.latent(n, self.device, generator)
        u, k, f = self.fields(z, coords.to(z.device))
        return torch.stack([u, k, f], dim=1)

"""Continuous normalizing flows: FFJORD maximum likelihood and flow matching, one ODE path."""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

from ..likelihood import hutchinson_probes, ode_log_prob, solve_ode
from ..nn.embeddings import TimeMLP
from ..nn.unet import UNet
from ..sde import build_interpolant
from .base import DensityModel, register_model

__all__ = ["CNF", "FlowMatching", "time_network"]


def time_network(
    sample_shape: tuple[int, ...],
    cond_shape: tuple[int, ...] | None,
    *,
    hidden: list[int],
    act: str,
    freqs: int,
    channels: list[int],
    blocks: int,
    attention: list[bool] | None,
    periodic: bool,
) -> nn.Module:
    """``net(x, t, cond)`` for samples of ``sample_shape``: ``TimeMLP`` on vectors, ``UNet`` on
    fields ``(C, *grid)``. A field ``cond`` (same grid) is stacked as channels, any other is
    flattened into features."""
    if len(sample_shape) == 1:
        features = math.prod(cond_shape) if cond_shape else 0
        return TimeMLP(sample_shape, features, hidden, act, freqs)
    field_cond = cond_shape is not None and tuple(cond_shape[1:]) == tuple(sample_shape[1:])
    return UNet(
        ndim=len(sample_shape) - 1,
        in_channels=sample_shape[0],
        channels=channels,
        blocks=blocks,
        attention=attention,
        periodic=periodic,
        cond_features=math.prod(cond_shape) if cond_shape and not field_cond else 0,
        cond_channels=cond_shape[0] if field_cond else 0,
    )


class _ContinuousFlow(DensityModel):
    r"""A flow :math:`dx/dt = v_\theta(x, t, c)` from data (``t = 0``) to ``N(0, I)`` (``t = 1``).

    ``log_prob`` integrates the instantaneous change of variables (``ode_log_prob``) and
    ``sample`` integrates from noise back to data (``solve_ode``), both with torchdiffeq.
    Subclasses define the training objective.
    """

    example_shape = (2,)

    def __init__(
        self,
        sample_shape: list[int] | tuple[int, ...],
        cond_shape: list[int] | tuple[int, ...] | None = None,
        *,
        hidden: list[int] | tuple[int, ...] = (64, 64, 64),
        act: str = "tanh",
        freqs: int = 3,
        channels: list[int] | tuple[int, ...] = (32, 64),
        blocks: int = 1,
        attention: list[bool] | None = None,
        periodic: bool = False,
        trace: str = "exact",
        probe: str = "rademacher",
        method: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        steps: int | None = None,
        adjoint: bool = False,
        **config: Any,
    ) -> None:
        if trace not in ("exact", "hutchinson"):
            raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}")
        super().__init__(
            sample_shape=list(sample_shape), cond_shape=list(cond_shape) if cond_shape else None,
            hidden=list(hidden), act=act, freqs=freqs, channels=list(channels), blocks=blocks,
            attention=attention, periodic=periodic, trace=trace, probe=probe, method=method,
            rtol=rtol, atol=atol, steps=steps, adjoint=adjoint, **config,
        )  # fmt: skip
        self.sample_shape = tuple(sample_shape)
        self.cond_shape = tuple(cond_shape) if cond_shape else None
        self.trace, self.probe = trace, probe
        self.ode = {"method": method, "rtol": rtol, "atol": atol, "steps": steps}
        self.adjoint = adjoint
        self.net = time_network(
            self.sample_shape, self.cond_shape, hidden=list(hidden), act=act, freqs=freqs,
            channels=list(channels), blocks=blocks, attention=attention, periodic=periodic,
        )  # fmt: skip

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> _ContinuousFlow:
        # The exact trace costs one VJP per dimension: only for small vectors.
        trace = "exact" if math.prod(sample_shape) <= 8 else "hutchinson"
        return cls(sample_shape, cond_shape, **{"trace": trace, **overrides})

    def _check(self, x: Tensor, cond: Tensor | None) -> None:
        if tuple(x.shape[1:]) != self.sample_shape:
            raise ValueError(
                f"{type(self).__name__}: x has sample shape {tuple(x.shape[1:])}, "
                f"expected {self.sample_shape}"
            )
        if (cond is None) != (self.cond_shape is None):
            need = f"cond of shape {self.cond_shape}" if self.cond_shape else "no cond"
            raise ValueError(f"{type(self).__name__}: expected {need}")

    def velocity(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """The learned velocity ``v(x, t, cond)``; ``t`` of shape ``(B,)``."""
        return self.net(x, t, cond)

    def _base_log_prob(self, z: Tensor) -> Tensor:
        d = z[0].numel()
        return -0.5 * z.pow(2).flatten(1).sum(1) - 0.5 * d * math.log(2 * math.pi)

    def log_prob(
        self,
        x: Tensor,
        cond: Tensor | None = None,
        *,
        trace: str | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        r""":math:`\log p(x \mid c) = \log\mathcal N(z; 0, I) + \int_0^1 \nabla\cdot v\,dt`,
        with the configured (or given) trace: ``exact`` or ``hutchinson`` (one probe per
        sample, fixed over the solve, drawn from ``generator``)."""
        self._check(x, cond)
        trace = trace or self.trace
        probes = hutchinson_probes(x, 1, self.probe, generator) if trace == "hutchinson" else None
        params = tuple(p for p in self.parameters() if p.requires_grad)
        return ode_log_prob(
            lambda y, t: self.net(y, t, cond), x, self._base_log_prob, t0=0.0, t1=1.0,
            probes=probes, adjoint=self.adjoint, adjoint_params=params, **self.ode,
        ).log_prob  # fmt: skip

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **ode: Any,
    ) -> Tensor:
        """Integrate from ``z ~ N(0, I)`` at ``t = 1`` to data at ``t = 0``; ``ode`` overrides
        the solver options (``method``, ``rtol``, ``atol``, ``steps``)."""
        if (cond is None) != (self.cond_shape is None):
            raise ValueError(f"{type(self).__name__}: cond must match cond_shape {self.cond_shape}")
        dtype = next(self.parameters()).dtype
        z = torch.randn((n, *self.sample_shape), generator=generator, dtype=dtype).to(self.device)
        x, _ = solve_ode(lambda y, t: self.net(y, t, cond), z, 1.0, 0.0, **{**self.ode, **ode})
        return x

    @abstractmethod
    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Per-sample training loss."""


@register_model("cnf")
class CNF(_ContinuousFlow):
    r"""FFJORD: a continuous normalizing flow trained by maximum likelihood (Grathwohl et
    al., ICLR 2019; Chen et al. 2018). ``loss = -log p(x | c)`` through the ODE, with the
    exact trace (small D) or Hutchinson's estimator (``trace="hutchinson"``), gradients by
    backpropagation through the solver or the adjoint (``adjoint=True``).

    Vectors use an MLP on ``[cos πkt, sin πkt, x, c]``; fields use the U-Net.

    Example:
        >>> cnf = CNF((2,), hidden=(16, 16))
        >>> cnf.log_prob(torch.zeros(3, 2)).shape
        torch.Size([3])
    """

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return -self.log_prob(x, cond)


@register_model("flow-matching")
class FlowMatching(_ContinuousFlow):
    r"""A continuous flow trained by conditional flow matching (Lipman et al., ICLR 2023):

    .. math:: \mathcal L = \mathbb E_{t, x_0, \varepsilon}
              \| v_\theta(\alpha_t x_0 + \sigma_t\varepsilon, t) - (\dot\alpha_t x_0
              + \dot\sigma_t\varepsilon) \|^2,

    averaged over dimensions, along a ``linear`` (optimal-transport) or ``vp`` path.
    Likelihoods and samples use the same ODE code as ``CNF``.
    """

    def __init__(
        self,
        sample_shape: list[int] | tuple[int, ...],
        cond_shape: list[int] | tuple[int, ...] | None = None,
        *,
        path: str = "linear",
        sigma_min: float = 0.0,
        **config: Any,
    ) -> None:
        super().__init__(sample_shape, cond_shape, path=path, sigma_min=sigma_min, **config)
        kwargs = {"sigma_min": sigma_min} if path == "linear" else {}
        self.path = build_interpolant(path, **kwargs)

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        self._check(x, cond)
        t = torch.rand(x.shape[0], device=x.device, dtype=x.dtype)
        noise = torch.randn_like(x)
        xt = self.path.sample(x, noise, t)
        target = self.path.target_velocity(x, noise, t)
        return (self.net(xt, t, cond) - target).pow(2).flatten(1).mean(1)

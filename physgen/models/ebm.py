"""Energy-based model: energy network, Langevin sampling, replay buffer, contrastive divergence."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from ..nn import MLP
from .base import GenerativeModel, register_model

__all__ = ["EBM", "langevin_dynamics"]


def langevin_dynamics(
    energy: Callable[[Tensor], Tensor],
    x: Tensor,
    n_steps: int,
    step_size: float,
    noise_scale: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Unadjusted Langevin dynamics towards :math:`p(x)\propto e^{-E(x)}`.

    .. math:: x_{k+1} = x_k - \eta\,\nabla_x E(x_k) + \sigma\,\xi_k,\qquad \xi_k\sim N(0, I)

    With ``noise_scale=None`` the noise is :math:`\sigma=\sqrt{2\eta}`, the Euler–Maruyama
    discretization of :math:`dx = -\nabla E\,dt + \sqrt2\,dW`, whose stationary law is
    :math:`e^{-E}` up to an :math:`O(\eta)` bias (for a quadratic energy with precision
    :math:`P` it is exactly Gaussian with covariance :math:`2\eta\,(I-(I-\eta P)^2)^{-1}`).
    EBM training often decouples :math:`\sigma` from :math:`\eta` (Du & Mordatch 2019); pass
    ``noise_scale`` for that.

    Only ``x`` is differentiated; parameters of ``energy`` receive no gradient, and the
    returned chain states are detached.

    Args:
        energy: ``energy(x) -> (B,)``.
        x: initial states ``(B, ...)``.
        n_steps: number of Langevin steps.
        step_size: :math:`\eta > 0`.
        noise_scale: :math:`\sigma`; ``None`` for :math:`\sqrt{2\eta}`.
        generator: random generator for the noise.

    Example:
        >>> x = langevin_dynamics(lambda x: 0.5 * (x**2).sum(1), torch.zeros(4096, 2), 500, 0.05)
        >>> bool((x.var(0) - 1).abs().max() < 0.15)
        True
    """
    if n_steps < 0 or step_size <= 0:
        raise ValueError(
            f"langevin_dynamics: need n_steps >= 0 and step_size > 0; got {n_steps}, {step_size}"
        )
    sigma = math.sqrt(2 * step_size) if noise_scale is None else noise_scale
    noise_device = generator.device if generator is not None else x.device
    x = x.detach()
    with torch.enable_grad():
        for _ in range(n_steps):
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(x).sum(), x)
            noise = torch.randn(x.shape, generator=generator, device=noise_device).to(x.device)
            x = (x - step_size * grad + sigma * noise).detach()
    return x


def _from_every_process(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Each tensor concatenated over the processes of a data-parallel run, in rank order
    (unchanged in a single process). Every process must call it, with equal shapes."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensors
    out = []
    for tensor in tensors:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        out.append(torch.cat(parts))
    return tuple(out)


@register_model("ebm")
class EBM(GenerativeModel):
    r"""Energy-based model :math:`p_\theta(x)\propto e^{-E_\theta(x)}`, contrastive divergence.

    Per-sample loss (Du & Mordatch 2019, "Implicit Generation and Generalization in
    Energy-Based Models", eq. 2 plus their energy regularizer):

    .. math:: \ell_i = E_\theta(x_i) - E_\theta(\tilde x_i)
              + \alpha\,\big(E_\theta(x_i)^2 + E_\theta(\tilde x_i)^2\big)

    (:math:`\alpha` = ``reg_weight``; kept small, since with the exact Langevin noise
    :math:`\sqrt{2\eta}` a sharp density needs energy differences of several units), whose
    :math:`\theta`-gradient estimates that of the negative log-likelihood when the
    negatives :math:`\tilde x_i` are draws from the model. Negatives come from
    ``langevin_steps`` steps of ``langevin_dynamics`` started from a replay buffer of past
    negatives (persistent chains), each restarted from :math:`N(0, \text{init\_std}^2 I)` with
    probability ``reinit_prob``. ``log_prob`` is the **unnormalized** :math:`-E_\theta(x)`.

    The energy is a network plus a broad Gaussian base,
    :math:`E_\theta(x) = \mathrm{MLP}_\theta(x) + \lVert x\rVert^2 / (2\,\text{base\_std}^2)`,
    so :math:`e^{-E}` stays integrable and long Langevin runs cannot drift off to where the
    network was never trained (``base_std=None`` drops the base). The default suits
    standardized data.

    Example:
        >>> model = EBM(sample_shape=[2], hidden=[16], buffer_size=64, langevin_steps=5)
        >>> model.loss(torch.randn(8, 2)).shape
        torch.Size([8])
    """

    def __init__(
        self,
        sample_shape: Sequence[int],
        hidden: Sequence[int] = (128, 128),
        act: str = "silu",
        buffer_size: int = 8192,
        reinit_prob: float = 0.05,
        langevin_steps: int = 60,
        sample_steps: int = 500,
        step_size: float = 0.01,
        noise_scale: float | None = None,
        reg_weight: float = 0.01,
        init_std: float = 1.0,
        base_std: float | None = 3.0,
    ) -> None:
        super().__init__()
        if base_std is not None and base_std <= 0:
            raise ValueError(f"EBM: base_std must be positive or None; got {base_std}")
        if buffer_size < 1 or not 0.0 <= reinit_prob <= 1.0 or step_size <= 0:
            raise ValueError(
                "EBM: need buffer_size >= 1, 0 <= reinit_prob <= 1, step_size > 0; got "
                f"{buffer_size}, {reinit_prob}, {step_size}"
            )
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.energy_net = MLP(math.prod(self.sample_shape), 1, hidden, act)
        self.register_buffer("replay", init_std * torch.randn(buffer_size, *self.sample_shape))

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> EBM:
        if cond_shape is not None:
            raise ValueError("ebm is unconditional; got cond_shape")
        return cls(sample_shape=sample_shape, **overrides)

    def _no_cond(self, cond: Tensor | None) -> None:
        if cond is not None:
            raise ValueError("EBM is unconditional; got cond")

    def energy(self, x: Tensor) -> Tensor:
        r""":math:`E_\theta(x)` (network plus Gaussian base), shape ``(B,)``."""
        if tuple(x.shape[1:]) != self.sample_shape:
            raise ValueError(
                f"EBM: x has shape {tuple(x.shape)}; expected (B, *{self.sample_shape})"
            )
        flat = x.flatten(1)  # (B, D)
        energy = self.energy_net(flat).squeeze(-1)
        base_std = self._config["base_std"]
        if base_std is None:
            return energy
        return energy + 0.5 * flat.square().sum(1) / base_std**2

    def log_prob(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        r"""Unnormalized log-density :math:`-E_\theta(x)` (the log-partition is unknown)."""
        self._no_cond(cond)
        return -self.energy(x)

    def _langevin(self, x: Tensor, n_steps: int, generator: torch.Generator | None) -> Tensor:
        cfg = self._config
        return langevin_dynamics(
            self.energy, x, n_steps, cfg["step_size"], cfg["noise_scale"], generator=generator
        )

    def negatives(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` negatives from the replay buffer, refine them and write them back.

        The write-back happens in training mode only: validation (``eval()``) must not move
        the persistent chains, or a validation pass would change the next training step.
        In data-parallel training every process writes back the negatives of all processes,
        so the chains advance as in one process with the global batch (DDP also overwrites
        each process's buffers with rank 0's at every forward, which would drop the others'
        chains).
        """
        cfg = self._config
        device = self.replay.device
        index = torch.randint(self.replay.shape[0], (n,), device=device)
        start = self.replay[index]
        fresh = torch.rand(n, device=device) < cfg["reinit_prob"]
        start = torch.where(
            fresh.reshape(n, *[1] * len(self.sample_shape)),  # (n, 1, ..., 1)
            cfg["init_std"] * torch.randn_like(start),
            start,
        )
        x = self._langevin(start, cfg["langevin_steps"], generator)
        if self.training:
            written, chains = _from_every_process(index, x.detach())
            self.replay[written] = chains
        return x

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        self._no_cond(cond)
        negative = self.negatives(x.shape[0])
        e_pos, e_neg = self.energy(x), self.energy(negative)
        return e_pos - e_neg + self._config["reg_weight"] * (e_pos**2 + e_neg**2)

    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        n_steps: int | None = None,
        from_buffer: bool = False,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Tensor:
        r"""Langevin samples ``(n, *sample_shape)``.

        Args:
            n: number of samples.
            n_steps: Langevin steps (default ``sample_steps``).
            from_buffer: start from random replay-buffer states (persistent chains) instead
                of :math:`N(0, \text{init\_std}^2 I)`.
            generator: random generator for starts and noise.
        """
        self._no_cond(cond)
        if options:
            raise TypeError(f"EBM.sample: unknown options {sorted(options)}")
        steps = self.config["sample_steps"] if n_steps is None else n_steps
        device = self.replay.device
        rand_device = generator.device if generator is not None else device
        if from_buffer:
            size = self.replay.shape[0]
            index = torch.randint(size, (n,), generator=generator, device=rand_device)
            start = self.replay[index.to(device)]
        else:
            start = torch.randn(n, *self.sample_shape, generator=generator, device=rand_device)
            start = self.config["init_std"] * start.to(device, self.replay.dtype)
        return self._langevin(start, steps, generator)

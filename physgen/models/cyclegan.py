r"""CycleGAN: unpaired field-to-field translation with two generators and two PatchGAN critics.

Zhu, Park, Isola & Efros, "Unpaired Image-to-Image Translation using Cycle-Consistent
Adversarial Networks" (ICCV 2017, arXiv:1703.10593). Generators :math:`G: A \to B` and
:math:`F: B \to A` (U-Nets, :class:`physgen.nn.UNet`), critics :math:`D_B` and :math:`D_A`
(:class:`physgen.nn.patchgan.PatchGAN`). Per sample, for unpaired draws :math:`a` and
:math:`b`, with :math:`\ell` the adversarial objective averaged over patches,

.. math:: L_G = \ell_G(D_B(G(a))) + \ell_G(D_A(F(b)))
          + \lambda_{cyc}\,\big(\overline{|F(G(a)) - a|} + \overline{|G(F(b)) - b|}\big)
          + \lambda_{id}\,\big(\overline{|G(b) - b|} + \overline{|F(a) - a|}\big),

.. math:: L_D = \ell_D(D_B(b), D_B(G(a))) + \ell_D(D_A(a), D_A(F(b))),

with λ_cyc = 10 and λ_id = 5 as in the paper (the identity term needs equal channel counts).
With ``residual=True`` each generator is the identity plus a learnt correction,
:math:`G(a) = a + g(a)` and :math:`F(b) = b + f(b)`, as in residual learning (He et al. 2016,
arXiv:1512.03385): the U-Nets' output layers start at zero, so training starts at the identity
map and the losses only have to add what separates the domains (suited to domains that are
already close, such as a coarse solve and a fine one; needs equal channel counts).
The data come as ``(x, cond) = (b, a)`` from :class:`physgen.data.unpaired.UnpairedDataset`;
``sample(n, cond=a)`` returns :math:`G(a)` and :meth:`CycleGAN.backward` returns :math:`F(b)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from typing import Any

import torch
from torch import Tensor, nn

from ..nn import UNet
from ..nn.patchgan import PatchGAN
from .base import TwoPlayerModel, register_model
from .gan_losses import OBJECTIVES, critic_objective, generator_objective
from .pix2pix import check_field_pair, check_patch_map, default_critic

__all__ = ["CycleGAN", "cycle_loss"]


def _l1(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).abs().flatten(1).mean(1)


def cycle_loss(
    forward: Callable[[Tensor], Tensor], backward: Callable[[Tensor], Tensor], x: Tensor
) -> Tensor:
    r"""Per-sample cycle-consistency :math:`\overline{|B(F(x)) - x|}` (mean over entries)."""
    return _l1(backward(forward(x)), x)


@register_model("cyclegan")
class CycleGAN(TwoPlayerModel):
    """Unpaired translation between fields ``(C_a, *grid)`` (domain A) and ``(C_b, *grid)`` (B).

    Args:
        sample_shape: ``(C_b, *grid)``, domain B (the translation's output).
        cond_shape: ``(C_a, *grid)``, domain A (the translation's input; same grid).
        channels: U-Net widths per level (both generators).
        critic_channels: PatchGAN widths (both critics).
        periodic: circular padding (periodic grids).
        objective: adversarial objective (``non_saturating``, ``minimax`` or ``wasserstein``).
        cycle_weight: λ_cyc.
        identity_weight: λ_id (0 when the channel counts differ).
        n_critic: critic steps per generator step.
        physics_weight: weight of a per-sample ``physics_penalty`` on ``G(a)`` (attribute).
        residual: generators of the form ``x + U-Net(x)`` (the identity before training);
            needs equal channel counts.

    Example:
        >>> model = CycleGAN([1, 16, 16], [1, 16, 16], channels=[8], critic_channels=[8, 8])
        >>> model.sample(2, torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 1, 16, 16])
    """

    example_shape = (1, 16, 12)
    example_cond_shape = (1, 16, 12)

    def __init__(
        self,
        sample_shape: Sequence[int],
        cond_shape: Sequence[int],
        channels: Sequence[int] = (32, 64),
        critic_channels: Sequence[int] = (64, 128, 256),
        periodic: bool = False,
        objective: str = "non_saturating",
        cycle_weight: float = 10.0,
        identity_weight: float = 5.0,
        n_critic: int = 1,
        physics_weight: float = 0.0,
        residual: bool = False,
    ) -> None:
        check_field_pair("cyclegan", sample_shape, cond_shape)
        if residual and int(sample_shape[0]) != int(cond_shape[0]):
            raise ValueError(
                f"cyclegan: residual=True needs equal channel counts, got domain A "
                f"{int(cond_shape[0])} and domain B {int(sample_shape[0])}"
            )
        if objective not in OBJECTIVES:
            raise ValueError(f"objective={objective!r}; expected one of {', '.join(OBJECTIVES)}")
        if min(cycle_weight, identity_weight, physics_weight) < 0 or n_critic < 1:
            raise ValueError("cyclegan: weights must be >= 0 and n_critic >= 1")
        super().__init__()
        c_b, *grid = (int(s) for s in sample_shape)
        c_a = int(cond_shape[0])
        self.sample_shape, self.cond_shape = tuple(int(s) for s in sample_shape), tuple(cond_shape)
        self.objective, self.n_critic = objective, int(n_critic)
        self.cycle_weight = float(cycle_weight)
        self.identity_weight = float(identity_weight) if c_a == c_b else 0.0
        self.physics_weight = float(physics_weight)
        self.residual = bool(residual)
        self.physics_penalty: Callable[[Tensor], Tensor] | None = None
        d = len(grid)
        self.gen_ab = UNet(d, c_a, c_b, channels, periodic=periodic)
        self.gen_ba = UNet(d, c_b, c_a, channels, periodic=periodic)
        self.critic_b = PatchGAN(d, c_b, critic_channels, periodic=periodic)
        self.critic_a = PatchGAN(d, c_a, critic_channels, periodic=periodic)
        check_patch_map("cyclegan", self.critic_b, grid)

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> CycleGAN:
        if cond_shape is None:
            raise ValueError("cyclegan translates domain A (the condition) to domain B")
        overrides = default_critic(sample_shape, overrides)
        return cls(sample_shape=sample_shape, cond_shape=cond_shape, **overrides)

    def _run(self, net: nn.Module, x: Tensor) -> Tensor:
        out = net(x, torch.zeros(x.shape[0], device=x.device, dtype=x.dtype))  # no time input
        return x + out if self.residual else out

    def forward_map(self, a: Tensor) -> Tensor:
        """``G(a)``: domain A → B."""
        return self._run(self.gen_ab, a)

    def backward(self, b: Tensor) -> Tensor:
        """``F(b)``: domain B → A."""
        return self._run(self.gen_ba, b)

    def generator_parameters(self) -> Iterator[nn.Parameter]:
        return chain(self.gen_ab.parameters(), self.gen_ba.parameters())

    def discriminator_parameters(self) -> Iterator[nn.Parameter]:
        return chain(self.critic_a.parameters(), self.critic_b.parameters())

    def _check(self, b: Tensor, a: Tensor | None) -> Tensor:
        if a is None or tuple(a.shape[1:]) != self.cond_shape:
            raise ValueError(
                f"cyclegan needs domain-A fields as cond, shape (B, *{self.cond_shape}); got "
                f"{None if a is None else tuple(a.shape)}"
            )
        if tuple(b.shape[1:]) != self.sample_shape:
            raise ValueError(
                f"cyclegan: x has shape {tuple(b.shape)}; expected (B, *{self.sample_shape})"
            )
        return a.to(b.dtype)

    @staticmethod
    def _logits(critic: nn.Module, x: Tensor) -> Tensor:
        return critic(x).flatten(1)  # (B, patches)

    def discriminator_loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        a = self._check(x, cond)
        with torch.no_grad():
            fake_b, fake_a = self.forward_map(a), self.backward(x)
        loss_b = critic_objective(
            self._logits(self.critic_b, x), self._logits(self.critic_b, fake_b), self.objective
        )
        loss_a = critic_objective(self._logits(self.critic_a, a),
                                  self._logits(self.critic_a, fake_a), self.objective)  # fmt: skip
        return loss_b.mean(1) + loss_a.mean(1)

    def generator_loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        a = self._check(x, cond)
        fake_b, fake_a = self.forward_map(a), self.backward(x)
        loss = generator_objective(self._logits(self.critic_b, fake_b), self.objective).mean(1)
        loss += generator_objective(self._logits(self.critic_a, fake_a), self.objective).mean(1)
        # The cycles F(G(a)) and G(F(b)), reusing the translations above.
        cycle = _l1(self.backward(fake_b), a) + _l1(self.forward_map(fake_a), x)
        loss = loss + self.cycle_weight * cycle
        if self.identity_weight:
            identity = _l1(self.forward_map(x), x) + _l1(self.backward(a), a)
            loss = loss + self.identity_weight * identity
        if self.physics_weight and self.physics_penalty is not None:
            loss = loss + self.physics_weight * self.physics_penalty(fake_b)
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
        """``G(a)`` for ``n`` domain-A fields ``cond`` (deterministic: no noise input, so
        ``generator`` is not drawn from)."""
        if options:
            raise TypeError(f"CycleGAN.sample: unknown options {sorted(options)}")
        if cond is None or cond.shape[0] != n:
            raise ValueError(f"cyclegan: sample needs {n} domain-A fields as cond")
        dtype = next(self.gen_ab.parameters()).dtype
        return self.forward_map(cond.to(self.device, dtype))

"""Per-sample adversarial objectives and Lipschitz penalties shared by every GAN family."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils import append_dims

__all__ = [
    "OBJECTIVES",
    "clip_weights",
    "critic_objective",
    "generator_objective",
    "gradient_penalty",
]

OBJECTIVES = ("minimax", "non_saturating", "wasserstein")

Critic = Callable[[Tensor, Tensor | None], Tensor]


def _check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r}; expected one of {', '.join(OBJECTIVES)}")


def critic_objective(real_scores: Tensor, fake_scores: Tensor, objective: str) -> Tensor:
    r"""Per-sample critic loss from critic outputs on paired real and generated samples.

    * ``minimax`` and ``non_saturating`` (Goodfellow et al. 2014) share the discriminator
      loss :math:`-\log\sigma(D(x)) - \log(1-\sigma(D(G(z))))`, written with ``softplus``
      on logits for stability.
    * ``wasserstein`` (Arjovsky et al. 2017): :math:`D(G(z)) - D(x)`, the negated
      Kantorovich–Rubinstein estimate of :math:`W_1`.

    Args:
        real_scores: critic logits on real samples, shape ``(B,)``.
        fake_scores: critic logits on generated samples, shape ``(B,)``.
        objective: one of ``OBJECTIVES``.
    """
    _check_objective(objective)
    if objective == "wasserstein":
        return fake_scores - real_scores
    return F.softplus(-real_scores) + F.softplus(fake_scores)


def generator_objective(fake_scores: Tensor, objective: str) -> Tensor:
    r"""Per-sample generator loss from critic outputs on generated samples.

    * ``minimax``: :math:`\log(1-\sigma(D(G(z)))) = -\mathrm{softplus}(D)`, the saddle-point
      objective of Goodfellow et al. (2014), which saturates when the critic wins;
    * ``non_saturating``: :math:`-\log\sigma(D(G(z))) = \mathrm{softplus}(-D)`, the same
      fixed point with strong gradients early in training;
    * ``wasserstein``: :math:`-D(G(z))`.
    """
    _check_objective(objective)
    if objective == "wasserstein":
        return -fake_scores
    if objective == "minimax":
        return -F.softplus(fake_scores)
    return F.softplus(-fake_scores)


def gradient_penalty(
    critic: Critic,
    real: Tensor,
    fake: Tensor,
    cond: Tensor | None = None,
    *,
    center: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""WGAN-GP penalty, one value per sample (Gulrajani et al. 2017, eq. 3).

    .. math::
        \hat x_i = \alpha_i x_i + (1-\alpha_i)\,\tilde x_i,\quad \alpha_i\sim U[0,1],\qquad
        P_i = \big(\lVert\nabla_{\hat x}D(\hat x_i)\rVert_2 - c\big)^2

    One :math:`\alpha` per sample (broadcast over every field dimension) and one gradient
    norm per sample over all of its entries, never a norm over the batch or per pixel. The
    per-sample gradients come from a single backward pass of ``D(x̂).sum()``, which is exact
    because the critic treats samples independently (no batch normalization in critics).
    The penalty is computed in float32 with autocast disabled, since the double backward it
    needs loses too much precision in half precision.

    Args:
        critic: ``critic(x, cond) -> (B,)`` scores.
        real: real batch ``(B, ...)``.
        fake: generated batch, same shape (detached by the caller or not, as needed).
        cond: conditioning passed unchanged to the critic.
        center: target norm :math:`c` (1 in the paper).
        generator: random generator for :math:`\alpha` (reproducible penalties).

    Returns:
        Tensor of shape ``(B,)``.
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {tuple(real.shape)} != fake {tuple(fake.shape)}")
    # Under no_grad (validation) the input gradient is still taken, and the result detached.
    keep_graph = torch.is_grad_enabled()
    with torch.enable_grad(), torch.autocast(device_type=real.device.type, enabled=False):
        real32, fake32 = real.float(), fake.float()
        alpha_device = generator.device if generator is not None else real.device
        alpha = torch.rand(real.shape[0], generator=generator, device=alpha_device)
        alpha = append_dims(alpha.to(real.device), real.ndim)  # (B, 1, ..., 1)
        mixed = (alpha * real32 + (1 - alpha) * fake32).detach().requires_grad_(True)
        scores = critic(mixed, None if cond is None else cond.float())
        (grad,) = torch.autograd.grad(scores.float().sum(), mixed, create_graph=keep_graph)
        norm = torch.linalg.vector_norm(grad.flatten(1), dim=1)  # (B,)
        penalty = (norm - center) ** 2
    return penalty if keep_graph else penalty.detach()


@torch.no_grad()
def clip_weights(module: nn.Module, clip_value: float) -> None:
    """Clamp every parameter of ``module`` to ``[-clip_value, clip_value]`` in place (WGAN)."""
    for param in module.parameters():
        param.clamp_(-clip_value, clip_value)

"""Exponential moving average of a model's weights, the copy usually sampled from."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

__all__ = ["EMA"]


class EMA:
    r"""A frozen copy of ``model`` whose parameters track an exponential moving average.

    .. math:: \bar\theta_k = \beta\,\bar\theta_{k-1} + (1 - \beta)\,\theta_k

    Buffers (e.g. normalization statistics) are copied, not averaged. Averaged weights give
    markedly better samples for diffusion and score models (Song & Ermon, "Improved
    Techniques for Training Score-Based Generative Models", 2020, arXiv:2006.09011).

    Example:
        >>> net = nn.Linear(2, 2)
        >>> ema = EMA(net, decay=0.9)
        >>> ema.update(net)
        >>> ema.module.weight.requires_grad
        False
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights."""
        for averaged, current in zip(self.module.parameters(), model.parameters(), strict=True):
            averaged.lerp_(current.detach(), 1.0 - self.decay)
        for averaged, current in zip(self.module.buffers(), model.buffers(), strict=True):
            averaged.copy_(current)

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged model's state dict (tensors only)."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the average from :meth:`state_dict`."""
        self.module.load_state_dict(state)

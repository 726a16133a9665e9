"""Elementwise bijections: soft-clipped affine maps and logit pre-processing."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import constraints
from torch.distributions.utils import _sum_rightmost

from ..utils import full_precision
from .base import Transform

__all__ = ["LOG_SCALE_BOUND", "AffineTransform", "LogitTransform", "soft_clip"]

#: Bound on affine log-scales: slopes stay in [1e-3, 1e3] (as zuko's monotonic affine).
LOG_SCALE_BOUND = -math.log(1e-3)


def soft_clip(a: Tensor, bound: float = LOG_SCALE_BOUND) -> Tensor:
    r"""Smoothly squash an unconstrained log-scale into :math:`(-\text{bound}, \text{bound})`.

    .. math:: \log s = \frac{a}{1 + |a| / \text{bound}}

    The identity near zero and bounded far out, so a conditioner that extrapolates wildly on
    inputs far outside the training range cannot produce an infinite or zero scale.
    """
    return a / (1 + a.abs() / bound)


def affine(x: Tensor, shift: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
    """``(x exp(log s) + shift, log s)`` with the soft-clipped log-scale ``log s``.

    Computed in at least float32: under autocast the conditioner's bf16 outputs are promoted,
    so the flow's state and its log-determinant stay float32.
    """
    x, shift, a = full_precision(x), full_precision(shift), full_precision(a)
    log_scale = soft_clip(a)
    return x * log_scale.exp() + shift, log_scale


def affine_inverse(y: Tensor, shift: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
    """The inverse of :func:`affine`: ``((y - shift) exp(-log s), -log s)``, in float32 or more."""
    y, shift, a = full_precision(y), full_precision(shift), full_precision(a)
    log_scale = soft_clip(a)
    return (y - shift) * (-log_scale).exp(), -log_scale


class AffineTransform(Transform):
    r"""Elementwise :math:`y = x \exp(\log s) + b` with a soft-clipped log-scale.

    Arguments:
        shift: The shift :math:`b`, broadcastable to the input.
        a: The unconstrained log-scale, squashed by :func:`soft_clip`.
        event_dim: Rightmost dimensions summed in the log-determinant.
    """

    def __init__(self, shift: Tensor, a: Tensor, event_dim: int = 0) -> None:
        super().__init__(event_dim)
        self.shift, self.a = shift, a

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y, log_scale = affine(x, self.shift, self.a)
        return y, _sum_rightmost(log_scale.expand_as(y), self.event_dim)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x, log_scale = affine_inverse(y, self.shift, self.a)
        return x, _sum_rightmost(log_scale.expand_as(x), self.event_dim)


class LogitTransform(Transform):
    r"""Logit pre-processing of data in the unit interval (Dinh et al., 2017, §4.1).

    .. math:: p = \alpha + (1 - 2\alpha)\,x, \qquad y = \log p - \log(1 - p),

    .. math:: \log\left|\frac{dy}{dx}\right| = \log(1 - 2\alpha) - \log p - \log(1 - p).

    ``alpha`` keeps the boundary values ``x = 0, 1`` finite. The density of ``x`` on
    :math:`[0, 1]^D` follows from the density of ``y`` by this log-determinant.

    References:
        Density estimation using Real NVP (Dinh, Sohl-Dickstein and Bengio, 2017),
        https://arxiv.org/abs/1605.08803
    """

    def __init__(self, alpha: float = 1e-6, event_dim: int = 0) -> None:
        if not 0 <= alpha < 0.5:
            raise ValueError(f"LogitTransform: alpha must lie in [0, 0.5), got {alpha}")
        super().__init__(event_dim)
        self.alpha = alpha
        self.domain = constraints.independent(constraints.unit_interval, event_dim)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        p = self.alpha + (1 - 2 * self.alpha) * x
        log_p, log_q = torch.log(p), torch.log1p(-p)
        ladj = math.log1p(-2 * self.alpha) - log_p - log_q
        return log_p - log_q, _sum_rightmost(ladj, self.event_dim)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        p = torch.sigmoid(y)
        x = (p - self.alpha) / (1 - 2 * self.alpha)
        # log p + log(1 - p) = -softplus(-y) - softplus(y), stable for large |y|.
        ladj = -torch.nn.functional.softplus(-y) - torch.nn.functional.softplus(y)
        ladj = ladj - math.log1p(-2 * self.alpha)
        return x, _sum_rightmost(ladj, self.event_dim)

"""Dequantization of discrete data for continuous density models: uniform and variational."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution

__all__ = ["UniformDequantization", "VariationalDequantization", "dequantized_log_likelihood"]


def _check_levels(x: Tensor, levels: int) -> None:
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    if x.is_floating_point() and not torch.equal(x, x.round()):
        raise ValueError("x: dequantization expects integer values (counts, pixel levels)")
    if x.min() < 0 or x.max() > levels - 1:
        raise ValueError(
            f"x: values must lie in [0, {levels - 1}], got [{x.min().item()}, {x.max().item()}]"
        )


class UniformDequantization(nn.Module):
    r"""Uniform dequantization (Theis, van den Oord and Bethge, 2016).

    Integer data :math:`x \in \{0, \dots, K-1\}^D` becomes :math:`y = (x + u)/K \in [0, 1)^D`
    with :math:`u \sim \mathcal{U}[0, 1)^D`, so :math:`\log q(u \mid x) = 0`.

    References:
        A note on the evaluation of generative models (Theis, van den Oord and Bethge, 2016),
        https://arxiv.org/abs/1511.01844

    Example:
        >>> y, log_q = UniformDequantization(levels=256)(torch.tensor([[0, 255]]))
        >>> bool(((0 <= y) & (y < 1)).all()), log_q.tolist()
        (True, [0.0])
    """

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(y, log q(u | x))`` for integer ``x`` of shape ``(B, ...)``."""
        _check_levels(x, self.levels)
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        u = torch.rand(x.shape, generator=generator, dtype=dtype).to(x.device)
        return (x + u) / self.levels, u.new_zeros(x.shape[0])


class VariationalDequantization(nn.Module):
    r"""Variational dequantization with a conditional flow (Ho et al., 2019, §3.1).

    The noise is drawn from a learned :math:`q(u \mid x)` on :math:`(0, 1)^D`: a conditional
    flow gives :math:`v \sim q_v(\cdot \mid x)` on :math:`\mathbb{R}^D` and
    :math:`u = \sigma(v)`, so

    .. math:: \log q(u \mid x) = \log q_v(v \mid x) - \textstyle\sum_i \log \sigma'(v_i),
              \qquad \log\sigma'(v) = -\operatorname{softplus}(-v) - \operatorname{softplus}(v).

    Arguments:
        flow: A conditional density model whose ``flow(c)`` returns a
            :class:`torch.distributions.Distribution` over the data shape with ``rsample``
            (e.g. :class:`physgen.models.flows.MAF` with ``cond_shape`` equal to the data
            shape, or :class:`physgen.models.flows_glow.Glow` for fields).
        levels: Number of levels :math:`K`.

    The context handed to the flow is :math:`c = 2x/(K-1) - 1 \in [-1, 1]`.

    References:
        Flow++: Improving Flow-Based Generative Models with Variational Dequantization and
        Architecture Design (Ho, Chen, Srinivas, Duan and Abbeel, 2019),
        https://arxiv.org/abs/1902.00275
    """

    def __init__(self, flow: Callable[[Tensor], Distribution], levels: int) -> None:
        super().__init__()
        self.flow, self.levels = flow, levels

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(y, log q(u | x))``, reparameterised, so the bound trains the flow too.

        ``generator`` is accepted for a uniform signature; the flow draws its noise from
        torch's global generator.
        """
        _check_levels(x, self.levels)
        param = next(iter(self.flow.parameters()))  # type: ignore[attr-defined]
        xf = x.to(param.dtype)
        dist = self.flow(2 * xf / (self.levels - 1) - 1)
        v = dist.rsample()
        log_sigmoid_grad = -F.softplus(-v) - F.softplus(v)
        log_q = dist.log_prob(v) - log_sigmoid_grad.flatten(1).sum(-1)
        return (xf + torch.sigmoid(v)) / self.levels, log_q


def dequantized_log_likelihood(
    log_prob: Callable[[Tensor], Tensor],
    x: Tensor,
    dequantizer: UniformDequantization | VariationalDequantization,
    samples: int = 1,
) -> Tensor:
    r"""A lower bound on the discrete log-likelihood :math:`\log P(x)` in nats, shape ``(B,)``.

    With a continuous density :math:`p(y)` on :math:`[0, 1)^D` and :math:`y = (x + u)/K`,
    :math:`P(x) = \int_{[0,1)^D} p((x + u)/K)\, K^{-D}\, du`, and by Jensen's inequality

    .. math:: \log P(x) \ge \mathbb{E}_{u \sim q(\cdot \mid x)}
              \big[\log p((x + u)/K) - \log q(u \mid x)\big] - D \log K,

    with equality when :math:`q(u \mid x) \propto p((x + u)/K)`. The expectation is estimated
    with ``samples`` draws. Train with ``-dequantized_log_likelihood(...)`` as the loss; report
    bits/dim as ``physgen.metrics.bits_per_dim(bound, D)`` (the ``D log K`` offset is already
    in the bound).

    Arguments:
        log_prob: Log-density of the continuous model at ``y`` (e.g. ``model.log_prob``).
        x: Integer data ``(B, ...)`` in ``[0, K-1]``.
        dequantizer: :class:`UniformDequantization` or :class:`VariationalDequantization`.
        samples: Monte Carlo draws of ``u`` per datum.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    total: Tensor | float = 0.0
    for _ in range(samples):
        y, log_q = dequantizer(x)
        total = total + log_prob(y) - log_q
    return total / samples - x[0].numel() * math.log(dequantizer.levels)

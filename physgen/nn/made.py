"""MADE: a masked MLP whose outputs for feature i depend only on the features before i."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mlp import activation

__all__ = ["MADE", "MaskedLinear"]


class MaskedLinear(nn.Linear):
    r"""Linear layer with a fixed binary connectivity mask: :math:`y = (W \odot M) x + b`."""

    def __init__(self, mask: Tensor) -> None:
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    r"""Masked autoencoder for distribution estimation (Germain et al., 2015).

    Input feature ``i`` gets degree :math:`m(i) = \text{order}[i] + 1`; hidden unit ``k`` of
    every layer gets degree :math:`1 + (k \bmod \max(D - 1, 1))` (sequential degrees), or
    :math:`k \bmod D` with a context, whose inputs get degree 0 (so the first feature's
    outputs depend on the context too). Connections keep
    :math:`m_\text{out} \ge m_\text{in}` between hidden layers and
    :math:`m_\text{out} > m_\text{in}` into the outputs, so output ``(p, i)`` depends only
    on the features that precede ``i`` in ``order`` (and on the context).

    Arguments:
        features: Number of autoregressive features ``D``.
        params: Outputs per feature ``P`` (2 for an affine map: shift and log-scale).
        context: Number of context features (0 for none).
        hidden: Hidden layer widths.
        act: Activation name (see :data:`physgen.nn.mlp.ACTIVATIONS`).
        order: Position of each feature in the autoregressive order (a permutation of
            ``range(D)``); the default is the index order, ``reversed`` orders alternate the
            direction between stacked layers without a permutation op.

    Returns from ``forward(x, c)``: a tensor ``(..., P, D)``.

    References:
        MADE: Masked Autoencoder for Distribution Estimation (Germain, Gregor, Murray and
        Larochelle, 2015), https://arxiv.org/abs/1502.03509

    Example:
        >>> net = MADE(3, params=2, hidden=(16,))
        >>> net(torch.zeros(5, 3)).shape
        torch.Size([5, 2, 3])
    """

    def __init__(
        self,
        features: int,
        params: int = 2,
        context: int = 0,
        hidden: Sequence[int] = (128, 128),
        act: str = "relu",
        order: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        order_t = torch.arange(features) if order is None else torch.as_tensor(list(order))
        if sorted(order_t.tolist()) != list(range(features)):
            raise ValueError(
                f"MADE: order must be a permutation of range({features}), got {order_t.tolist()}"
            )
        self.features, self.params, self.context = features, params, context
        degrees_in = torch.cat([order_t + 1, torch.zeros(context, dtype=torch.long)])
        degrees = [degrees_in]
        for width in hidden:
            if context:  # degree-0 units see only the context, so every output can see it
                deg = torch.arange(width) % features
            else:
                deg = torch.arange(width) % max(features - 1, 1) + min(features - 1, 1)
            # Units sorted by degree: those a given output needs form a prefix (see `step`).
            degrees.append(deg.sort().values)
        layers: list[nn.Module] = []
        for d_in, d_out in pairwise(degrees):
            layers += [MaskedLinear(d_out[:, None] >= d_in[None, :]), activation(act)]
        d_out = (order_t + 1).repeat(params)  # output (p, i) at index p * D + i
        layers.append(MaskedLinear(d_out[:, None] > degrees[-1][None, :]))
        self.net = nn.Sequential(*layers)
        # For output position k of the order: hidden units of degree <= k per layer, and the
        # feature index; `step` evaluates only that sub-network.
        self._prefix = [[int((deg <= k).sum()) for deg in degrees[1:]] for k in range(features)]
        self._feature_at = torch.argsort(order_t).tolist()

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if context is not None:
            x = torch.cat([x, context.expand(*x.shape[:-1], context.shape[-1])], dim=-1)
        out = self.net(x)
        return out.unflatten(-1, (self.params, self.features))  # (..., P, D)

    def step(self, x: Tensor, k: int, context: Tensor | None = None) -> tuple[int, Tensor]:
        """The outputs ``(..., P)`` of the ``k``-th feature in the order, and its index.

        Output ``k`` depends only on hidden units of degree ``<= k``; with units sorted by
        degree these are a prefix of every layer, so this evaluates a sub-network (a small
        one for early ``k``) and returns exactly ``forward(x, context)[..., :, i]``. It makes
        the ``D``-pass direction of an autoregressive flow about twice as cheap.
        """
        if context is not None:
            x = torch.cat([x, context.expand(*x.shape[:-1], context.shape[-1])], dim=-1)
        i = self._feature_at[k]
        prefix = self._prefix[k]
        linears = [m for m in self.net if isinstance(m, MaskedLinear)]
        acts = [m for m in self.net if not isinstance(m, MaskedLinear)]
        h, width_in = x, x.shape[-1]
        for lin, act, width in zip(linears[:-1], acts, prefix, strict=True):
            weight = lin.weight[:width, :width_in] * lin.mask[:width, :width_in]
            h = act(F.linear(h, weight, lin.bias[:width]))
            width_in = width
        last = linears[-1]
        rows = torch.arange(self.params, device=x.device) * self.features + i
        weight = last.weight[rows, :width_in] * last.mask[rows, :width_in]
        return i, F.linear(h, weight, last.bias[rows])

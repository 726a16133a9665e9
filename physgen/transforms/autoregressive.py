"""Masked affine autoregressive bijections (MAF direction and, through ``.inv``, IAF)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .base import Transform
from .elementwise import affine, affine_inverse

__all__ = ["MaskedAutoregressiveTransform"]


class MaskedAutoregressiveTransform(Transform):
    r"""Affine autoregressive map whose parameters come from one masked network pass.

    .. math:: y_i = x_i \exp(\log s_i(x_{<i})) + t_i(x_{<i}),
              \qquad \log|\det J| = \textstyle\sum_i \log s_i(x_{<i}),

    where ``net(x)`` returns ``(t, a)`` (shapes ``(..., D)``) with entry ``i`` depending only
    on the entries that precede ``i`` in the network's order (a MADE,
    :class:`physgen.nn.made.MADE`). The forward map costs **one** pass; the inverse costs
    ``passes`` (= ``D`` for a fully autoregressive net): pass ``k`` fixes the ``k``-th entry
    in the order. If ``step(x, k)`` is given (returning the index ``i`` of the ``k``-th feature
    in the order and its parameters ``(..., 2)``, e.g. :meth:`physgen.nn.made.MADE.step`),
    the inverse evaluates only what each feature needs.

    Used data → noise it is a MAF layer (one-pass density, ``D``-pass sampling); its inverse
    ``.inv`` used data → noise is an IAF layer (one-pass sampling, ``D``-pass density).

    References:
        Masked Autoregressive Flow for Density Estimation (Papamakarios, Pavlakou and Murray,
        2017), https://arxiv.org/abs/1705.07057;
        Improved Variational Inference with Inverse Autoregressive Flow (Kingma et al., 2016),
        https://arxiv.org/abs/1606.04934
    """

    def __init__(
        self,
        net: Callable[[Tensor], tuple[Tensor, Tensor]],
        passes: int,
        step: Callable[[Tensor, int], tuple[int, Tensor]] | None = None,
    ) -> None:
        super().__init__(event_dim=1)
        self.net, self.passes, self.step = net, passes, step

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        shift, a = self.net(x)
        y, log_scale = affine(x, shift, a)
        return y, log_scale.sum(-1)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.step is not None:
            return self._inverse_by_steps(y)
        x = y.new_zeros(y.shape)
        for _ in range(self.passes):
            shift, a = self.net(x)
            x, log_scale = affine_inverse(y, shift, a)
        return x, log_scale.sum(-1)

    def _inverse_by_steps(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """The inverse one feature at a time, from ``step(x, k) -> (i, (t_i, a_i))``."""
        assert self.step is not None
        x = y.new_zeros(y.shape)
        ladj = y.new_zeros(y.shape[:-1])
        for k in range(self.passes):
            i, params = self.step(x, k)
            shift, a = params.unbind(-1)
            xi, log_scale = affine_inverse(y[..., i], shift, a)
            # Out of place, so rsample stays differentiable.
            x = x.index_copy(-1, torch.tensor([i], device=y.device), xi.unsqueeze(-1))
            ladj = ladj + log_scale
        return x, ladj

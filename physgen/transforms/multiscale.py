"""One scale of a multi-scale flow for fields of any grid size (squeeze, factor out, recurse)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Transform
from .structural import SqueezeTransform

__all__ = ["MultiScaleTransform"]


class MultiScaleTransform(Transform):
    r"""One level of a RealNVP/Glow multi-scale architecture, exactly invertible for any grid.

    On a field ``x`` of shape ``(..., C, n_1, ..., n_d)``:

    1. ``pre`` acts at the current resolution (e.g. checkerboard couplings, which work for
       any grid size and touch every site, odd edges included);
    2. along every axis of odd size, the trailing slice (one row/column) is **factored out**,
       so the rest has even sizes: a partition of the entries, :math:`|\det J| = 1`;
    3. the even part is squeezed ``(C, n) -> (2^d C, n/2)``, ``post`` acts on it (ActNorm,
       1×1 convolutions, channel couplings), then half of the channels are factored out and
       ``next`` (the coarser level) transforms the other half.

    The factored-out parts are put back in place (un-squeezed, slices re-attached), so the
    output has the input's shape and a standard normal base covers every factored-out
    entry: the map is a composition of bijections and

    .. math:: \log|\det J| = \log|\det J_{\text{pre}}| + \log|\det J_{\text{post}}|
              + \log|\det J_{\text{next}}|.

    A level with ``post=None`` is the coarsest one (only ``pre``).

    References:
        Density estimation using Real NVP (Dinh, Sohl-Dickstein and Bengio, 2017), §3.6;
        Glow (Kingma and Dhariwal, 2018), https://arxiv.org/abs/1807.03039
    """

    def __init__(
        self,
        spatial_dims: int,
        pre: Transform,
        post: Transform | None = None,
        next: Transform | None = None,
    ) -> None:
        if post is None and next is not None:
            raise ValueError("MultiScaleTransform: a level without `post` cannot have `next`")
        super().__init__(1 + spatial_dims)
        self.d, self.pre, self.post, self.next = spatial_dims, pre, post, next
        self.squeeze = SqueezeTransform(spatial_dims)

    def _peel(self, x: Tensor) -> tuple[Tensor, list[Tensor | None]]:
        tails: list[Tensor | None] = []
        for axis in range(-self.d, 0):
            n = x.shape[axis]
            if n % 2:
                tails.append(x.narrow(axis, n - 1, 1))
                x = x.narrow(axis, 0, n - 1)
            else:
                tails.append(None)
        return x, tails

    def _unpeel(self, x: Tensor, tails: list[Tensor | None]) -> Tensor:
        for axis, tail in zip(reversed(range(-self.d, 0)), reversed(tails), strict=True):
            if tail is not None:
                x = torch.cat([x, tail], dim=axis)
        return x

    def _coarse(self, y: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        """``post`` then ``next`` on the squeezed field (or their inverses, in reverse)."""
        assert self.post is not None
        ladj = y.new_zeros(y.shape[: y.ndim - self.event_dim])
        if not inverse:
            y, ladj = self.post.call_and_ladj(y)
        if self.next is not None:
            c = y.shape[-1 - self.d]
            out, rest = y.split([c // 2, c - c // 2], dim=-1 - self.d)
            rest, l_next = (
                self.next.inverse_and_ladj(rest) if inverse else self.next.call_and_ladj(rest)
            )
            y, ladj = torch.cat([out, rest], dim=-1 - self.d), ladj + l_next
        if inverse:
            y, l_post = self.post.inverse_and_ladj(y)
            ladj = ladj + l_post
        return y, ladj

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x, ladj = self.pre.call_and_ladj(x)
        if self.post is None:
            return x, ladj
        even, tails = self._peel(x)
        y, _ = self.squeeze.call_and_ladj(even)
        y, l_coarse = self._coarse(y, inverse=False)
        y, _ = self.squeeze.inverse_and_ladj(y)
        return self._unpeel(y, tails), ladj + l_coarse

    def inverse_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:
        ladj = z.new_zeros(z.shape[: z.ndim - self.event_dim])
        if self.post is not None:
            even, tails = self._peel(z)
            y, _ = self.squeeze.call_and_ladj(even)
            y, ladj = self._coarse(y, inverse=True)
            y, _ = self.squeeze.inverse_and_ladj(y)
            z = self._unpeel(y, tails)
        x, l_pre = self.pre.inverse_and_ladj(z)
        return x, ladj + l_pre

"""Coupling bijections: one part of the input parametrises an invertible map of the rest."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .base import Transform
from .elementwise import affine, affine_inverse
from .spline import rq_spline

__all__ = [
    "AffineCouplingTransform",
    "MaskedAffineCouplingTransform",
    "SplineCouplingTransform",
    "checkerboard_mask",
]

Conditioner = Callable[[Tensor], tuple[Tensor, ...]]


def checkerboard_mask(
    grid: tuple[int, ...], parity: int, device: torch.device | None = None
) -> Tensor:
    """Boolean mask over a grid, True where the sum of the indices has the given parity."""
    index = sum(
        torch.arange(n, device=device).reshape(*([1] * k), n, *([1] * (len(grid) - k - 1)))
        for k, n in enumerate(grid)
    )
    return (torch.as_tensor(index) % 2) == parity


class _SplitCoupling(Transform):
    """Shared split/merge of a coupling along one event dimension (``dim`` < 0)."""

    def __init__(
        self,
        conditioner: Conditioner,
        split: int,
        dim: int = -1,
        event_dim: int = 1,
        keep_first: bool = True,
    ) -> None:
        if not -event_dim <= dim < 0:
            raise ValueError(
                f"{type(self).__name__}: dim must lie in [-{event_dim}, -1], got {dim}"
            )
        super().__init__(event_dim)
        self.conditioner, self.split, self.dim, self.keep_first = (
            conditioner,
            split,
            dim,
            keep_first,
        )

    def _parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        first, second = x.split([self.split, x.shape[self.dim] - self.split], dim=self.dim)
        return (first, second) if self.keep_first else (second, first)

    def _merge(self, kept: Tensor, changed: Tensor) -> Tensor:
        parts = (kept, changed) if self.keep_first else (changed, kept)
        return torch.cat(parts, dim=self.dim)

    def _reduce(self, ladj: Tensor) -> Tensor:
        return ladj.flatten(ladj.ndim - self.event_dim).sum(-1)

    def _map(self, params: tuple[Tensor, ...], x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        kept, changed = self._parts(x)
        changed, ladj = self._map(self.conditioner(kept), changed, inverse=False)
        return self._merge(kept, changed), self._reduce(ladj)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        kept, changed = self._parts(y)
        changed, ladj = self._map(self.conditioner(kept), changed, inverse=True)
        return self._merge(kept, changed), self._reduce(ladj)


class AffineCouplingTransform(_SplitCoupling):
    r"""Affine coupling (Dinh et al., 2017): split :math:`x = (x_a, x_b)` along ``dim``,

    .. math:: y_a = x_a, \qquad y_b = x_b \exp(\log s(x_a)) + t(x_a),
              \qquad \log|\det J| = \textstyle\sum \log s(x_a),

    with the soft-clipped log-scale of :func:`~physgen.transforms.elementwise.soft_clip`.
    ``conditioner(x_a)`` returns ``(t, a)``, each shaped like :math:`x_b`. With ``dim=-1`` on
    vectors it is a half mask (alternate ``keep_first`` between layers); with
    ``dim=-(1+d)`` on fields ``(..., C, *grid)`` it is a channel mask.

    References:
        Density estimation using Real NVP (Dinh, Sohl-Dickstein and Bengio, 2017),
        https://arxiv.org/abs/1605.08803
    """

    def _map(self, params: tuple[Tensor, ...], x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        shift, a = params
        return affine_inverse(x, shift, a) if inverse else affine(x, shift, a)


class SplineCouplingTransform(_SplitCoupling):
    r"""Rational-quadratic spline coupling (Durkan et al., 2019) with identity tails.

    :math:`y_b = g_{\theta(x_a)}(x_b)` with :math:`g` the monotone rational-quadratic spline of
    :func:`~physgen.transforms.spline.rq_spline` on :math:`[-B, B]` and the identity outside.
    ``conditioner(x_a)`` returns ``(widths, heights, derivatives)`` of shapes
    ``(*x_b.shape, K)``, ``(*x_b.shape, K)`` and ``(*x_b.shape, K - 1)``.

    References:
        Neural Spline Flows (Durkan, Bekasov, Murray and Papamakarios, 2019),
        https://arxiv.org/abs/1906.04032
    """

    def __init__(
        self,
        conditioner: Conditioner,
        split: int,
        dim: int = -1,
        event_dim: int = 1,
        keep_first: bool = True,
        bound: float = 5.0,
    ) -> None:
        super().__init__(conditioner, split, dim, event_dim, keep_first)
        self.bound = bound

    def _map(self, params: tuple[Tensor, ...], x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        widths, heights, derivatives = params
        return rq_spline(x, widths, heights, derivatives, bound=self.bound, inverse=inverse)


class MaskedAffineCouplingTransform(Transform):
    r"""Affine coupling with a fixed binary mask :math:`m` (e.g. a checkerboard over a grid).

    .. math:: y = m \odot x + (1 - m) \odot \big(x \exp(\log s(m \odot x)) + t(m \odot x)\big)

    ``conditioner(m ⊙ x)`` returns ``(t, a)`` shaped like ``x``; only the entries where the
    mask is False change, so :math:`\log|\det J| = \sum_{m = 0} \log s`.

    References:
        Density estimation using Real NVP (Dinh, Sohl-Dickstein and Bengio, 2017),
        https://arxiv.org/abs/1605.08803
    """

    def __init__(self, conditioner: Conditioner, mask: Tensor, event_dim: int) -> None:
        super().__init__(event_dim)
        self.conditioner, self.mask = conditioner, mask

    def _apply(self, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        mask = self.mask.to(x.device)
        kept = x * mask
        shift, a = self.conditioner(kept)
        changed, log_scale = affine_inverse(x, shift, a) if inverse else affine(x, shift, a)
        y = torch.where(mask, x, changed)
        ladj = torch.where(mask, 0.0, log_scale.expand_as(x))
        return y, ladj.flatten(ladj.ndim - self.event_dim).sum(-1)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._apply(x, inverse=False)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._apply(y, inverse=True)

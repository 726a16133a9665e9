"""The physgen bijection base: torch's Transform contract plus a joint (y, log|det J|) call."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import constraints
from torch.distributions import transforms as torch_transforms
from torch.distributions.utils import _sum_rightmost

__all__ = ["ComposeTransform", "InverseTransform", "Transform"]


class Transform(torch_transforms.Transform):
    r"""A bijection :math:`y = f(x)` honouring :class:`torch.distributions.Transform`.

    Subclasses implement the two joint methods

    * ``call_and_ladj(x) -> (y, log|det ∂y/∂x|)`` and
    * ``inverse_and_ladj(y) -> (x, log|det ∂x/∂y|)``,

    summed over the ``event_dim`` rightmost dimensions, so a flow pays for one pass per
    direction. ``_call``, ``_inverse`` and ``log_abs_det_jacobian`` follow from them (closed-form
    subclasses may override those too), and ``inv`` returns a physgen :class:`InverseTransform`,
    which keeps the joint methods. Nothing is patched onto torch.

    Arguments:
        event_dim: Number of rightmost dimensions forming one event (1 for vectors ``(B, D)``,
            ``1 + d`` for ``d``-dimensional fields ``(B, C, *grid)``).
        cache_size: As in torch (0 or 1).
    """

    bijective = True
    sign = +1

    def __init__(self, event_dim: int, cache_size: int = 0) -> None:
        super().__init__(cache_size=cache_size)
        self.domain = constraints.independent(constraints.real, event_dim)
        self.codomain = constraints.independent(constraints.real, event_dim)

    @property
    def inv(self) -> Transform:
        if self._inv is None:
            self._inv = InverseTransform(self)
        return self._inv

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(f(x), log|det J_f(x)|)`` in one pass; the log-det has the batch shape of ``x``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement call_and_ladj")

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(f⁻¹(y), log|det J_{f⁻¹}(y)|)`` in one pass."""
        raise NotImplementedError(f"{type(self).__name__} does not implement inverse_and_ladj")

    def _call(self, x: Tensor) -> Tensor:
        return self.call_and_ladj(x)[0]

    def _inverse(self, y: Tensor) -> Tensor:
        return self.inverse_and_ladj(y)[0]

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self.call_and_ladj(x)[1]


class InverseTransform(Transform):
    """The inverse :math:`f^{-1}` of a physgen :class:`Transform`; ``t.inv.inv is t``."""

    def __init__(self, transform: Transform) -> None:
        super().__init__(transform.event_dim, cache_size=transform._cache_size)
        self._inv = transform
        self.domain = transform.codomain
        self.codomain = transform.domain

    @property
    def inv(self) -> Transform:
        return self._inv

    @property
    def sign(self) -> int:  # type: ignore[override]
        return self._inv.sign

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._inv.inverse_and_ladj(x)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._inv.call_and_ladj(y)

    def forward_shape(self, shape: torch.Size) -> torch.Size:
        return self._inv.inverse_shape(shape)

    def inverse_shape(self, shape: torch.Size) -> torch.Size:
        return self._inv.forward_shape(shape)

    def __repr__(self) -> str:
        return f"InverseTransform({self._inv!r})"


class ComposeTransform(Transform):
    r"""The composition :math:`f = f_n \circ \dots \circ f_1`, with log-determinants summed.

    .. math:: \log|\det J_f(x)| = \sum_k \log|\det J_{f_k}(x_{k-1})|

    Parts with a smaller ``event_dim`` than the composition (elementwise maps) have their
    log-determinants summed over the remaining rightmost dimensions.
    """

    def __init__(self, transforms: Sequence[Transform], event_dim: int | None = None) -> None:
        transforms = list(transforms)
        if event_dim is None:
            event_dim = max((t.event_dim for t in transforms), default=0)
        for t in transforms:
            if t.event_dim > event_dim:
                raise ValueError(
                    f"ComposeTransform: part {t!r} has event_dim {t.event_dim} > {event_dim}"
                )
        super().__init__(event_dim)
        self.parts = transforms

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        total: Tensor | float = 0.0
        for t in self.parts:
            x, ladj = t.call_and_ladj(x)
            total = total + _sum_rightmost(ladj, self.event_dim - t.event_dim)
        return x, _as_batch_ladj(total, x, self.event_dim)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        total: Tensor | float = 0.0
        for t in reversed(self.parts):
            y, ladj = t.inverse_and_ladj(y)
            total = total + _sum_rightmost(ladj, self.event_dim - t.event_dim)
        return y, _as_batch_ladj(total, y, self.event_dim)

    def forward_shape(self, shape: torch.Size) -> torch.Size:
        for t in self.parts:
            shape = t.forward_shape(shape)
        return shape

    def inverse_shape(self, shape: torch.Size) -> torch.Size:
        for t in reversed(self.parts):
            shape = t.inverse_shape(shape)
        return shape

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(t) for t in self.parts)
        return f"ComposeTransform(\n  {inner}\n)"


def _as_batch_ladj(total: Tensor | float, x: Tensor, event_dim: int) -> Tensor:
    """A log-determinant of the batch shape of ``x`` (an empty composition gives zeros)."""
    batch = x.shape[: x.ndim - event_dim]
    if isinstance(total, Tensor):
        return total.expand(batch)
    return x.new_zeros(batch)

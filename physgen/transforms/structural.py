"""Volume-preserving and channel-mixing bijections: permutations, squeeze, ActNorm, 1×1 conv."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..utils import fp32, full_precision
from .base import Transform

__all__ = [
    "ActNormTransform",
    "Conv1x1Transform",
    "PermutationTransform",
    "SqueezeTransform",
]


def _batch_zeros(x: Tensor, event_dim: int) -> Tensor:
    return x.new_zeros(x.shape[: x.ndim - event_dim])


class PermutationTransform(Transform):
    r"""Reorder the entries along the first event dimension: :math:`y_i = x_{\pi(i)}`.

    For vectors ``(..., D)`` (``event_dim=1``) this permutes features; for fields
    ``(..., C, *grid)`` (``event_dim=1+d``) it permutes channels. :math:`|\det J| = 1`.
    """

    def __init__(self, perm: Tensor, event_dim: int = 1) -> None:
        super().__init__(event_dim)
        perm = torch.as_tensor(perm, dtype=torch.long)
        if not torch.equal(perm.sort().values, torch.arange(len(perm), device=perm.device)):
            raise ValueError(f"PermutationTransform: perm is not a permutation: {perm.tolist()}")
        self.perm, self.inv_perm = perm, torch.argsort(perm)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = x.index_select(-self.event_dim, self.perm.to(x.device))
        return y, _batch_zeros(x, self.event_dim)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x = y.index_select(-self.event_dim, self.inv_perm.to(y.device))
        return x, _batch_zeros(y, self.event_dim)


class SqueezeTransform(Transform):
    r"""Space-to-channel reshape of a ``d``-dimensional field (Dinh et al., 2017, §3.6).

    ``(..., C, n_1, ..., n_d) -> (..., C·f^d, n_1/f, ..., n_d/f)``: each ``f^d`` block of
    neighbouring sites becomes ``f^d`` channels. A permutation of entries, so
    :math:`\log|\det J| = 0`. Every grid size must be divisible by ``factor``.
    """

    def __init__(self, spatial_dims: int, factor: int = 2) -> None:
        if spatial_dims < 1 or factor < 2:
            raise ValueError(
                f"SqueezeTransform: need spatial_dims >= 1 and factor >= 2, got "
                f"{spatial_dims}, {factor}"
            )
        super().__init__(1 + spatial_dims)
        self.d, self.f = spatial_dims, factor

    def forward_shape(self, shape: torch.Size) -> torch.Size:
        *lead, c = shape[: len(shape) - self.d]
        grid = shape[len(shape) - self.d :]
        self._check(grid)
        return torch.Size([*lead, c * self.f**self.d, *(n // self.f for n in grid)])

    def inverse_shape(self, shape: torch.Size) -> torch.Size:
        *lead, c = shape[: len(shape) - self.d]
        grid = shape[len(shape) - self.d :]
        return torch.Size([*lead, c // self.f**self.d, *(n * self.f for n in grid)])

    def _check(self, grid: tuple[int, ...]) -> None:
        if any(n % self.f for n in grid):
            raise ValueError(
                f"SqueezeTransform: grid {tuple(grid)} is not divisible by factor {self.f}"
            )

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        d, f = self.d, self.f
        lead, c, grid = x.shape[: -1 - d], x.shape[-1 - d], x.shape[x.ndim - d :]
        self._check(grid)
        L = len(lead)
        split = [s for n in grid for s in (n // f, f)]
        y = x.reshape(*lead, c, *split)  # (..., C, n1/f, f, n2/f, f, ...)
        coarse = [L + 1 + 2 * k for k in range(d)]
        fine = [L + 2 + 2 * k for k in range(d)]
        y = y.permute(*range(L), L, *fine, *coarse)  # (..., C, f, f, ..., n1/f, n2/f, ...)
        y = y.reshape(*lead, c * f**d, *(n // f for n in grid))
        return y, _batch_zeros(x, self.event_dim)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        d, f = self.d, self.f
        lead, cf, grid = y.shape[: -1 - d], y.shape[-1 - d], y.shape[y.ndim - d :]
        if cf % f**d:
            raise ValueError(f"SqueezeTransform: {cf} channels are not divisible by {f**d}")
        L, c = len(lead), cf // f**d
        x = y.reshape(*lead, c, *([f] * d), *grid)  # (..., C, f, f, ..., m1, m2, ...)
        order = [i for k in range(d) for i in (L + 1 + d + k, L + 1 + k)]
        x = x.permute(*range(L), L, *order)  # (..., C, m1, f, m2, f, ...)
        x = x.reshape(*lead, c, *(n * f for n in grid))
        return x, _batch_zeros(y, self.event_dim)


class ActNormTransform(Transform):
    r"""Per-channel affine normalisation (Kingma and Dhariwal, 2018, §3.1).

    .. math:: y = (x - \mu) \exp(-\log\sigma), \qquad
              \log|\det J| = -N \sum_c \log\sigma_c,

    with :math:`N` the number of sites per channel. ``loc`` and ``log_scale`` broadcast
    against the event (shape ``(D,)`` for vectors, ``(C, 1, ..., 1)`` for fields).

    Data-dependent initialisation: if ``initialize`` is given, the first forward call hands it
    the batch, and it returns the ``(loc, log_scale)`` to use (the batch mean and log-standard
    deviation per channel, which make the first output zero-mean with unit variance).

    References:
        Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma and Dhariwal, 2018),
        https://arxiv.org/abs/1807.03039
    """

    def __init__(
        self,
        loc: Tensor,
        log_scale: Tensor,
        event_dim: int,
        initialize: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
    ) -> None:
        super().__init__(event_dim)
        self.loc, self.log_scale, self.initialize = loc, log_scale, initialize

    def _sites(self, x: Tensor) -> int:
        event = x.shape[x.ndim - self.event_dim :]
        return event.numel() // self.log_scale.numel()

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.initialize is not None:
            self.loc, self.log_scale = self.initialize(x)
            self.initialize = None
        y = (x - self.loc) * (-self.log_scale).exp()
        ladj = -self.log_scale.sum() * self._sites(x)
        return y, ladj.expand(x.shape[: x.ndim - self.event_dim])

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x = y * self.log_scale.exp() + self.loc
        ladj = self.log_scale.sum() * self._sites(y)
        return x, ladj.expand(y.shape[: y.ndim - self.event_dim])


class Conv1x1Transform(Transform):
    r"""Invertible 1×1 convolution: the same channel mixing :math:`y = W x` at every site.

    .. math:: \log|\det J| = N \log|\det W|,

    with :math:`N` the number of sites (Kingma and Dhariwal, 2018, §3.2). Pass ``log_det``
    when it is known cheaply (the LU parametrisation gives it as :math:`\sum \log|s_i|`).
    Works on ``(..., C, *grid)`` with ``event_dim = 1 + d``.
    """

    def __init__(self, weight: Tensor, event_dim: int, log_det: Tensor | None = None) -> None:
        super().__init__(event_dim)
        self.weight = weight
        self.log_det = torch.linalg.slogdet(weight)[1] if log_det is None else log_det

    def _mix(self, w: Tensor, x: Tensor) -> Tensor:
        c, grid = x.shape[-self.event_dim], x.shape[x.ndim - self.event_dim + 1 :]
        flat = x.reshape(*x.shape[: x.ndim - self.event_dim], c, grid.numel())  # (..., C, N)
        # A C×C mixing of the flow's state: cheap, and kept out of bf16 under autocast so
        # the state (and what later layers' log-determinants see) stays float32.
        with fp32():
            return (full_precision(w) @ full_precision(flat)).reshape(x.shape)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        sites = x.shape[x.ndim - self.event_dim + 1 :].numel()
        y = self._mix(self.weight, x)
        return y, (self.log_det * sites).expand(x.shape[: x.ndim - self.event_dim])

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        sites = y.shape[y.ndim - self.event_dim + 1 :].numel()
        x = self._mix(torch.linalg.inv(self.weight), y)
        return x, (-self.log_det * sites).expand(y.shape[: y.ndim - self.event_dim])

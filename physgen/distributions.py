"""Base and flow distributions that speak torch.distributions (log_prob, sample, rsample)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from .transforms import Transform

__all__ = ["NormalizingFlow", "expand_context", "standard_normal"]


def standard_normal(
    event_shape: tuple[int, ...],
    batch_shape: tuple[int, ...] = (),
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Distribution:
    r""":math:`\mathcal{N}(0, I)` over ``event_shape``, repeated over ``batch_shape``."""
    shape = (*batch_shape, *event_shape)
    loc = torch.zeros((), device=device, dtype=dtype).expand(shape)
    scale = torch.ones((), device=device, dtype=dtype).expand(shape)
    return Independent(
        Normal(loc, scale, validate_args=False), len(event_shape), validate_args=False
    )


def expand_context(cond: Tensor | None, n: int) -> Tensor | None:
    """The contexts of ``n`` samples: ``cond`` holds one per sample (batch ``n``) or one for
    all (batch 1, broadcast to ``n``); ``None`` stays ``None``."""
    if cond is None:
        return None
    if cond.ndim == 0 or cond.shape[0] not in (1, n):
        raise ValueError(f"cond: batch must be 1 or n={n}, got shape {tuple(cond.shape)}")
    return cond.expand(n, *cond.shape[1:])


class NormalizingFlow(Distribution):
    r"""The distribution of :math:`x = f^{-1}(z)`, :math:`z \sim p_Z`, for a bijection ``f``.

    ``transform`` maps data to noise (the density direction):

    .. math:: \log p(x) = \log p_Z(f(x)) + \log|\det J_f(x)|.

    ``sample``/``rsample`` draw :math:`z` from ``base`` and apply :math:`f^{-1}`
    (reparameterised, so gradients flow into the transform's parameters).

    References:
        Normalizing Flows for Probabilistic Modeling and Inference (Papamakarios et al., 2021),
        https://arxiv.org/abs/1912.02762

    Example:
        >>> from physgen.transforms import AffineTransform
        >>> t = AffineTransform(torch.zeros(2), torch.zeros(2), event_dim=1)
        >>> d = NormalizingFlow(t, standard_normal((2,)))
        >>> d.sample((3,)).shape
        torch.Size([3, 2])
    """

    arg_constraints: ClassVar[dict] = {}
    has_rsample = True

    def __init__(self, transform: Transform, base: Distribution) -> None:
        self.transform, self.base = transform, base
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def log_prob(self, x: Tensor) -> Tensor:
        z, ladj = self.transform.call_and_ladj(x)
        return self.base.log_prob(z) + ladj

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        return self.transform.inv(self.base.rsample(sample_shape))

    def rsample_and_log_prob(
        self, sample_shape: torch.Size | tuple[int, ...] = ()
    ) -> tuple[Tensor, Tensor]:
        """Samples and their log-density from the same pass (no density evaluation needed)."""
        z = self.base.rsample(sample_shape)
        x, ladj = self.transform.inv.call_and_ladj(z)
        return x, self.base.log_prob(z) - ladj

    def __repr__(self) -> str:
        return f"NormalizingFlow(transform={self.transform!r}, base={self.base!r})"

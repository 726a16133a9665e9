"""Normalizing flows on vectors: RealNVP (affine/spline coupling), MAF and IAF, all conditional."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..distributions import NormalizingFlow, expand_context, standard_normal
from ..nn import MLP, ContextEncoder
from ..nn.made import MADE
from ..transforms import (
    AffineCouplingTransform,
    ComposeTransform,
    MaskedAutoregressiveTransform,
    PermutationTransform,
    SplineCouplingTransform,
    Transform,
)
from .base import DensityModel, register_model

__all__ = ["IAF", "MAF", "Flow", "RealNVP"]


class Flow(DensityModel):
    r"""A normalizing flow: ``model(cond)`` is a :class:`~physgen.distributions.NormalizingFlow`.

    .. math:: \log p(x \mid c) = \log \mathcal{N}(f_c(x); 0, I) + \log|\det J_{f_c}(x)|

    Subclasses build ``self.layers`` (modules whose ``forward(h)`` returns a
    :class:`~physgen.transforms.Transform` bound to the embedded context ``h``), set
    ``self.event_shape`` and, when conditional, ``self.encoder``. The returned distribution
    has batch shape ``(B,)`` for a context batch ``(B, *cond_shape)`` and ``()`` without one.
    """

    event_shape: tuple[int, ...]
    encoder: ContextEncoder | None
    layers: nn.ModuleList

    def _embed(self, cond: Tensor | None) -> Tensor | None:
        if self.encoder is None:
            if cond is not None:
                raise ValueError(
                    f"{type(self).__name__} is unconditional (cond_shape=None), "
                    "but a cond was given"
                )
            return None
        if cond is None:
            raise ValueError(
                f"{type(self).__name__} is conditional on shape "
                f"{self.encoder.cond_shape}: pass cond"
            )
        return self.encoder(cond)

    def transform(self, cond: Tensor | None = None) -> Transform:
        """The data → noise bijection :math:`f_c` for the context ``cond``."""
        h = self._embed(cond)
        return ComposeTransform([layer(h) for layer in self.layers], len(self.event_shape))

    def forward(self, cond: Tensor | None = None) -> NormalizingFlow:
        transform = self.transform(cond)
        batch = () if cond is None else (cond.shape[0],)
        ref = next(self.parameters())
        base = standard_normal(self.event_shape, batch, device=ref.device, dtype=ref.dtype)
        return NormalizingFlow(transform, base)

    def log_prob(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"x: expected shape (B, {', '.join(map(str, self.event_shape))}), "
                f"got {tuple(x.shape)}"
            )
        return self(cond).log_prob(x)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Tensor:
        """``n`` samples :math:`f_c^{-1}(z)`, ``z ~ N(0, I)`` drawn from ``generator``;
        ``cond`` holds one context per sample (batch ``n``) or one for all."""
        if options:
            raise TypeError(f"{type(self).__name__}.sample takes no options, got {list(options)}")
        cond = expand_context(cond, n)
        ref = next(self.parameters())
        z = torch.randn((n, *self.event_shape), generator=generator, dtype=ref.dtype)
        return self.transform(cond).inv(z.to(ref.device))


def _context(cond_shape: Sequence[int] | None, features: int, act: str) -> ContextEncoder | None:
    return None if cond_shape is None else ContextEncoder(cond_shape, features, act)


def _with_context(x: Tensor, h: Tensor | None) -> Tensor:
    """Append the context features to every input row (broadcast over sample dims)."""
    if h is None:
        return x
    return torch.cat([x, h.expand(*x.shape[:-1], h.shape[-1])], dim=-1)


class _CouplingLayer(nn.Module):
    """Affine (``bins=0``) or spline coupling of a vector on contiguous halves."""

    def __init__(
        self,
        features: int,
        context: int,
        hidden: Sequence[int],
        act: str,
        keep_first: bool,
        bins: int,
        bound: float,
    ) -> None:
        super().__init__()
        self.split = math.ceil(features / 2)
        kept = self.split if keep_first else features - self.split
        self.changed, self.keep_first, self.bins, self.bound = (
            features - kept,
            keep_first,
            bins,
            bound,
        )
        per = 2 if bins == 0 else 3 * bins - 1
        self.net = MLP(kept + context, per * self.changed, hidden, act)

    def forward(self, h: Tensor | None) -> Transform:
        if self.bins == 0:

            def affine_params(kept: Tensor) -> tuple[Tensor, ...]:
                return self.net(_with_context(kept, h)).chunk(2, dim=-1)

            return AffineCouplingTransform(affine_params, self.split, keep_first=self.keep_first)

        def spline_params(kept: Tensor) -> tuple[Tensor, ...]:
            out = self.net(_with_context(kept, h))
            out = out.unflatten(-1, (self.changed, 3 * self.bins - 1))  # (..., D_b, 3K - 1)
            return out.split([self.bins, self.bins, self.bins - 1], dim=-1)

        return SplineCouplingTransform(
            spline_params, self.split, keep_first=self.keep_first, bound=self.bound
        )


class _Fixed(nn.Module):
    """A layer without parameters that always returns the same transform."""

    def __init__(self, transform: Transform) -> None:
        super().__init__()
        self.t = transform

    def forward(self, h: Tensor | None) -> Transform:
        return self.t


@register_model("realnvp")
class RealNVP(Flow):
    r"""Coupling flow on vectors (Dinh et al., 2017), affine or rational-quadratic spline.

    ``transforms`` couplings alternate which part conditions the other. ``mask="parity"``:
    layer ``i`` keeps the features with index ``% 2 == i % 2`` (implemented as one fixed
    even/odd permutation up front, then contiguous halves); ``mask="half"``: first and second
    halves. Conditioners are :class:`physgen.nn.MLP` ``(kept + context) -> hidden -> params``.
    ``bins > 0`` swaps the affine map for a spline with ``bins`` bins on ``[-bound, bound]``
    and identity tails (Durkan et al., 2019).

    Example:
        >>> flow = RealNVP(features=4, cond_shape=[3], transforms=2, hidden=[16])
        >>> flow(torch.randn(5, 3)).log_prob(torch.randn(5, 4)).shape
        torch.Size([5])

    References:
        Density estimation using Real NVP (Dinh, Sohl-Dickstein and Bengio, 2017),
        https://arxiv.org/abs/1605.08803
    """

    example_shape: ClassVar[tuple[int, ...]] = (3,)
    example_cond_shape: ClassVar[tuple[int, ...] | None] = (2,)

    def __init__(
        self,
        features: int,
        cond_shape: Sequence[int] | None = None,
        transforms: int = 8,
        hidden: Sequence[int] = (256, 256),
        act: str = "relu",
        mask: str = "parity",
        bins: int = 0,
        bound: float = 5.0,
        context_features: int = 16,
    ) -> None:
        super().__init__()
        if features < 2:
            raise ValueError(f"RealNVP: features must be >= 2 to split, got {features}")
        if mask not in ("parity", "half"):
            raise ValueError(f"RealNVP: mask must be 'parity' or 'half', got {mask!r}")
        self.event_shape = (features,)
        self.encoder = _context(cond_shape, context_features, act)
        context = 0 if self.encoder is None else self.encoder.features
        layers: list[nn.Module] = []
        if mask == "parity":
            perm = torch.cat([torch.arange(0, features, 2), torch.arange(1, features, 2)])
            layers.append(_Fixed(PermutationTransform(perm)))
        layers += [
            _CouplingLayer(features, context, hidden, act, i % 2 == 0, bins, bound)
            for i in range(transforms)
        ]
        self.layers = nn.ModuleList(layers)

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> RealNVP:
        return _vector_flow(cls, sample_shape, cond_shape, **{"transforms": 4, **overrides})


def _vector_flow(
    cls: type[Flow],
    sample_shape: tuple[int, ...],
    cond_shape: tuple[int, ...] | None,
    **defaults: Any,
) -> Flow:
    """A small vector flow for ``for_shape``; ``defaults`` already include the overrides."""
    if len(sample_shape) != 1:
        raise ValueError(
            f"{cls.__name__} models vectors (D,), got sample shape {tuple(sample_shape)}; "
            "use Glow for fields"
        )
    config = {"features": int(sample_shape[0]), "cond_shape": cond_shape, "hidden": [64, 64]}
    return cls(**{**config, **defaults})


class _MADELayer(nn.Module):
    """One masked affine autoregressive layer; ``reverse`` flips the autoregressive order."""

    def __init__(
        self, features: int, context: int, hidden: Sequence[int], act: str, reverse: bool, iaf: bool
    ) -> None:
        super().__init__()
        order = range(features - 1, -1, -1) if reverse else range(features)
        self.made = MADE(features, 2, context, hidden, act, order=list(order))
        self.features, self.iaf = features, iaf

    def forward(self, h: Tensor | None) -> Transform:
        def params(x: Tensor) -> tuple[Tensor, Tensor]:
            shift, a = self.made(x, h).unbind(-2)
            return shift, a

        def step(x: Tensor, k: int) -> tuple[int, Tensor]:
            return self.made.step(x, k, h)

        t = MaskedAutoregressiveTransform(params, passes=self.features, step=step)
        return t.inv if self.iaf else t


class _Autoregressive(Flow):
    """MAF and IAF share their layers; they differ in which direction is one pass."""

    iaf: ClassVar[bool]

    def __init__(
        self,
        features: int,
        cond_shape: Sequence[int] | None = None,
        transforms: int = 5,
        hidden: Sequence[int] = (128, 128),
        act: str = "relu",
        context_features: int = 16,
    ) -> None:
        super().__init__()
        self.event_shape = (features,)
        self.encoder = _context(cond_shape, context_features, act)
        context = 0 if self.encoder is None else self.encoder.features
        self.layers = nn.ModuleList(
            _MADELayer(features, context, hidden, act, i % 2 == 1, self.iaf)
            for i in range(transforms)
        )

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> _Autoregressive:
        return _vector_flow(cls, sample_shape, cond_shape, **{"transforms": 3, **overrides})


@register_model("maf")
class MAF(_Autoregressive):
    r"""Masked autoregressive flow (Papamakarios et al., 2017): one MADE pass per layer for the
    density, ``D`` passes per layer to sample. Autoregressive orders alternate between
    ascending and descending (a reversal between layers, without a permutation op).

    .. math:: z_i = x_i \exp(\log s_i(x_{<i}, c)) + t_i(x_{<i}, c)

    Example:
        >>> flow = MAF(features=3, transforms=2, hidden=[16])
        >>> flow.sample(4).shape
        torch.Size([4, 3])

    References:
        Masked Autoregressive Flow for Density Estimation (Papamakarios, Pavlakou and Murray,
        2017), https://arxiv.org/abs/1705.07057
    """

    iaf = False
    example_cond_shape: ClassVar[tuple[int, ...] | None] = (2,)


@register_model("iaf")
class IAF(_Autoregressive):
    r"""Inverse autoregressive flow (Kingma et al., 2016): one MADE pass per layer to sample,
    ``D`` passes per layer for the density (use it where sampling speed matters, e.g. as a
    variational posterior or a dequantizer).

    .. math:: x_i = z_i \exp(\log s_i(z_{<i}, c)) + t_i(z_{<i}, c)

    References:
        Improved Variational Inference with Inverse Autoregressive Flow (Kingma, Salimans,
        Jozefowicz, Chen, Sutskever and Welling, 2016), https://arxiv.org/abs/1606.04934
    """

    iaf = True

"""Invertible transforms with log-determinants, honouring torch.distributions.Transform."""

from .autoregressive import MaskedAutoregressiveTransform
from .base import ComposeTransform, InverseTransform, Transform
from .coupling import (
    AffineCouplingTransform,
    MaskedAffineCouplingTransform,
    SplineCouplingTransform,
    checkerboard_mask,
)
from .elementwise import LOG_SCALE_BOUND, AffineTransform, LogitTransform, soft_clip
from .multiscale import MultiScaleTransform
from .spline import rq_spline
from .structural import (
    ActNormTransform,
    Conv1x1Transform,
    PermutationTransform,
    SqueezeTransform,
)

__all__ = [
    "LOG_SCALE_BOUND",
    "ActNormTransform",
    "AffineCouplingTransform",
    "AffineTransform",
    "ComposeTransform",
    "Conv1x1Transform",
    "InverseTransform",
    "LogitTransform",
    "MaskedAffineCouplingTransform",
    "MaskedAutoregressiveTransform",
    "MultiScaleTransform",
    "PermutationTransform",
    "SplineCouplingTransform",
    "SqueezeTransform",
    "Transform",
    "checkerboard_mask",
    "rq_spline",
    "soft_clip",
]

"""Likelihoods per dimension: nats/dim and bits/dim, with the change-of-variables offsets."""

from __future__ import annotations

import math

from torch import Tensor

from physgen.metrics._common import ArrayLike, as_float64

__all__ = ["bits_per_dim", "bits_to_nats", "nats_per_dim", "nats_to_bits"]


def nats_to_bits(nats: ArrayLike) -> Tensor:
    """Convert nats to bits: b = n / ln 2."""
    return as_float64(nats, name="nats") / math.log(2)


def bits_to_nats(bits: ArrayLike) -> Tensor:
    """Convert bits to nats: n = b · ln 2."""
    return as_float64(bits, name="bits") * math.log(2)


def _log_abs_scale(data_scale: ArrayLike, num_dims: int) -> Tensor:
    """Σ_i log|s_i| over the D dimensions: D·log|s| for a scalar, the sum for a per-dim array."""
    s = as_float64(data_scale, name="data_scale")
    if bool((s == 0).any()):
        raise ValueError("data_scale must be non-zero")
    if s.numel() == 1:
        return num_dims * s.abs().log().reshape(())
    if s.numel() != num_dims:
        raise ValueError(f"data_scale has {s.numel()} entries but num_dims={num_dims}")
    return s.abs().log().sum()


def _with_offset(
    log_prob_nats: ArrayLike, num_dims: int, bins: int | None, data_scale: ArrayLike | None
) -> tuple[Tensor, Tensor]:
    """float64 log-probabilities and the change-of-variables offset Σ log|s_i|."""
    if num_dims < 1:
        raise ValueError(f"num_dims must be ≥ 1, got {num_dims}")
    if bins is not None and bins < 2:
        raise ValueError(f"bins must be ≥ 2 quantization levels, got {bins}")
    if data_scale is None:
        data_scale = 1.0 / bins if bins is not None else 1.0
    log_p = as_float64(log_prob_nats, name="log_prob_nats")
    return log_p, _log_abs_scale(data_scale, num_dims).to(log_p.device)


def nats_per_dim(
    log_prob_nats: ArrayLike,
    num_dims: int,
    *,
    bins: int | None = None,
    data_scale: ArrayLike | None = None,
) -> Tensor:
    """Negative log-likelihood per dimension in nats, in the units of the data.

    A model that sees z = s·y (``data_scale`` s: e.g. 1/std of a z-score, one scalar or one
    value per dimension) has log p_y(y) = log p_z(z) + Σ_i log|s_i| (change of variables; a
    shift does not matter). So the NLL of y is −(log p_z + Σ log|s|), divided by D = ``num_dims``.

    Discrete data (``bins`` = K levels, e.g. 256 for 8-bit values x ∈ {0, …, K−1}) are
    dequantized as y = x + u with u ∈ [0, 1)^D (uniform noise, or a variational q(u|x) whose
    −log q the caller has already subtracted from ``log_prob_nats``). Since unit-width bins
    give P(x) ≥ exp E_u log p_y(x + u) (Theis et al. 2016; Ho et al. 2019), the result is an
    upper bound on the discrete NLL. The model usually sees z = y/K ∈ [0, 1)^D, so with
    ``bins`` set, ``data_scale`` defaults to 1/K and the offset is + D log K:
    −log P(x) ≤ −log p_z(z) + D log K.

    Args:
        log_prob_nats: per-sample log-density the model reports, in its own coordinates.
        num_dims: D, the number of scalar values per sample.
        bins: number of quantization levels of discrete data; None for continuous data.
        data_scale: the scale s applied to the data before the model (default 1, or 1/bins).

    Returns:
        per-sample NLL in nats/dim (average it for the dataset value).

    Example:
        >>> nats_per_dim(torch.tensor([0.0]), 1, bins=256)  # uniform on [0,1) = uniform over levels
        tensor([5.5452], dtype=torch.float64)
    """
    log_p, offset = _with_offset(log_prob_nats, num_dims, bins, data_scale)
    return -(log_p + offset) / num_dims


def bits_per_dim(
    log_prob_nats: ArrayLike,
    num_dims: int,
    *,
    bins: int | None = None,
    data_scale: ArrayLike | None = None,
) -> Tensor:
    """Negative log-likelihood per dimension in bits: :func:`nats_per_dim` / ln 2.

    For 8-bit data modelled on [0, 1) (``bins=256``) this is the usual bits/dim,
    (−log p_z(z) + D ln 256) / (D ln 2) = −log₂ p_z(z)/D + 8.
    """
    return nats_to_bits(nats_per_dim(log_prob_nats, num_dims, bins=bins, data_scale=data_scale))

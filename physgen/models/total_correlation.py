r"""The KL term of a VAE split into index-code MI, total correlation and dimension-wise KL.

Chen et al. 2018 ("Isolating sources of disentanglement in VAEs", NeurIPS, Eq. 2) write the
average KL of a VAE with diagonal Gaussian posterior q(z|x) and factorized prior p(z) as

.. math:: \mathbb E_{p(x)}\mathrm{KL}(q(z|x)\,\|\,p(z))
          = I_q(x; z) + \mathrm{KL}\bigl(q(z)\,\|\,\textstyle\prod_j q(z_j)\bigr)
          + \textstyle\sum_j \mathrm{KL}(q(z_j)\,\|\,p(z_j)),

the index-code mutual information, the total correlation and the dimension-wise KL,
with the aggregate posterior :math:`q(z) = \frac1N\sum_n q(z|x_n)` over a data set of N.
Penalizing the total correlation alone (β-TCVAE) pushes the code's dimensions towards
independence without squeezing the information the code carries.

:math:`q(z_i)` at a draw :math:`z_i \sim q(z|x_i)` is estimated from a minibatch of M
uniform draws of the data by minibatch stratified sampling (Chen et al. 2018): the sample's
own posterior with weight 1/N, the M − 1 others as draws of the remaining N − 1,

.. math:: \hat q(z_i) = \frac1N\,q(z_i|x_i) + \frac{N-1}{N(M-1)}\sum_{j\ne i} q(z_i|x_j),

unbiased for :math:`q(z_i)` and exact when the batch is the data set (M = N); the same
weights give each marginal :math:`\hat q(z_{ij})`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["KLDecomposition", "kl_decomposition", "log_aggregate_posterior"]

_LOG_2PI = math.log(2 * math.pi)


class KLDecomposition(NamedTuple):
    """Per-sample estimates ``(B,)`` of the three KL terms; their sum is the sample's KL."""

    index_mi: Tensor
    total_correlation: Tensor
    dimwise_kl: Tensor


def _log_weights(m: int, dataset_size: int, like: Tensor) -> Tensor:
    """``(M, M)`` log stratified weights: 1/N on the diagonal, (N − 1)/(N(M − 1)) off it."""
    if m < 2:
        raise ValueError(f"the aggregate posterior needs a batch of at least 2, got {m}")
    if dataset_size < m:
        raise ValueError(f"dataset_size must be at least the batch size {m}, got {dataset_size}")
    off = math.log((dataset_size - 1) / (dataset_size * (m - 1)))
    w = torch.full((m, m), off, device=like.device, dtype=like.dtype)
    return w.fill_diagonal_(-math.log(dataset_size))


def log_aggregate_posterior(
    z: Tensor, mu: Tensor, logvar: Tensor, dataset_size: int
) -> tuple[Tensor, Tensor]:
    r"""Stratified estimates of :math:`\log q(z_i)` ``(B,)`` and :math:`\log q(z_{ij})` ``(B, L)``.

    ``z`` ``(B, L)`` holds one draw per sample of its own posterior ``N(mu, exp(logvar))``.
    """
    if not z.shape == mu.shape == logvar.shape or z.ndim != 2:
        raise ValueError(
            f"z, mu and logvar must share one (B, L) shape, got {tuple(z.shape)}, "
            f"{tuple(mu.shape)}, {tuple(logvar.shape)}"
        )
    # log q(z_i,d | x_j, d): (B_i, B_j, L)
    log_q = -0.5 * (_LOG_2PI + logvar[None] + (z[:, None] - mu[None]).pow(2) / logvar[None].exp())
    w = _log_weights(z.shape[0], dataset_size, z)
    log_qz = torch.logsumexp(w + log_q.sum(2), dim=1)
    log_qzj = torch.logsumexp(w[:, :, None] + log_q, dim=1)
    return log_qz, log_qzj


def kl_decomposition(z: Tensor, mu: Tensor, logvar: Tensor, dataset_size: int) -> KLDecomposition:
    r"""Index-code MI, total correlation and dimension-wise KL at the draws ``z`` (prior N(0, I)).

    Per sample i: :math:`\log q(z_i|x_i) - \log\hat q(z_i)`,
    :math:`\log\hat q(z_i) - \sum_j\log\hat q(z_{ij})` and
    :math:`\sum_j[\log\hat q(z_{ij}) - \log p(z_{ij})]`; their batch means estimate the three
    terms, and per sample they add up to :math:`\log q(z_i|x_i) - \log p(z_i)`, a one-draw
    estimate of the sample's KL.
    """
    log_qz, log_qzj = log_aggregate_posterior(z, mu, logvar, dataset_size)
    log_q_own = (-0.5 * (_LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp())).sum(1)
    log_p = (-0.5 * (_LOG_2PI + z.pow(2))).sum(1)
    log_prod = log_qzj.sum(1)
    return KLDecomposition(log_q_own - log_qz, log_qz - log_prod, log_prod - log_p)

"""Closed forms for Gaussian and Gaussian-mixture data under a linear SDE: marginals, scores."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from physgen.sde import SDE


@dataclass
class GaussianData:
    """Data ``x0 ~ N(mean, cov)`` (flattened to ``D``), seen through an SDE's kernel.

    Samples may carry any shape ``(B, *shape)`` with ``prod(shape) = D``; the marginal at
    time ``t`` is ``N(alpha m, alpha² S + sigma² I)`` and its score is exact.
    """

    mean: Tensor  # (D,)
    cov: Tensor  # (D, D)
    sde: SDE
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        self._lam, self._Q = torch.linalg.eigh(self.cov)

    def moments(self, t: float) -> tuple[Tensor, Tensor]:
        alpha, sigma = self.sde.coefficients(torch.tensor([t], dtype=torch.float64))
        eye = torch.eye(self.mean.numel(), dtype=torch.float64)
        return alpha * self.mean, alpha**2 * self.cov + sigma**2 * eye

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        # In the eigenbasis of S the marginal covariance is diagonal: alpha² λ + sigma².
        alpha, sigma = self.sde.coefficients(t)
        lam, Q = self._lam, self._Q
        flat = x.flatten(1) - alpha[:, None] * self.mean  # (B, D)
        var = alpha[:, None] ** 2 * lam + sigma[:, None] ** 2  # (B, D)
        return (-((flat @ Q) / var) @ Q.T).reshape(x.shape)

    def log_prob(self, x: Tensor, t: float) -> Tensor:
        mean, cov = self.moments(t)
        dist = torch.distributions.MultivariateNormal(mean, cov)
        return dist.log_prob(x.flatten(1))

    def sample(self, n: int, t: float, generator: torch.Generator, whiten: bool = False) -> Tensor:
        """``n`` draws from the marginal at ``t``; ``whiten=True`` makes the sample mean and
        covariance exact (removes the initial sampling error from sampler comparisons)."""
        mean, cov = self.moments(t)
        chol = torch.linalg.cholesky(cov)
        z = torch.randn(n, self.mean.numel(), generator=generator, dtype=torch.float64)
        if whiten:
            z = z - z.mean(0)
            sample_cov = torch.cov(z.T).reshape(z.shape[1], -1)  # (D, D) even for D = 1
            z = z @ torch.linalg.inv(torch.linalg.cholesky(sample_cov)).T
        return (mean + z @ chol.T).reshape(n, *self.shape)


@dataclass
class MixtureData1D:
    """1-D data from a Gaussian mixture; under a linear SDE it stays a mixture, score exact."""

    weights: Tensor  # (K,)
    means: Tensor  # (K,)
    stds: Tensor  # (K,)
    sde: SDE

    def _components(self, t: Tensor) -> tuple[Tensor, Tensor]:
        alpha, sigma = self.sde.coefficients(t)
        mean = alpha[:, None] * self.means  # (B, K)
        var = alpha[:, None] ** 2 * self.stds**2 + sigma[:, None] ** 2  # (B, K)
        return mean, var

    def log_prob(self, x: Tensor, t: Tensor) -> Tensor:
        mean, var = self._components(t)
        xb = x.reshape(-1, 1)
        comp = -0.5 * (xb - mean) ** 2 / var - 0.5 * torch.log(2 * math.pi * var)
        return torch.logsumexp(comp + self.weights.log(), dim=1)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        mean, var = self._components(t)
        xb = x.reshape(-1, 1)
        comp = -0.5 * (xb - mean) ** 2 / var - 0.5 * torch.log(2 * math.pi * var)
        resp = torch.softmax(comp + self.weights.log(), dim=1)
        return (resp * -(xb - mean) / var).sum(1).reshape(x.shape)

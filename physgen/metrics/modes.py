"""Mode-collapse diagnostics: the Gaussian-ring benchmark and a mode-coverage count."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ModeCoverage", "mode_coverage", "ring_centers", "sample_ring"]


def ring_centers(n_modes: int = 8, radius: float = 2.0) -> Tensor:
    """Centers ``(n_modes, 2)`` equally spaced on a circle of ``radius`` (float32)."""
    if n_modes < 1 or radius <= 0:
        raise ValueError(f"ring_centers: need n_modes >= 1 and radius > 0; got {n_modes}, {radius}")
    angle = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    return torch.stack([radius * angle.cos(), radius * angle.sin()], dim=1).float()


def sample_ring(
    n: int,
    n_modes: int = 8,
    radius: float = 2.0,
    std: float = 0.02,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``n`` draws from the equal-weight mixture of isotropic Gaussians on a ring.

    The standard mode-collapse benchmark (Metz et al. 2017, "Unrolled GANs"): 8 modes,
    radius 2, standard deviation 0.02.
    """
    centers = ring_centers(n_modes, radius)
    index = torch.randint(n_modes, (n,), generator=generator)
    return centers[index] + std * torch.randn(n, 2, generator=generator)


@dataclass(frozen=True)
class ModeCoverage:
    """Result of ``mode_coverage``.

    Attributes:
        counts: high-quality samples assigned to each mode, shape ``(K,)``.
        n_covered: modes holding at least ``min_share`` of their fair share ``n / K``.
        high_quality_fraction: fraction of samples within ``n_std`` stds of some mode.
    """

    counts: Tensor
    n_covered: int
    high_quality_fraction: float


def mode_coverage(
    samples: Tensor,
    centers: Tensor,
    std: float,
    n_std: float = 3.0,
    min_share: float = 0.2,
) -> ModeCoverage:
    r"""Count the modes a sample set covers (Srivastava et al. 2017, "VEEGAN", §5.1).

    Each sample is assigned to its nearest center; it is *high quality* when that distance is
    at most ``n_std * std``. A mode is *covered* when it received at least
    ``min_share * n / K`` high-quality samples, so a generator that parks a handful of
    samples in a mode does not get credit for it, and a collapsed generator covers few modes.

    Args:
        samples: ``(n, D)`` generated points.
        centers: ``(K, D)`` mode centers.
        std: the per-coordinate standard deviation of each mode.
        n_std: quality radius in units of ``std``.
        min_share: fraction of the fair share ``n / K`` a mode needs to count as covered.
    """
    if samples.ndim != 2 or centers.ndim != 2 or samples.shape[1] != centers.shape[1]:
        raise ValueError(
            f"mode_coverage: samples {tuple(samples.shape)} and centers {tuple(centers.shape)} "
            "must be (n, D) and (K, D)"
        )
    samples = samples.detach().to("cpu", torch.float64)
    centers = centers.detach().to("cpu", torch.float64)
    distance, nearest = torch.cdist(samples, centers).min(dim=1)
    good = distance <= n_std * std
    counts = torch.bincount(nearest[good], minlength=centers.shape[0])
    fair_share = samples.shape[0] / centers.shape[0]
    n_covered = int((counts >= min_share * fair_share).sum())
    return ModeCoverage(counts, n_covered, float(good.double().mean()))

"""Gaussian random field samplers (numpy): covariance kernels, Karhunen–Loève and spectral sampling.

* ``KarhunenLoeve``: exact sampling of N(0, K) for a covariance matrix K on any point set,
  through its eigendecomposition K = V Λ Vᵀ (negative round-off eigenvalues clipped to 0);
  never Cholesky, which fails on squared-exponential kernels (condition numbers ~1e20).
* ``spectral_field``: stationary fields on a periodic box from a spectral density S(ω): the
  covariance is ``Σ_k S(ω_k)/|box| e^{iω_k·r}``, i.e. the kernel summed over periodic images
  (Poisson summation), exact up to the modes the grid cannot hold.
* ``se_kernel``/``matern_kernel`` and their spectral densities (Rasmussen & Williams 2006,
  eqs. 4.9, 4.14, 4.15).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import special
from scipy.linalg import eigh
from scipy.sparse.linalg import eigsh

_DENSE_LIMIT = 2000  # points above which a truncated expansion uses Lanczos instead of eigh

__all__ = [
    "KarhunenLoeve",
    "kernel_spectral_density",
    "matern_kernel",
    "precision_operator_density",
    "se_kernel",
    "spectral_field",
    "stationary_kernel",
]


def se_kernel(r: np.ndarray, length: float, variance: float = 1.0) -> np.ndarray:
    """Squared exponential k(r) = σ² exp(−r² / (2ℓ²))."""
    return variance * np.exp(-0.5 * (np.asarray(r) / length) ** 2)


def matern_kernel(r: np.ndarray, length: float, nu: float, variance: float = 1.0) -> np.ndarray:
    """Matérn k(r) = σ² 2^{1−ν}/Γ(ν) (√(2ν) r/ℓ)^ν K_ν(√(2ν) r/ℓ); k(0) = σ²."""
    r = np.abs(np.asarray(r, dtype=np.float64))
    s = math.sqrt(2 * nu) * r / length
    with np.errstate(invalid="ignore"):
        k = variance * 2 ** (1 - nu) / special.gamma(nu) * s**nu * special.kv(nu, s)
    return np.where(s > 0, k, variance)


def stationary_kernel(kind: str, length: float, variance: float, nu: float) -> Callable:
    """k(r) for ``kind`` ``"se"`` or ``"matern"`` (smoothness ``nu``)."""
    if kind == "se":
        return lambda r: se_kernel(r, length, variance)
    if kind == "matern":
        return lambda r: matern_kernel(r, length, nu, variance)
    raise ValueError(f"kernel must be 'se' or 'matern', got {kind!r}")


def kernel_spectral_density(
    kind: str, length: float, variance: float, nu: float, d: int
) -> Callable[[np.ndarray], np.ndarray]:
    """S(ω) = ∫ k(r) e^{−iω·r} dr in ``d`` dimensions, as a function of ``|ω|²``."""
    if kind == "se":
        c = variance * (2 * math.pi * length**2) ** (d / 2)
        return lambda w2: c * np.exp(-0.5 * length**2 * w2)
    if kind == "matern":
        lam2 = 2 * nu / length**2
        c = (
            variance
            * 2**d
            * math.pi ** (d / 2)
            * special.gamma(nu + d / 2)
            * lam2**nu
            / special.gamma(nu)
        )
        return lambda w2: c * (lam2 + w2) ** (-(nu + d / 2))
    raise ValueError(f"kernel must be 'se' or 'matern', got {kind!r}")


def precision_operator_density(
    variance: float, tau: float, alpha: float
) -> Callable[[np.ndarray], np.ndarray]:
    """``S(ω) = σ²(|ω|² + τ²)^{−α}`` with the mean mode removed: the field N(0, σ²(−Δ + τ²)^{−α}).

    The covariance operator of the FNO initial conditions (Li et al. 2021); in d dimensions
    it is Matérn with ν = α − d/2, ℓ = √(2ν)/τ (Lindgren, Rue & Lindström 2011).
    """
    return lambda w2: np.where(w2 > 0, variance * (w2 + tau**2) ** (-alpha), 0.0)


def spectral_field(
    rng: np.random.Generator,
    shape: Sequence[int],
    lengths: Sequence[float],
    density: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """One stationary Gaussian field on a periodic box with spectral density ``density(|ω|²)``.

    ``u = IFFT( √(N S(ω_k)/|box|) · FFT(w) )`` with w white noise on the N grid points, so
    ``Cov(u_j, u_l) = Σ_k S(ω_k)/|box| e^{iω_k(x_j − x_l)}``.
    """
    shape = tuple(int(n) for n in shape)
    ks = [2 * math.pi * np.fft.fftfreq(n, d=L / n) for n, L in zip(shape, lengths, strict=True)]
    w2 = sum(k**2 for k in np.meshgrid(*ks, indexing="ij"))
    amplitude = np.sqrt(math.prod(shape) * density(w2) / math.prod(lengths))
    white = rng.standard_normal(shape)
    return np.fft.ifftn(amplitude * np.fft.fftn(white)).real


class KarhunenLoeve:
    """Exact N(mean, K) sampling through K = V Λ Vᵀ, optionally truncated to leading modes.

    Args:
        cov: covariance matrix (m, m), symmetric positive semi-definite.
        modes: keep only the ``modes`` largest eigenpairs (``None``: all).

    Example:
        >>> x = np.linspace(0, 1, 50)
        >>> kl = KarhunenLoeve(se_kernel(x[:, None] - x[None, :], 0.2))
        >>> kl.sample(np.random.default_rng(0)).shape
        (50,)
    """

    def __init__(self, cov: np.ndarray, modes: int | None = None) -> None:
        cov = np.asarray(cov, dtype=np.float64)
        if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
            raise ValueError(f"KarhunenLoeve: covariance must be square, got {cov.shape}")
        m = cov.shape[0]
        if modes is not None and modes < m and m > _DENSE_LIMIT:
            # Lanczos for a few leading modes of a large matrix (fixed start vector: reproducible).
            values, vectors = eigsh(cov, k=modes, which="LA", v0=np.ones(m))
        elif modes is not None and modes < m:
            values, vectors = eigh(cov, subset_by_index=(m - modes, m - 1))
        else:
            values, vectors = np.linalg.eigh(cov)
        order = np.argsort(values)[::-1]
        values, vectors = values[order], vectors[:, order]
        # Fix each eigenvector's sign (largest entry positive) so draws do not depend on the solver.
        signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])])
        self.eigenvalues = np.clip(values, 0.0, None)
        self.eigenvectors = vectors * np.where(signs == 0, 1.0, signs)
        self.factor = self.eigenvectors * np.sqrt(self.eigenvalues)  # (m, q)

    @property
    def modes(self) -> int:
        """Number of modes kept."""
        return self.factor.shape[1]

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One zero-mean draw, shape ``(m,)``."""
        return self.factor @ rng.standard_normal(self.modes)

"""Gaussian random fields with squared-exponential or Matérn covariance, in 1-D and 2-D."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from physgen.grids import Grid
from physgen.problem import Downsample, Field, Observation, Problem, SensorSet
from physgen.random_fields import (
    KarhunenLoeve,
    kernel_spectral_density,
    spectral_field,
    stationary_kernel,
)

__all__ = ["GaussianRandomField"]

# Full Karhunen–Loève of a non-separable kernel needs an eigh of n^d × n^d.
_MAX_DENSE_POINTS = 4096


@dataclass(frozen=True)
class GRFParams:
    """Kernel and grid of the field."""

    kernel: str = "se"  # "se": σ² exp(−r²/2ℓ²); "matern": smoothness nu
    dim: int = 1
    n: int = 64  # points per axis
    length: float = 0.2  # ℓ
    variance: float = 1.0  # σ²
    nu: float = 1.5  # Matérn smoothness
    periodic: bool = False  # True: stationary on the torus [0,1)^d (spectral sampling)


class GaussianRandomField(Problem):
    """u ~ GP(0, k(|x − x'|)) on [0, 1]^d, d = 1 or 2, with an SE or Matérn kernel.

    * ``periodic=False`` (default): node grid including both ends; exact Karhunen–Loève
      sampling of the kernel matrix (eigh; Kronecker product of 1-D factors for the separable
      2-D SE kernel; a dense eigh up to 4096 points for 2-D Matérn). Covariance = k exactly.
    * ``periodic=True``: periodic node grid; spectral sampling with the kernel's spectral
      density, so the covariance is k summed over periodic images (Σ_m k(r + m)), which
      equals k when ℓ ≪ 1.

    No PDE: ``residual`` is not defined; the statistics are the check. The grid's boundary
    condition (``neumann`` for an open box) only matters to operators applied to the field.
    Kernels: Rasmussen & Williams, *Gaussian Processes for Machine Learning* (2006), ch. 4.
    """

    name = "grf"
    Params = GRFParams
    fields = (Field("u", "Gaussian random field"),)
    pde = "none (Gaussian random field)"
    chunk = 256

    def __init__(self, **params) -> None:
        super().__init__(**params)
        p = self.params
        if p.dim not in (1, 2):
            raise ValueError(f"grf: dim must be 1 or 2, got {p.dim}")
        stationary_kernel(p.kernel, p.length, p.variance, p.nu)  # validates the kernel name
        if p.length <= 0 or p.variance <= 0 or p.nu <= 0:
            raise ValueError("grf: length, variance and nu must be positive")
        dense = p.kernel == "matern" and p.dim == 2 and not p.periodic
        if dense and p.n**2 > _MAX_DENSE_POINTS:
            raise ValueError(
                f"grf: open-box 2-D Matérn needs a dense eigh of {p.n**2} points "
                f"(limit {_MAX_DENSE_POINTS}); use periodic=true or a smaller n"
            )

    @cached_property
    def grid(self) -> Grid:
        p = self.params
        bc = "periodic" if p.periodic else "neumann"
        return Grid((p.n,) * p.dim, bc=bc, centering="node")

    def covariance(self) -> np.ndarray:
        """The exact covariance matrix of the flattened field (the test's reference).

        Open box: the kernel matrix. Periodic: Σ_k S(ω_k)/|box| e^{iω_k·(x − x')} over the
        grid's modes — the kernel summed over periodic images, less the modes above the grid's
        Nyquist frequency.
        """
        p = self.params
        points = np.stack([c.ravel() for c in self.grid.mesh()], axis=1)  # (N, d)
        diff = points[:, None, :] - points[None, :, :]
        if not p.periodic:
            k = stationary_kernel(p.kernel, p.length, p.variance, p.nu)
            return k(np.sqrt((diff**2).sum(-1)))
        density = kernel_spectral_density(p.kernel, p.length, p.variance, p.nu, p.dim)
        shape = self.grid.shape
        ks = [2 * math.pi * np.fft.fftfreq(n, d=1.0 / n) for n in shape]
        w2 = sum(k**2 for k in np.meshgrid(*ks, indexing="ij"))
        # Covariance at lag r is the inverse DFT of S/|box| times N (numpy's ifft divides by N).
        lag_cov = np.fft.ifftn(density(w2)).real * math.prod(shape)  # (n,) * d, box = 1
        lag = np.rint(diff * np.array(shape)).astype(int) % np.array(shape)
        return lag_cov[tuple(lag[..., i] for i in range(p.dim))]

    @cached_property
    def _kl(self) -> list[KarhunenLoeve]:
        p = self.params
        if p.dim == 2 and p.kernel == "matern":
            return [KarhunenLoeve(self.covariance())]
        x = self.grid.coords(0)
        k = stationary_kernel(p.kernel, p.length, p.variance, p.nu)
        # The SE kernel is separable: exp(−|r|²/2ℓ²) = Π_axes exp(−r_i²/2ℓ²).
        per_axis_variance = p.variance ** (1 / p.dim)
        one_d = k(x[:, None] - x[None, :]) * per_axis_variance / p.variance
        return [KarhunenLoeve(one_d)]

    def _generate(self, rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
        p = self.params
        shape = self.grid.shape
        out = []
        if p.periodic:
            density = kernel_spectral_density(p.kernel, p.length, p.variance, p.nu, p.dim)
            for rng in rngs:
                out.append(spectral_field(rng, shape, self.grid.lengths, density))
        elif p.dim == 1 or p.kernel == "matern":
            factor = self._kl[0].factor
            for rng in rngs:
                out.append((factor @ rng.standard_normal(factor.shape[1])).reshape(shape))
        else:
            factor = self._kl[0].factor  # (n, q): U = F Ξ Fᵀ has covariance K ⊗ K
            for rng in rngs:
                xi = rng.standard_normal((factor.shape[1], factor.shape[1]))
                out.append(factor @ xi @ factor.T)
        return {"u": np.stack(out)}

    def observations(self) -> dict[str, Observation]:
        """``downsample4``: 4× block mean; ``sensors``: every 8th point on each axis."""
        d, n = self.params.dim, self.params.n
        obs: dict[str, Observation] = {}
        if n % 4 == 0:
            obs["downsample4"] = Downsample(4, d, "mean")
        axis = np.arange(0, n, 8)
        points = np.stack(np.meshgrid(*([axis] * d), indexing="ij"), -1).reshape(-1, d)
        obs["sensors"] = SensorSet.from_indices(self.field_names, {"u": [tuple(q) for q in points]})
        return obs

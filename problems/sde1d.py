"""The 1-D stochastic elliptic problem of PI-GAN (Yang et al.) and PI-VAE (Zhong & Meidani)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from scipy.linalg import solve_banded
from torch import Tensor

from physgen.grids import Grid
from physgen.operators import flux_divergence
from physgen.problem import Field, Observation, Problem, SensorSet, rms
from physgen.random_fields import KarhunenLoeve

__all__ = ["SDE1D"]

# Sensor counts (u, k, f) of the three tasks, as in the PI-VAE code's README commands.
SENSOR_SETS = {"forward": (2, 17, 21), "mixed": (6, 6, 21), "inverse": (11, 1, 21)}


@dataclass(frozen=True)
class SDE1DParams:
    """Parameters (defaults: the PI-GAN/PI-VAE base case "ODE")."""

    n: int = 401  # nodes on [-1, 1], both boundaries included (400 intervals)
    length_k: float = 1.0  # ℓ_k of k̂'s kernel (4/25) exp(-(Δx/ℓ_k)²)
    length_f: float = 0.2  # ℓ_f of f's kernel (9/400) exp(-(Δx/ℓ_f)²)
    variance_k: float = 4 / 25
    variance_f: float = 9 / 400
    mean_f: float = 0.5
    mean_amplitude: float = 0.2  # log k = 0.2 sin(1.5π(x+1)) + k̂
    inverse_diffusivity: float = 10.0  # −(1/10)(k u')' = f


class SDE1D(Problem):
    """−(1/10) d/dx(k(x) du/dx) = f(x) on [−1, 1], u(±1) = 0, with random k and f.

    k(x) = exp(0.2 sin(1.5π(x+1)) + k̂(x)), k̂ ~ GP(0, (4/25) exp(−(x−x')²/ℓ_k²)), ℓ_k = 1;
    f ~ GP(0.5, (9/400) exp(−(x−x')²/ℓ_f²)), ℓ_f = 0.2 (the kernels have no factor ½).
    401 nodes; Gaussian processes drawn exactly by Karhunen–Loève (eigh). Discretisation
    (conservative, second order, k at half nodes by the arithmetic mean):

        r_i = −[k_{i+½}(u_{i+1} − u_i) − k_{i−½}(u_i − u_{i−1})] / (10 h²) − f_i,  0 < i < n−1

    solved as a tridiagonal system (the PI-VAE code expands (k u')' = k u'' + k' u' with
    central differences instead; the two agree to O(h²)); ``residual`` applies the same stencil
    (``flux_divergence(..., mean="arithmetic")``) and returns r at the 399 interior nodes,
    shape ``(B, 399)``. Boundary values are a constraint (``constraints()["boundary"]``).

    Observations ``forward``/``mixed``/``inverse``: (u, k, f) sensor counts (2, 17, 21),
    (6, 6, 21), (11, 1, 21) at nodes ⌊linspace(0, 1, m)·400⌋ (one k sensor sits at x = −1).
    Reference: Yang, Zhang & Karniadakis, arXiv:1811.02033; Zhong & Meidani, arXiv:2203.11363.

    Example:
        >>> p = SDE1D(n=101)
        >>> ds = p.generate(4, seed=0)
        >>> float(p.relative_residual(p.to_tensor(ds)).max()) < 1e-10
        True
    """

    name = "sde1d"
    Params = SDE1DParams
    fields = (
        Field("k", "diffusion coefficient"),
        Field("u", "solution"),
        Field("f", "forcing"),
    )
    pde = "-(1/10) d/dx(k du/dx) = f, u(-1) = u(1) = 0"
    chunk = 64

    @cached_property
    def grid(self) -> Grid:
        return Grid((self.params.n,), domain=((-1.0, 1.0),), bc="dirichlet", centering="node")

    @cached_property
    def _samplers(self) -> tuple[KarhunenLoeve, KarhunenLoeve]:
        p = self.params
        x = self.grid.coords(0)
        dx = x[:, None] - x[None, :]
        k_cov = p.variance_k * np.exp(-((dx / p.length_k) ** 2))
        f_cov = p.variance_f * np.exp(-((dx / p.length_f) ** 2))
        return KarhunenLoeve(k_cov), KarhunenLoeve(f_cov)

    def _generate(self, rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
        p = self.params
        x = self.grid.coords(0)
        k_kl, f_kl = self._samplers
        out = {"k": [], "u": [], "f": []}
        for rng in rngs:
            k = np.exp(p.mean_amplitude * np.sin(1.5 * np.pi * (x + 1)) + k_kl.sample(rng))
            f = p.mean_f + f_kl.sample(rng)
            out["k"].append(k)
            out["u"].append(self.solve(k, f))
            out["f"].append(f)
        return {name: np.stack(v) for name, v in out.items()}

    def solve(self, k: np.ndarray, f: np.ndarray) -> np.ndarray:
        """u with u(±1) = 0 for one coefficient ``k`` and forcing ``f``, each ``(n,)`` nodal.

        The generator's tridiagonal solve of the stencil in the class docstring (float64).
        """
        n = self.params.n
        k, f = np.asarray(k, dtype=np.float64), np.asarray(f, dtype=np.float64)
        if k.shape != (n,) or f.shape != (n,):
            raise ValueError(
                f"sde1d.solve: k and f must have shape ({n},), got {k.shape}, {f.shape}"
            )
        h = self.grid.spacing[0]
        face = 0.5 * (k[1:] + k[:-1])  # k_{i+½}, i = 0..n-2
        # Interior unknowns u_1..u_{n-2}: (face_{i-½} + face_{i+½}) u_i − ... = 10 h² f_i.
        bands = np.zeros((3, n - 2))
        bands[0, 1:] = -face[1:-1]
        bands[1] = face[:-1] + face[1:]
        bands[2, :-1] = -face[1:-1]
        u = np.zeros(n)
        u[1:-1] = solve_banded((1, 1), bands, self.params.inverse_diffusivity * h**2 * f[1:-1])
        return u

    def residual(self, fields: Tensor) -> Tensor:
        """r_i at interior nodes, ``(B, n − 2)``, in units of f."""
        self._check_fields(fields)
        k, u, f = fields.unbind(1)  # each (B, n)
        flux = flux_divergence(k, u, self.grid, mean="arithmetic")
        return (-flux / self.params.inverse_diffusivity - f)[:, 1:-1]

    def residual_scale(self, fields: Tensor) -> Tensor:
        """RMS of the forcing f per sample."""
        return rms(fields[:, 2])

    def constraints(self, fields: Tensor) -> dict[str, Tensor]:
        """``boundary``: |u(−1)| + |u(1)|; ``positivity``: max(0, −min k)."""
        self._check_fields(fields)
        u, k = fields[:, 1], fields[:, 0]
        return {
            "boundary": u[:, 0].abs() + u[:, -1].abs(),
            "positivity": torch.relu(-k.min(dim=-1).values),
        }

    def sensor_indices(self, count: int) -> np.ndarray:
        """Node indices ⌊linspace(0, 1, count)·(n − 1)⌋ of ``count`` equispaced sensors."""
        if count == 1:
            return np.zeros(1, dtype=int)
        return np.floor(np.linspace(0, 1, count) * (self.params.n - 1)).astype(int)

    def observations(self) -> dict[str, Observation]:
        """Sensor sets of the forward, mixed and inverse tasks (values of u, k, f)."""
        return {
            task: SensorSet.from_indices(
                self.field_names,
                {
                    "u": self.sensor_indices(nu),
                    "k": self.sensor_indices(nk),
                    "f": self.sensor_indices(nf),
                },
            )
            for task, (nu, nk, nf) in SENSOR_SETS.items()
        }

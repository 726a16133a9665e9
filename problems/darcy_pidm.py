"""2-D Darcy flow with corner sources and no-flux walls (the Physics-Informed Diffusion setting)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import spsolve
from torch import Tensor

from physgen.grids import Grid
from physgen.operators import flux_divergence
from physgen.problem import Field, Observation, Problem, SensorSet, rms
from physgen.random_fields import KarhunenLoeve
from physgen.solvers import diffusion_matrix

__all__ = ["DarcyPIDM"]


@dataclass(frozen=True)
class DarcyPIDMParams:
    """Defaults of Bastek, Sun & Kochmann: 64², log-K with exp(−r/0.1) kernel, 64 KL modes."""

    n: int = 64  # cells per axis on (0, 1)²
    length: float = 0.1  # correlation length of log K, kernel exp(−r/ℓ)
    modes: int = 64  # Karhunen–Loève terms
    source: float = 10.0  # +source in the corner square at the origin, −source opposite
    source_width: float = 0.125


class DarcyPIDM(Problem):
    """−∇·(K∇p) = f on (0, 1)², K∇p·n = 0 on the walls, ∫p = 0 (Bastek et al., arXiv:2403.14404).

    log K is a Gaussian field with covariance exp(−|x − x'|/ℓ), truncated to its leading
    ``modes`` Karhunen–Loève terms on the cell centres; f = +10 on the cells inside
    [0, w]², −10 inside [1 − w, 1]², 0 elsewhere (zero net source, so the Neumann problem
    is solvable). Discretisation: cell-centred finite volumes with harmonic face means and
    no-flux walls; the singular system is closed by the zero-mean condition through a
    Lagrange multiplier. (The original code uses node-based finite differences with
    one-sided boundary rows and a least-squares solve.)

    ``residual`` = −flux_divergence(K, p) − f on every cell, ``(B, n, n)``, relative to
    RMS(f); ``constraints()["zero_mean"]`` = |mean p|. Float64 floor ~1e-12.
    """

    name = "darcy_pidm"
    Params = DarcyPIDMParams
    fields = (Field("K", "permeability"), Field("p", "pressure"))
    pde = "-div(K grad p) = f, K grad p . n = 0 on the boundary, mean(p) = 0"
    chunk = 16

    @cached_property
    def grid(self) -> Grid:
        return Grid((self.params.n, self.params.n), bc="neumann", centering="cell")

    @cached_property
    def source(self) -> np.ndarray:
        """The source term f on the cells, ``(n, n)``."""
        p = self.params
        x, y = self.grid.mesh()
        w = p.source_width
        f = np.zeros(self.grid.shape)
        f[(x <= w) & (y <= w)] = p.source
        f[(x >= 1 - w) & (y >= 1 - w)] = -p.source
        return f

    @cached_property
    def _kl(self) -> KarhunenLoeve:
        points = np.stack([c.ravel() for c in self.grid.mesh()], axis=1)
        r = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
        return KarhunenLoeve(np.exp(-r / self.params.length), modes=self.params.modes)

    def pressure(self, K: np.ndarray) -> np.ndarray:
        """The zero-mean discrete solution p ``(n, n)`` for a positive permeability K."""
        m = self.grid.shape[0] * self.grid.shape[1]
        ones = sp.csr_matrix(np.ones((1, m)))
        rhs = np.concatenate([self.source.ravel(), [0.0]])
        # [A 1; 1ᵀ 0] [p; λ] = [f; 0]: λ = 0 exactly when Σf = 0, and mean(p) = 0.
        system = sp.bmat([[diffusion_matrix(K, self.grid), ones.T], [ones, None]], format="csc")
        return spsolve(system, rhs)[:m].reshape(self.grid.shape)

    def _generate(self, rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
        k_all = [np.exp(self._kl.sample(rng)).reshape(self.grid.shape) for rng in rngs]
        return {"K": np.stack(k_all), "p": np.stack([self.pressure(K) for K in k_all])}

    def solve_state(self, fields: Tensor) -> Tensor:
        """(K, p) with p replaced by the discrete solution for K (which must be positive)."""
        return self._solve_from_coefficient(fields, self.pressure)

    def _source_tensor(self, like: Tensor) -> Tensor:
        return torch.as_tensor(self.source, dtype=like.dtype, device=like.device)

    def residual(self, fields: Tensor) -> Tensor:
        """−∇·(K∇p) − f per cell, ``(B, n, n)``."""
        self._check_fields(fields)
        K, p = fields[:, 0], fields[:, 1]
        return -flux_divergence(K, p, self.grid) - self._source_tensor(fields)

    def residual_scale(self, fields: Tensor) -> Tensor:
        """RMS of the source term."""
        return rms(self._source_tensor(fields)[None]).expand(fields.shape[0])

    def constraints(self, fields: Tensor) -> dict[str, Tensor]:
        """``zero_mean``: |mean p|; ``positivity``: max(0, −min K)."""
        self._check_fields(fields)
        K, p = fields[:, 0].flatten(1), fields[:, 1].flatten(1)
        return {"zero_mean": p.mean(1).abs(), "positivity": (-K.min(1).values).clamp_min(0)}

    def observations(self) -> dict[str, Observation]:
        """``pressure_sensors``: p every 8th cell (64 sensors at n = 64)."""
        idx = np.arange(4, self.params.n, 8)
        points = [(i, j) for i in idx for j in idx]
        return {"pressure_sensors": SensorSet.from_indices(self.field_names, {"p": points})}

"""2-D Darcy flow −∇·(a∇u) = f with a two-valued random permeability (the FNO benchmark setting)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.fft
from scipy.sparse.linalg import spsolve
from torch import Tensor

from physgen.grids import Grid
from physgen.operators import flux_divergence
from physgen.problem import Downsample, Field, Observation, Problem, SensorSet
from physgen.solvers import diffusion_matrix

__all__ = ["Darcy"]


@dataclass(frozen=True)
class DarcyParams:
    """FNO defaults: a = 12 where ψ ≥ 0 and 3 where ψ < 0, ψ ~ N(0, (−Δ + 9)^{−2}), f = 1."""

    n: int = 64  # cells per axis on (0, 1)²
    alpha: float = 2.0
    tau: float = 3.0
    a_plus: float = 12.0
    a_minus: float = 3.0
    forcing: float = 1.0


class Darcy(Problem):
    """−∇·(a(x)∇u(x)) = f on (0, 1)², u = 0 on the boundary (Li et al. 2021, FNO, arXiv:2010.08895).

    Permeability: ψ ~ N(0, (−Δ + τ²)^{−α}) with the zero-Neumann Laplacian, sampled in the
    cosine basis (coefficients τ^{α−1}(π²|k|² + τ²)^{−α/2}, mean mode removed, inverse DCT),
    thresholded to ``a_plus`` (ψ ≥ 0) / ``a_minus``. Discretisation: cell-centred finite
    volumes, n² cells, harmonic face means (flux-continuous across the jumps), Dirichlet walls
    half a cell away; one sparse LU solve per sample. The FNO files were made on a 421² node
    grid with a different solver; this generator states its own discrete operator instead.

    ``residual`` = −flux_divergence(a, u) − f on every cell, ``(B, n, n)``, relative to
    RMS(f); the float64 generator output sits at ~1e-13.

    Example:
        >>> p = Darcy(n=16)
        >>> float(p.relative_residual(p.to_tensor(p.generate(2, seed=0))).max()) < 1e-10
        True
    """

    name = "darcy"
    Params = DarcyParams
    fields = (Field("a", "permeability"), Field("u", "pressure"))
    pde = "-div(a grad u) = f, u = 0 on the boundary"
    chunk = 16

    @cached_property
    def grid(self) -> Grid:
        return Grid((self.params.n, self.params.n), bc="dirichlet", centering="cell")

    @cached_property
    def _spectrum(self) -> np.ndarray:
        p = self.params
        k = np.arange(p.n)
        k2 = k[:, None] ** 2 + k[None, :] ** 2
        coef = p.tau ** (p.alpha - 1) * (np.pi**2 * k2 + p.tau**2) ** (-p.alpha / 2)
        coef[0, 0] = 0.0
        return coef

    def permeability(self, rng: np.random.Generator) -> np.ndarray:
        """One thresholded Gaussian permeability field ``(n, n)``."""
        p = self.params
        psi = scipy.fft.idctn(self._spectrum * rng.standard_normal((p.n, p.n)), type=2)
        return np.where(psi >= 0, p.a_plus, p.a_minus)

    def pressure(self, a: np.ndarray) -> np.ndarray:
        """The discrete solution u ``(n, n)`` for a positive permeability ``a`` ``(n, n)``."""
        f = np.full(self.grid.shape[0] * self.grid.shape[1], self.params.forcing)
        return spsolve(diffusion_matrix(a, self.grid).tocsc(), f).reshape(self.grid.shape)

    def _generate(self, rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
        a_all = [self.permeability(rng) for rng in rngs]
        return {"a": np.stack(a_all), "u": np.stack([self.pressure(a) for a in a_all])}

    def solve_state(self, fields: Tensor) -> Tensor:
        """(a, u) with u replaced by the discrete solution for a (which must be positive)."""
        return self._solve_from_coefficient(fields, self.pressure)

    def residual(self, fields: Tensor) -> Tensor:
        """−∇·(a∇u) − f per cell, ``(B, n, n)``."""
        self._check_fields(fields)
        a, u = fields[:, 0], fields[:, 1]
        return -flux_divergence(a, u, self.grid) - self.params.forcing

    def residual_scale(self, fields: Tensor) -> Tensor:
        """RMS(f) = |f| for the constant forcing."""
        return fields.new_full((fields.shape[0],), abs(self.params.forcing))

    def constraints(self, fields: Tensor) -> dict[str, Tensor]:
        """``positivity``: max(0, −min a); ``maximum_principle``: max(0, −min u) (f ≥ 0)."""
        self._check_fields(fields)
        a, u = fields[:, 0].flatten(1), fields[:, 1].flatten(1)
        out = {"positivity": (-a.min(1).values).clamp_min(0)}
        if self.params.forcing >= 0:
            out["maximum_principle"] = (-u.min(1).values).clamp_min(0)
        return out

    def observations(self) -> dict[str, Observation]:
        """``downsample4``: 4× block mean of both fields; ``pressure_sensors``: u every 4th cell."""
        n = self.params.n
        idx = np.arange(2, n, 4)
        points = [(i, j) for i in idx for j in idx]
        obs: dict[str, Observation] = {
            "pressure_sensors": SensorSet.from_indices(self.field_names, {"u": points})
        }
        if n % 4 == 0:
            obs["downsample4"] = Downsample(4, 2, "mean")
        return obs

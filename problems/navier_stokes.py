"""2-D incompressible Navier–Stokes in vorticity form on the periodic unit square (FNO setting)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from physgen.grids import Grid
from physgen.operators import vorticity_tendency
from physgen.problem import (
    Downsample,
    Field,
    Observation,
    TimeDependentProblem,
    substeps,
)
from physgen.random_fields import precision_operator_density
from physgen.solvers import SpectralGrid, advance_vorticity, integrate_vorticity

__all__ = ["NavierStokes"]


@dataclass(frozen=True)
class NavierStokesParams:
    """FNO defaults: ν = 1e-3, T = 50, one frame per unit time, ω₀ ~ N(0, 7^{3/2}(−Δ+49)^{−2.5})."""

    n: int = 64
    viscosity: float = 1e-3
    t_end: float = 50.0
    dt_save: float = 1.0
    dt: float = 1e-2  # IMEX step
    forcing_amplitude: float = 0.1  # f = 0.1 (sin 2π(x+y) + cos 2π(x+y))
    ic_alpha: float = 2.5
    ic_tau: float = 7.0
    time_order: int = 4


class NavierStokes(TimeDependentProblem):
    """ω_t + u·∇ω = νΔω + f, u = (∂ψ/∂y, −∂ψ/∂x), −Δψ = ω on [0, 1)² (Li et al. 2021, FNO).

    f = 0.1(sin 2π(x+y) + cos 2π(x+y)); ω₀ ~ N(0, 2·7³(−Δ + 49)^{−2.5}) (the FNO GaussianRF
    amplitude √2 τ^{(2α−d)/2}), mean and Nyquist modes removed. Solver: rFFT pseudo-spectral
    at the stored resolution, Crank–Nicolson on νΔ, Heun on advection + forcing, 2/3 rule on
    the product (``physgen.solvers.vorticity_step``). The FNO data were made at 256² and
    subsampled; here the stored grid is the solver grid, so the residual can use its operator.

    ``residual`` (fields ``(B, 1, T, n, n)``) is the one-step defect (ω_{j+1} − S ω_j)/Δt of
    ``TimeDependentProblem``: S is the generator's ``dt_save / dt`` IMEX steps
    (``solvers.advance_vorticity``, 100 per frame in the FNO layout) in torch, relative to
    RMS((ω_{j+1} − ω_j)/Δt); it costs about as much as generating the trajectory. With one
    frame per unit time a time difference is blind: ``difference_residual`` = ω_t −
    [−D(u·∇ω) + νΔω + f] with a fourth-order difference has a floor of ~5e-2 in the FNO
    layout (n = 64, T = 50), and 1 % noise gives a floor / noisy ratio of ~3e-2. The
    one-step defect's floor is round-off — ~1e-14 in float64 (asserted ≤ 1e-12), ~1e-7
    after float32 storage — against ~5e-2 for 1 % noise (ratio ~3e-6; < 1e-2 asserted).
    """

    name = "navier_stokes"
    Params = NavierStokesParams
    fields = (Field("w", "vorticity", "s-1"),)
    pde = "w_t + u . grad w = nu lap w + f, div u = 0, periodic"
    chunk = 8

    @cached_property
    def grid(self) -> Grid:
        return Grid((self.params.n, self.params.n), bc="periodic", centering="node")

    @property
    def time_units(self) -> str:
        return "s"

    @property
    def space_units(self) -> str:
        return "m"

    def forcing(self) -> np.ndarray:
        """The forcing field f on the grid, ``(n, n)``."""
        x, y = self.grid.mesh()
        s = 2 * np.pi * (x + y)
        return self.params.forcing_amplitude * (np.sin(s) + np.cos(s))

    def _generate(self, rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
        p = self.params
        spectral = SpectralGrid(self.grid)
        # The FNO GaussianRF amplitude √2·τ^{(2α−d)/2}.
        density = precision_operator_density(
            2 * p.ic_tau ** (2 * p.ic_alpha - 2), p.ic_tau, p.ic_alpha
        )
        w0 = spectral.gaussian_fields(rngs, density)
        frames = integrate_vorticity(
            w0,
            spectral,
            dt=p.dt,
            steps_per_save=substeps(p.dt_save, p.dt),
            saves=len(self.time) - 1,
            viscosity=p.viscosity,
            drag=0.0,
            forcing=self.forcing(),
        )
        return {"w": frames}

    def advance(self, states: Tensor) -> Tensor:
        """``dt_save / dt`` IMEX steps of the generator (``solvers.vorticity_step``), in torch."""
        p = self.params
        return advance_vorticity(
            states,
            self.spectral_grid(states),
            steps=substeps(p.dt_save, p.dt),
            dt=p.dt,
            viscosity=p.viscosity,
            drag=0.0,
            forcing=self.forcing(),
        )

    def tendency(self, fields: Tensor) -> Tensor:
        """F(ω) = −D(u·∇ω) + νΔω + f (``operators.vorticity_tendency``)."""
        f = torch.as_tensor(self.forcing(), dtype=fields.dtype, device=fields.device)
        return vorticity_tendency(fields, self.grid, viscosity=self.params.viscosity, forcing=f)

    def constraints(self, fields: Tensor) -> dict[str, Tensor]:
        """``mean_vorticity``: max over frames of |mean ω| (zero for a periodic velocity)."""
        self._check_fields(fields)
        return {"mean_vorticity": fields[:, 0].flatten(2).mean(-1).abs().amax(-1)}

    def observations(self) -> dict[str, Observation]:
        """``downsample4`` and ``subsample4`` (Shu et al.'s ``[::4, ::4]``) in space."""
        if self.params.n % 4:
            return {}
        return {
            "downsample4": Downsample(4, 2, "mean"),
            "subsample4": Downsample(4, 2, "subsample"),
        }

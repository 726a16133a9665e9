"""Reference solvers (numpy/scipy) for the problems: FV diffusion matrix, ETDRK4, vorticity IMEX.

Each solver discretises space exactly as the torch operators in ``physgen.operators`` do, so a
problem's ``residual`` evaluates the generator's own discrete operator:

* ``diffusion_matrix`` is the sparse matrix of ``−flux_divergence`` (FV, harmonic/arithmetic
  face means, ghost values from the boundary conditions);
* ``SpectralGrid`` holds the ``rfftn`` wavenumbers, the odd-derivative Nyquist rule and the
  2/3 dealiasing mask of ``operators``; ``TorchSpectralGrid`` is its torch twin, on which
  ``etdrk4``, ``vorticity_step`` and ``advance_vorticity`` run unchanged and differentiably
  (the problems' one-step residuals advance stored frames with the generator's own code);
* ``etdrk4`` is the fourth-order exponential time differencing Runge–Kutta scheme of Cox &
  Matthews (2002) with the contour-integral coefficients of Kassam & Trefethen (2005);
* ``vorticity_step`` is the Crank–Nicolson/Heun IMEX step for 2-D vorticity (as in the FNO
  data generator, Li et al. 2021, with linear drag).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from physgen.grids import Grid
from physgen.random_fields import spectral_field

__all__ = [
    "SpectralGrid",
    "TorchSpectralGrid",
    "advance_vorticity",
    "check_positive",
    "diffusion_matrix",
    "etdrk4",
    "etdrk4_map",
    "integrate_vorticity",
    "vorticity_step",
]


def check_positive(values: np.ndarray, name: str, owner: str) -> None:
    """Raise a clear ``ValueError`` unless every entry of ``values`` is finite and positive."""
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        raise ValueError(
            f"{owner}: {name} must be finite and positive; {int(bad.sum())} of {values.size} "
            f"values are not (min {np.nanmin(values):.4g}). Clamp generated coefficients to "
            "their physical range first"
        )


def diffusion_matrix(a: np.ndarray, grid: Grid, *, mean: str = "harmonic") -> sp.csr_matrix:
    """Sparse matrix A with ``A @ u.ravel() == −flux_divergence(a, u, grid).ravel()``.

    Rows and columns follow the C-order flattening of ``grid.shape``. The ghost rules of
    ``operators.pad`` become matrix entries: a Dirichlet cell face adds ``2·a_i/h²`` (odd
    reflection), a Neumann face adds nothing, a periodic face couples the two ends. Node
    grids are not supported (their Dirichlet ghost depends on the boundary value).
    """
    if grid.centering != "cell":
        raise ValueError("diffusion_matrix: needs a cell-centred grid")
    a = np.asarray(a, dtype=np.float64)
    if a.shape != grid.shape:
        raise ValueError(f"diffusion_matrix: coefficient shape {a.shape} != grid {grid.shape}")
    index = np.arange(a.size).reshape(grid.shape)
    rows, cols, vals = [], [], []
    diag = np.zeros(grid.shape)
    for axis in range(grid.ndim):
        h2 = grid.spacing[axis] ** 2
        n = grid.shape[axis]
        left = np.take(a, range(n - 1), axis=axis)
        right = np.take(a, range(1, n), axis=axis)
        face = 2 * left * right / (left + right) if mean == "harmonic" else 0.5 * (left + right)
        i_left = np.take(index, range(n - 1), axis=axis).ravel()
        i_right = np.take(index, range(1, n), axis=axis).ravel()
        w = (face / h2).ravel()
        rows += [i_left, i_right]
        cols += [i_right, i_left]
        vals += [-w, -w]
        np.add.at(diag.reshape(-1), i_left, w)
        np.add.at(diag.reshape(-1), i_right, w)
        first = np.take(index, [0], axis=axis).ravel()
        last = np.take(index, [n - 1], axis=axis).ravel()
        bc = grid.bc[axis]
        if bc == "dirichlet":
            for i in (first, last):
                np.add.at(diag.reshape(-1), i, 2 * a.reshape(-1)[i] / h2)
        elif bc == "periodic":
            al, ar = a.reshape(-1)[last], a.reshape(-1)[first]
            fw = (2 * al * ar / (al + ar) if mean == "harmonic" else 0.5 * (al + ar)) / h2
            rows += [last, first]
            cols += [first, last]
            vals += [-fw, -fw]
            np.add.at(diag.reshape(-1), last, fw)
            np.add.at(diag.reshape(-1), first, fw)
    rows.append(index.ravel())
    cols.append(index.ravel())
    vals.append(diag.ravel())
    m = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(a.size,) * 2
    )
    return m.tocsr()


class SpectralGrid:
    """Wavenumbers of a periodic grid on the ``rfftn`` half-grid, matching ``operators``."""

    def __init__(self, grid: Grid) -> None:
        if not grid.periodic:
            raise ValueError("SpectralGrid: every axis must be periodic")
        self.grid = grid
        ks, keep = [], []
        last = grid.ndim - 1
        for i, (n, h) in enumerate(zip(grid.shape, grid.spacing, strict=True)):
            freq = np.fft.rfftfreq if i == last else np.fft.fftfreq
            k = 2 * math.pi * freq(n, d=h)
            integer = freq(n, d=1.0 / n)
            odd = k.copy()
            if n % 2 == 0:
                odd[np.isclose(np.abs(integer), n / 2)] = 0.0  # Nyquist: no odd derivative
            ks.append((k, odd))
            keep.append(np.abs(integer) < n / 3)
        shape = [len(k) for k, _ in ks]
        self.k = [
            np.reshape(k, [-1 if j == i else 1 for j in range(grid.ndim)])
            for i, (k, _) in enumerate(ks)
        ]
        self.k_odd = [
            np.reshape(o, [-1 if j == i else 1 for j in range(grid.ndim)])
            for i, (_, o) in enumerate(ks)
        ]
        self.k2 = sum(k**2 for k in self.k) * np.ones(shape)
        mask = np.ones(shape, dtype=bool)
        for i, kp in enumerate(keep):
            mask &= np.reshape(kp, [-1 if j == i else 1 for j in range(grid.ndim)])
        self.dealias = mask.astype(np.float64)
        self.axes = tuple(range(-grid.ndim, 0))
        # Modes with a Nyquist index on some axis: their odd derivatives are dropped.
        resolved = np.ones(shape, dtype=bool)
        for k, odd in zip(self.k, self.k_odd, strict=True):
            resolved &= (odd != 0) | (k == 0)
        self.nyquist_free = resolved.astype(np.float64)
        # 1/|k|² with the mean mode set to 0: the inverse Laplacian's symbol.
        self.inverse_k2 = np.where(self.k2 > 0, 1 / np.where(self.k2 > 0, self.k2, 1.0), 0.0)

    def gaussian_fields(
        self,
        rngs: list[np.random.Generator],
        density: Callable[[np.ndarray], np.ndarray],
        *,
        mask: np.ndarray | None = None,
    ) -> np.ndarray:
        """``(len(rngs), *grid)`` stationary Gaussian fields (``spectral_field``), one per rng.

        ``mask`` (default ``nyquist_free``) filters the modes, so the fields hold only modes
        the spectral operators differentiate exactly.
        """
        fields = np.stack(
            [spectral_field(r, self.grid.shape, self.grid.lengths, density) for r in rngs]
        )
        return self.ifft(self.fft(fields) * (self.nyquist_free if mask is None else mask))

    def fft(self, u: np.ndarray) -> np.ndarray:
        """rfftn over the grid axes (trailing)."""
        return np.fft.rfftn(u, axes=self.axes)

    def ifft(self, u_hat: np.ndarray) -> np.ndarray:
        """irfftn back to the grid."""
        return np.fft.irfftn(u_hat, s=self.grid.shape, axes=self.axes)

    def derivative_hat(self, u_hat: np.ndarray, axis: int) -> np.ndarray:
        """Spectral ∂/∂x_axis (Nyquist dropped, as ``operators.derivative``)."""
        return 1j * self.k_odd[axis] * u_hat

    def asarray(self, a: np.ndarray) -> np.ndarray:
        """A numpy coefficient array in this grid's backend (numpy here)."""
        return np.asarray(a)


class TorchSpectralGrid(SpectralGrid):
    """:class:`SpectralGrid` with torch tensors of one real ``dtype`` on one ``device``.

    The wavenumbers, masks and FFT conventions are those of the numpy grid (built by it, then
    converted), so a solver written against the ``SpectralGrid`` interface computes the same
    discrete map on either backend, up to round-off, and differentiably on this one.
    """

    def __init__(
        self, grid: Grid, *, dtype: torch.dtype = torch.float64, device: torch.device | None = None
    ) -> None:
        super().__init__(grid)
        if not dtype.is_floating_point:
            raise ValueError(f"TorchSpectralGrid: dtype must be a real float type, got {dtype}")
        self.dtype, self.device = dtype, device
        self.k = [self.asarray(k) for k in self.k]
        self.k_odd = [self.asarray(k) for k in self.k_odd]
        for name in ("k2", "dealias", "nyquist_free", "inverse_k2"):
            setattr(self, name, self.asarray(getattr(self, name)))

    def fft(self, u: Tensor) -> Tensor:  # type: ignore[override]
        return torch.fft.rfftn(u, dim=self.axes)

    def ifft(self, u_hat: Tensor) -> Tensor:  # type: ignore[override]
        return torch.fft.irfftn(u_hat, s=self.grid.shape, dim=self.axes)

    def asarray(self, a: np.ndarray) -> Tensor:  # type: ignore[override]
        """A numpy array as a tensor of this grid's real (or matching complex) dtype."""
        a = np.asarray(a)
        dtype = self.dtype.to_complex() if np.iscomplexobj(a) else self.dtype
        return torch.as_tensor(a, dtype=dtype, device=self.device)


def _to_numpy(a: np.ndarray | Tensor) -> np.ndarray:
    """A coefficient array as numpy (the ETDRK4 coefficients are computed once, in numpy)."""
    return a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)


def _like(a: np.ndarray, ref: np.ndarray | Tensor) -> np.ndarray | Tensor:
    """A real coefficient array in the backend of the state ``ref`` (its real dtype, device)."""
    if isinstance(ref, Tensor):
        return torch.as_tensor(a, dtype=ref.real.dtype, device=ref.device)
    return a


def _phi_functions(z: np.ndarray, contour_points: int) -> tuple[np.ndarray, ...]:
    """ETDRK4 coefficients as means over a unit circle around each z (Kassam–Trefethen)."""
    roots = np.exp(1j * math.pi * (np.arange(1, contour_points + 1) - 0.5) / contour_points)
    lr = z[..., None] + roots  # (..., M)
    q = np.mean((np.exp(lr / 2) - 1) / lr, axis=-1).real
    f1 = np.mean((-4 - lr + np.exp(lr) * (4 - 3 * lr + lr**2)) / lr**3, axis=-1).real
    f2 = np.mean((2 + lr + np.exp(lr) * (-2 + lr)) / lr**3, axis=-1).real
    f3 = np.mean((-4 - 3 * lr - lr**2 + np.exp(lr) * (4 - lr)) / lr**3, axis=-1).real
    return q, f1, f2, f3


def etdrk4(
    u_hat: np.ndarray,
    linear: np.ndarray,
    nonlinear: Callable[[np.ndarray], np.ndarray],
    *,
    dt: float,
    steps_per_save: int,
    saves: int,
    contour_points: int = 32,
) -> list[np.ndarray]:
    """Integrate û_t = L û + N(û) with ETDRK4; returns ``saves`` states after each save interval.

    ``linear`` is the diagonal L (real, on the spectral grid); ``nonlinear`` maps û → N(û).
    ``u_hat`` may be a numpy array or a (complex) tensor, with ``nonlinear`` in the same
    backend (e.g. built on a :class:`TorchSpectralGrid`).
    The coefficients use complex contour means (``contour_points`` roots), which avoids the
    cancellation of the φ-functions near L·dt = 0.
    """
    z = dt * _to_numpy(linear)
    coefficients = (np.exp(z), np.exp(z / 2), *(dt * c for c in _phi_functions(z, contour_points)))
    e, e2, q, f1, f2, f3 = (_like(c, u_hat) for c in coefficients)
    states = []
    v = u_hat
    for _ in range(saves):
        for _ in range(steps_per_save):
            nv = nonlinear(v)
            a = e2 * v + q * nv
            na = nonlinear(a)
            b = e2 * v + q * na
            nb = nonlinear(b)
            c = e2 * a + q * (2 * nb - nv)
            nc = nonlinear(c)
            v = e * v + nv * f1 + 2 * (na + nb) * f2 + nc * f3
        states.append(v)
    return states


def etdrk4_map(
    u: np.ndarray | Tensor,
    spectral: SpectralGrid,
    linear: np.ndarray | Tensor,
    nonlinear: Callable[[Any], Any],
    *,
    dt: float,
    steps: int,
) -> np.ndarray | Tensor:
    """Grid values ``u (..., *grid)`` after ``steps`` ETDRK4 steps (``spectral``'s backend)."""
    (v,) = etdrk4(spectral.fft(u), linear, nonlinear, dt=dt, steps_per_save=steps, saves=1)
    return spectral.ifft(v)


def vorticity_step(
    w_hat: np.ndarray,
    spectral: SpectralGrid,
    *,
    dt: float,
    viscosity: float,
    drag: float,
    forcing_hat: np.ndarray,
) -> np.ndarray:
    """One Crank–Nicolson (νΔ − μ) / Heun (advection + forcing) step of 2-D vorticity.

    ω_t + u·∇ω = νΔω − μω + f with u = (∂ψ/∂y, −∂ψ/∂x), −Δψ = ω; the advection product is
    dealiased by the 2/3 rule.
    """
    linear = -viscosity * spectral.k2 - drag
    implicit = 1 / (1 - 0.5 * dt * linear)
    explicit = 1 + 0.5 * dt * linear

    def advection_hat(v_hat: np.ndarray) -> np.ndarray:
        psi_hat = v_hat * spectral.inverse_k2
        ux = spectral.ifft(spectral.derivative_hat(psi_hat, 1))
        uy = -spectral.ifft(spectral.derivative_hat(psi_hat, 0))
        wx = spectral.ifft(spectral.derivative_hat(v_hat, 0))
        wy = spectral.ifft(spectral.derivative_hat(v_hat, 1))
        return spectral.dealias * spectral.fft(ux * wx + uy * wy)

    f1 = forcing_hat - advection_hat(w_hat)
    predictor = (explicit * w_hat + dt * f1) * implicit
    f2 = forcing_hat - advection_hat(predictor)
    return (explicit * w_hat + dt * 0.5 * (f1 + f2)) * implicit


def integrate_vorticity(
    w0: np.ndarray,
    spectral: SpectralGrid,
    *,
    dt: float,
    steps_per_save: int,
    saves: int,
    viscosity: float,
    drag: float,
    forcing: np.ndarray,
    spinup_steps: int = 0,
) -> np.ndarray:
    """Frames ``(..., saves + 1, nx, ny)`` of ``vorticity_step`` from ``w0 (..., nx, ny)``.

    The first frame is the state after ``spinup_steps`` steps; then one frame every
    ``steps_per_save`` steps.
    """
    settings = {"dt": dt, "viscosity": viscosity, "drag": drag}
    settings["forcing_hat"] = spectral.fft(forcing)
    w_hat = _vorticity_steps(spectral.fft(w0), spectral, spinup_steps, **settings)
    frames = [spectral.ifft(w_hat)]
    for _ in range(saves):
        w_hat = _vorticity_steps(w_hat, spectral, steps_per_save, **settings)
        frames.append(spectral.ifft(w_hat))
    return np.stack(frames, axis=-3)


def advance_vorticity(
    w: np.ndarray | Tensor,
    spectral: SpectralGrid,
    *,
    steps: int,
    dt: float,
    viscosity: float,
    drag: float,
    forcing: np.ndarray,
) -> np.ndarray | Tensor:
    """Grid vorticity ``w (..., nx, ny)`` after ``steps`` applications of ``vorticity_step``.

    Runs on either backend: numpy arrays on a :class:`SpectralGrid`, tensors on a
    :class:`TorchSpectralGrid` (``forcing``, a numpy array on the grid, is converted).
    """
    forcing_hat = spectral.fft(spectral.asarray(forcing))
    settings = {"dt": dt, "viscosity": viscosity, "drag": drag, "forcing_hat": forcing_hat}
    return spectral.ifft(_vorticity_steps(spectral.fft(w), spectral, steps, **settings))


def _vorticity_steps(
    w_hat: np.ndarray | Tensor, spectral: SpectralGrid, steps: int, **settings: Any
) -> np.ndarray | Tensor:
    """``steps`` applications of ``vorticity_step`` to the spectral state ``w_hat``."""
    for _ in range(steps):
        w_hat = vorticity_step(w_hat, spectral, **settings)
    return w_hat

r"""Classical gap filling, the baselines of inpainting: harmonic fill and kriging.

* :func:`harmonic_fill` solves Laplace's equation on the missing points with the observed
  values as Dirichlet data, on the 5-point (in 2-D; 2d+1-point in d-D) stencil with weights
  :math:`1/h_i^2`:

  .. math:: \sum_i \frac{u_{p+e_i} - 2u_p + u_{p-e_i}}{h_i^2} = 0 \quad (p \text{ missing}).

  A neighbour outside a bounded axis is dropped (zero flux through the boundary); periodic
  axes wrap. One sparse LU factorization serves every field of a batch.
* :func:`kriging` is Gaussian-process regression ("simple kriging with a plug-in mean";
  Rasmussen & Williams 2006, ch. 2 and 5): a constant mean and a Matérn-5/2 covariance
  :math:`k(r) = \sigma^2(1 + \sqrt5 r/\ell + 5r^2/3\ell^2)e^{-\sqrt5 r/\ell}` whose length
  scale maximizes the marginal likelihood of the observed values (σ² and the mean profiled
  out in closed form), then the Gaussian conditional of the missing values,

  .. math:: \mu_m = \mu + K_{mo}K_{oo}^{-1}(y_o - \mu),\qquad
            \Sigma_m = K_{mm} - K_{mo}K_{oo}^{-1}K_{om},

  from which it draws an ensemble.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["KrigingFit", "harmonic_fill", "kriging"]


def _grid_mask(missing: ArrayLike, shape: tuple[int, ...], name: str) -> np.ndarray:
    mask = np.asarray(missing)
    if mask.dtype != bool or mask.shape != shape:
        raise ValueError(f"{name}: missing must be a boolean mask of shape {shape}, got "
                         f"{mask.dtype} {mask.shape}")  # fmt: skip
    if not mask.any() or mask.all():
        raise ValueError(f"{name}: need some missing and some observed points")
    return mask


def harmonic_fill(
    fields: ArrayLike,
    missing: ArrayLike,
    *,
    spacing: float | Sequence[float] = 1.0,
    periodic: bool | Sequence[bool] = False,
) -> np.ndarray:
    """Fill the ``missing`` points of ``fields`` ``(..., *grid)`` with the discrete harmonic
    interpolant of the observed values (see the module docstring).

    Args:
        fields: values on the grid; those at missing points are ignored.
        missing: boolean grid mask, true where a value is to be filled.
        spacing: grid spacing per axis (only ratios matter).
        periodic: per-axis periodicity.

    Returns:
        float64 copy of ``fields`` with the missing points filled.
    """
    import scipy.sparse  # here: keeps ``import physgen.inverse`` light
    import scipy.sparse.linalg

    mask = np.asarray(missing)
    d = mask.ndim
    x = np.array(fields, dtype=np.float64)
    mask = _grid_mask(mask, tuple(x.shape[x.ndim - d :]), "harmonic_fill")
    h = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (d,))
    wrap = np.broadcast_to(np.asarray(periodic, dtype=bool), (d,))
    shape = mask.shape
    number = -np.ones(shape, dtype=np.int64)
    unknown = np.flatnonzero(mask)
    number.flat[unknown] = np.arange(unknown.size)
    coords = np.unravel_index(unknown, shape)
    rows, cols, vals = [], [], []
    diag = np.zeros(unknown.size)
    known_rows, known_flat, known_w = [], [], []
    for axis in range(d):
        w = 1.0 / h[axis] ** 2
        for step in (-1, 1):
            nb = [c.copy() for c in coords]
            nb[axis] = nb[axis] + step
            inside = np.ones(unknown.size, dtype=bool)
            if wrap[axis]:
                nb[axis] %= shape[axis]
            else:
                inside = (nb[axis] >= 0) & (nb[axis] < shape[axis])
            flat = np.ravel_multi_index([c[inside] for c in nb], shape)
            row = np.flatnonzero(inside)
            diag[row] += w
            to_unknown = number.flat[flat] >= 0
            rows.append(row[to_unknown])
            cols.append(number.flat[flat[to_unknown]])
            vals.append(np.full(int(to_unknown.sum()), -w))
            known_rows.append(row[~to_unknown])
            known_flat.append(flat[~to_unknown])
            known_w.append(np.full(int((~to_unknown).sum()), w))
    n = unknown.size
    a = scipy.sparse.csc_matrix(
        (np.concatenate([diag, *vals]), (np.concatenate([np.arange(n), *rows]),
                                         np.concatenate([np.arange(n), *cols]))),
        shape=(n, n),
    )  # fmt: skip
    b = scipy.sparse.csr_matrix(
        (np.concatenate(known_w), (np.concatenate(known_rows), np.concatenate(known_flat))),
        shape=(n, mask.size),
    )  # the coupling of each unknown to its observed neighbours
    # Nonsingular: every connected missing region borders an observed point (some are).
    lu = scipy.sparse.linalg.splu(a)
    flat = x.reshape(-1, mask.size)  # (batch, N)
    filled = lu.solve(np.ascontiguousarray(b @ flat.T))  # (n, batch)
    flat[:, unknown] = filled.T
    return flat.reshape(x.shape)


def _matern52(r: np.ndarray, length: float) -> np.ndarray:
    s = math.sqrt(5.0) * r / length
    return (1.0 + s + s * s / 3.0) * np.exp(-s)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))


@dataclass(frozen=True)
class KrigingFit:
    """The Gaussian conditional of the missing values of one field.

    Attributes:
        mean: conditional mean ``(n_missing,)``.
        cov: conditional covariance ``(n_missing, n_missing)``.
        length_scale: fitted Matérn length scale ℓ (units of the coordinates).
        variance: fitted σ².
        level: fitted constant mean μ.
    """

    mean: np.ndarray
    cov: np.ndarray
    length_scale: float
    variance: float
    level: float

    @property
    def std(self) -> np.ndarray:
        """Conditional standard deviation of each missing value."""
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws ``(n, n_missing)`` of the conditional Gaussian."""
        lam, q = np.linalg.eigh(self.cov)
        z = rng.standard_normal((n, lam.size))
        return self.mean + (z * np.sqrt(np.clip(lam, 0.0, None))) @ q.T


def kriging(
    values: ArrayLike,
    missing: ArrayLike,
    coords: Sequence[ArrayLike],
    *,
    length_scale: float | None = None,
    noise_std: float = 0.0,
    jitter: float = 1e-8,
) -> KrigingFit:
    """Gaussian-process (kriging) prediction of the missing values of one field.

    Args:
        values: the field on the grid ``(*grid)``; values at missing points are ignored.
        missing: boolean grid mask, true where a value is to be predicted.
        coords: one coordinate array of the grid's shape per axis (``Grid.mesh()``).
        length_scale: fix ℓ instead of maximizing the marginal likelihood.
        noise_std: σ of observation noise, a nugget ``σ_n²/var(y_o)`` on the correlation
            matrix (relative to the sample variance of the observed values).
        jitter: relative diagonal regularization of ``K_oo`` (numerical).

    Returns:
        A :class:`KrigingFit` with the conditional mean and covariance of the missing values
        in row-major order.
    """
    import scipy.linalg  # here: keeps ``import physgen.inverse`` light
    import scipy.optimize

    x = np.asarray(values, dtype=np.float64)
    mask = _grid_mask(missing, x.shape, "kriging")
    pts = np.stack([np.broadcast_to(np.asarray(c, dtype=np.float64), x.shape) for c in coords],
                   axis=-1).reshape(-1, len(coords))  # fmt: skip
    obs_pts, miss_pts = pts[~mask.ravel()], pts[mask.ravel()]
    y = x.ravel()[~mask.ravel()]
    n = y.size
    r_oo = _distances(obs_pts, obs_pts)
    ones = np.ones(n)

    def profile(length: float) -> tuple[float, float, float, tuple]:
        """−log L with σ² and μ at their maxima, for correlation length ``length``."""
        corr = _matern52(r_oo, length) + jitter * np.eye(n)
        scale = max(float(np.var(y)), 1e-300)
        corr = corr + (noise_std**2 / scale) * np.eye(n)
        factor = scipy.linalg.cho_factor(corr, lower=True)
        ri_one, ri_y = scipy.linalg.cho_solve(factor, ones), scipy.linalg.cho_solve(factor, y)
        level = float(ones @ ri_y / (ones @ ri_one))
        resid = y - level
        var = max(float(resid @ scipy.linalg.cho_solve(factor, resid)) / n, 1e-300)
        logdet = 2.0 * np.log(np.diag(factor[0])).sum()
        return 0.5 * (n * math.log(var) + logdet), level, var, factor

    extent = float(np.ptp(pts, axis=0).max())
    spacing = float(np.min(r_oo[r_oo > 0])) if n > 1 else extent
    if length_scale is None:
        res = scipy.optimize.minimize_scalar(
            lambda t: profile(math.exp(t))[0],
            bounds=(math.log(0.5 * spacing), math.log(10.0 * extent)),
            method="bounded",
            options={"xatol": 1e-3},
        )
        length_scale = math.exp(float(res.x))
    _, level, var, factor = profile(length_scale)
    k_mo = _matern52(_distances(miss_pts, obs_pts), length_scale)
    k_mm = _matern52(_distances(miss_pts, miss_pts), length_scale)
    mean = level + k_mo @ scipy.linalg.cho_solve(factor, y - level)
    cov = var * (k_mm - k_mo @ scipy.linalg.cho_solve(factor, k_mo.T))
    return KrigingFit(mean, 0.5 * (cov + cov.T), float(length_scale), var, level)

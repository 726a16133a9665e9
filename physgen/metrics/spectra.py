"""Radially averaged power spectra, log-spectral distance and two-point correlation of fields."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from physgen.metrics._common import ArrayLike, as_float64

__all__ = [
    "correlation_distance",
    "energy_spectrum",
    "log_spectral_distance",
    "spectral_slope",
    "spectrum_distance",
    "two_point_correlation",
]


def _window(n: int, kind: str, alpha: float, device: torch.device) -> Tensor:
    """A 1-D taper of length n: 'hann' or 'tukey' (cosine tapers over a fraction ``alpha``)."""
    i = torch.arange(n, dtype=torch.float64, device=device)
    if kind == "hann":
        return 0.5 - 0.5 * torch.cos(2 * math.pi * i / (n - 1))
    if kind == "tukey":
        if not 0 < alpha <= 1:
            raise ValueError(f"tukey window needs 0 < alpha ≤ 1, got {alpha}")
        x = i / (n - 1)
        w = torch.ones(n, dtype=torch.float64, device=device)
        edge = alpha / 2
        lo, hi = x < edge, x > 1 - edge
        w[lo] = 0.5 * (1 - torch.cos(math.pi * x[lo] / edge))
        w[hi] = 0.5 * (1 - torch.cos(math.pi * (1 - x[hi]) / edge))
        return w
    raise ValueError(f"window must be None, 'hann' or 'tukey', got {kind!r}")


def _grid_axes(u: Tensor, spatial_dims: int) -> tuple[int, ...]:
    if not 1 <= spatial_dims <= min(3, u.ndim):
        raise ValueError(
            f"spatial_dims={spatial_dims} does not fit an array of shape {tuple(u.shape)}"
        )
    return tuple(range(u.ndim - spatial_dims, u.ndim))


def _shells(
    grid: Sequence[int], lengths: Sequence[float], device: torch.device, *, lag: bool = False
) -> tuple[Tensor, float]:
    """Integer shell index of every FFT mode (or lag), and the shell width in physical units.

    Mode m_i on an axis of length L_i has wavenumber κ_i = 2π m_i / L_i; shells have width
    Δκ = min_i 2π/L_i (the fundamental of the longest axis), shell s holds
    ``(s−½)Δκ ≤ |κ| < (s+½)Δκ``.
    For lags (``lag=True``) the same construction runs on r_i = m_i·L_i/n_i with width min spacing.
    """
    if lag:
        steps = [length / n for n, length in zip(grid, lengths, strict=True)]
        axes = [
            torch.fft.fftfreq(n, device=device, dtype=torch.float64) * n * h
            for n, h in zip(grid, steps, strict=True)
        ]
        width = min(steps)
    else:
        axes = [
            torch.fft.fftfreq(n, device=device, dtype=torch.float64) * n * 2 * math.pi / length
            for n, length in zip(grid, lengths, strict=True)
        ]
        width = min(2 * math.pi / length for length in lengths)
    mesh = torch.meshgrid(*axes, indexing="ij")
    radius = torch.sqrt(sum(a.square() for a in mesh))
    return torch.round(radius / width).long(), width


def _lengths(grid: Sequence[int], lengths: Sequence[float] | float | None) -> list[float]:
    if lengths is None:
        return [2 * math.pi] * len(grid)  # integer wavenumbers and lags in grid steps·(2π/n)
    if isinstance(lengths, int | float):
        return [float(lengths)] * len(grid)
    if len(lengths) != len(grid):
        raise ValueError(f"lengths has {len(lengths)} entries for {len(grid)} spatial axes")
    return [float(v) for v in lengths]


def energy_spectrum(
    u: ArrayLike,
    *,
    spatial_dims: int,
    lengths: Sequence[float] | float | None = None,
    window: str | None = None,
    tukey_alpha: float = 0.25,
    detrend: bool = False,
) -> tuple[Tensor, Tensor]:
    """Radially averaged (shell-summed) power spectrum P(k) of each field.

    û = FFT(u)/n over the trailing ``spatial_dims`` axes (n grid points), and
    ``P(k) = Σ_{(k−½)Δκ ≤ |κ| < (k+½)Δκ} |û(κ)|²``, ``κ_i = 2π m_i / L_i``. Every mode falls in a
    shell, so Parseval holds exactly: Σ_k P(k) = mean_x u(x)². Half the shell sum of the velocity
    components is the kinetic-energy spectrum E(k); of the vorticity, the enstrophy spectrum.
    Up to the binning, this is the convention of The Well's ``power_spectrum`` and of the
    RAPSD of Harris et al. (arXiv:2204.02028).

    Non-periodic fields leak the jump between opposite edges into a k⁻² tail; pass
    ``window="hann"`` (or ``"tukey"``) to taper each axis first. The taper is rescaled so that
    mean(w²) = 1, which keeps the total power of a stationary field unchanged on average.

    Args:
        u: fields ``(..., *grid)``.
        spatial_dims: number of trailing spatial axes (1, 2 or 3).
        lengths: domain length per axis (or one for all); default 2π, which makes the
            wavenumbers the integer mode numbers.
        window: None, "hann" or "tukey".
        detrend: subtract each field's spatial mean before tapering.

    Returns:
        ``(k, P)``: wavenumbers ``(K,)`` (shell centres, angular, in 1/length units) and spectra
        ``(..., K)``; average P over samples for the ensemble spectrum.

    Example:
        >>> x = torch.linspace(0, 2 * math.pi, 65)[:-1]
        >>> k, P = energy_spectrum(torch.sin(3 * x)[None], spatial_dims=1)
        >>> int(P[0].argmax())
        3
    """
    t = as_float64(u, name="u")
    axes = _grid_axes(t, spatial_dims)
    grid = [t.shape[a] for a in axes]
    if detrend:
        t = t - t.mean(axes, keepdim=True)
    if window is not None:
        for axis, n in zip(axes, grid, strict=True):
            w = _window(n, window, tukey_alpha, t.device)
            w = w / w.square().mean().sqrt()
            shape = [1] * t.ndim
            shape[axis] = n
            t = t * w.reshape(shape)
    npts = math.prod(grid)
    power = torch.fft.fftn(t, dim=axes).abs().square() / npts**2  # |û|², Σ = mean u²
    shells, width = _shells(grid, _lengths(grid, lengths), t.device)
    n_shells = int(shells.max()) + 1
    flat = power.flatten(start_dim=t.ndim - spatial_dims)  # (..., n)
    spectrum = torch.zeros(*flat.shape[:-1], n_shells, dtype=torch.float64, device=t.device)
    spectrum.index_add_(flat.ndim - 1, shells.flatten(), flat)
    k = torch.arange(n_shells, dtype=torch.float64, device=t.device) * width
    return k, spectrum


def spectral_slope(k: Tensor, spectrum: Tensor, *, k_min: float, k_max: float) -> float:
    """Least-squares slope of log P against log k over k_min ≤ k ≤ k_max (a power-law exponent)."""
    mask = (k >= k_min) & (k <= k_max) & (spectrum > 0)
    if int(mask.sum()) < 2:
        raise ValueError(f"fewer than 2 positive spectrum values in [{k_min}, {k_max}]")
    x, y = k[mask].log(), spectrum[mask].log()
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / xc.square().sum())


def log_spectral_distance(
    spectrum: ArrayLike, reference: ArrayLike, *, k_min: int = 1, k_max: int | None = None
) -> Tensor:
    """Log-spectral distance LSD = √( mean_k (log10 P̂(k) − log10 P(k))² ), k_min ≤ k ≤ k_max.

    The radially averaged log-spectral distance (RALSD) of Harris et al. (arXiv:2204.02028),
    on shell indices. The mean mode (k = 0) is left out by default; shells where either
    spectrum is zero are skipped (their logarithm is undefined).
    """
    p = as_float64(spectrum, name="spectrum")
    q = as_float64(reference, name="reference").to(p.device)
    stop = min(p.shape[-1], q.shape[-1])
    if k_max is not None:
        stop = min(stop, k_max + 1)
    p, q = p[..., k_min:stop], q[..., k_min:stop]
    ok = (p > 0) & (q > 0)
    diff = torch.where(ok, p.clamp_min(1e-300).log10() - q.clamp_min(1e-300).log10(), 0.0)
    return (diff.square().sum(-1) / ok.sum(-1).clamp_min(1)).sqrt()


def spectrum_distance(
    samples: ArrayLike,
    ref: ArrayLike,
    *,
    spatial_dims: int,
    window: str | None = None,
    lengths: Sequence[float] | float | None = None,
    k_max: int | None = None,
) -> Tensor:
    """LSD between the sample-mean spectra of two sets of fields ``(N, ..., *grid)``.

    A two-set metric (so :func:`physgen.metrics.with_floor` can report the reference floor):
    spectra are averaged over every leading axis (samples, times) before the logarithm.
    """
    _, ps = energy_spectrum(samples, spatial_dims=spatial_dims, window=window, lengths=lengths)
    _, pr = energy_spectrum(ref, spatial_dims=spatial_dims, window=window, lengths=lengths)
    lead = tuple(range(ps.ndim - 1))
    return log_spectral_distance(ps.mean(lead), pr.mean(lead), k_max=k_max)


def two_point_correlation(
    u: ArrayLike,
    *,
    spatial_dims: int,
    periodic: bool = True,
    lengths: Sequence[float] | float | None = None,
) -> tuple[Tensor, Tensor]:
    """Radially averaged two-point correlation R(r) = ⟨u'(x) u'(x+r)⟩ / ⟨u'²⟩ of a set of fields.

    u' = u − μ with μ the pointwise mean over the sample axis (axis 0), so a deterministic
    trend (the sin term of the stochastic-elliptic coefficient) does not count as correlation.
    The covariance comes from Wiener–Khinchin, ``C(r) = IFFT(|FFT u'|²)/n``. Non-periodic
    fields are zero-padded to twice their size and each lag is divided by its number of
    overlapping pairs, the unbiased lag estimator. Lags are shell-averaged up to
    half the shortest axis.

    Args:
        u: fields ``(N, ..., *grid)``, N ≥ 2.
        spatial_dims: number of trailing spatial axes.
        periodic: whether the grid wraps around.
        lengths: domain length per axis; default gives lags in grid steps.

    Returns:
        ``(r, R)``: lags ``(K,)`` and the correlation ``(K,)`` averaged over samples (R(0) = 1).
    """
    t = as_float64(u, name="u")
    if t.ndim < spatial_dims + 1 or t.shape[0] < 2:
        raise ValueError(
            f"u: need (N ≥ 2, ..., *grid) with {spatial_dims} spatial axes, got {tuple(t.shape)}"
        )
    axes = _grid_axes(t, spatial_dims)
    grid = [t.shape[a] for a in axes]
    t = t - t.mean(0, keepdim=True)
    if periodic:
        cov = torch.fft.ifftn(torch.fft.fftn(t, dim=axes).abs().square(), dim=axes).real
        cov = cov / math.prod(grid)
        lag_grid = grid
    else:
        padded = [2 * n for n in grid]
        spec = torch.fft.fftn(t, s=padded, dim=axes)
        ones = torch.ones(grid, dtype=torch.float64, device=t.device)
        pairs = torch.fft.ifftn(torch.fft.fftn(ones, s=padded).abs().square()).real.round()
        cov = torch.fft.ifftn(spec.abs().square(), dim=axes).real / pairs.clamp_min(1)
        lag_grid = padded
    lead = tuple(range(t.ndim - spatial_dims))
    cov = cov.mean(lead)  # (*lag_grid)
    # Default: lags in grid steps (a length of n per axis).
    lens = [float(n) for n in grid] if lengths is None else _lengths(grid, lengths)
    if not periodic:
        lens = [2 * length for length in lens]  # same physical step on the padded grid
    shells, width = _shells(lag_grid, lens, t.device, lag=True)
    r_max = min(grid) // 2
    counts = torch.zeros(int(shells.max()) + 1, dtype=torch.float64, device=t.device)
    sums = torch.zeros_like(counts)
    counts.index_add_(0, shells.flatten(), torch.ones_like(cov).flatten())
    sums.index_add_(0, shells.flatten(), cov.flatten())
    radial = (sums / counts.clamp_min(1))[: r_max + 1]
    r = torch.arange(r_max + 1, dtype=torch.float64, device=t.device) * width
    return r, radial / radial[0]


def correlation_distance(
    samples: ArrayLike,
    ref: ArrayLike,
    *,
    spatial_dims: int,
    periodic: bool = True,
) -> Tensor:
    """RMS difference √(mean_r (R̂(r) − R(r))²) of the two sets' correlations over r ≤ L/2."""
    _, r_hat = two_point_correlation(samples, spatial_dims=spatial_dims, periodic=periodic)
    _, r_ref = two_point_correlation(ref, spatial_dims=spatial_dims, periodic=periodic)
    return (r_hat - r_ref).square().mean().sqrt()

"""Distances between a set of generated fields and a reference set (set-to-set metrics)."""

from __future__ import annotations

import torch
from torch import Tensor

from physgen.metrics._common import ArrayLike, as_float64, flatten_samples

__all__ = [
    "energy_distance",
    "frechet_distance",
    "marginal_w1",
    "mean_field_error",
    "mmd",
    "mmd_permutation_test",
    "sliced_wasserstein",
    "std_field_error",
    "std_ratio",
    "total_std",
    "total_std_error",
]


# Entries of one (D, L) matrix of slicing directions: 128 MiB in float64.
_DIRECTION_BUDGET = 2**24


def _two_sets(samples: ArrayLike, ref: ArrayLike) -> tuple[Tensor, Tensor]:
    x = flatten_samples(samples, name="samples")
    y = flatten_samples(ref, name="ref").to(x.device)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"samples have {x.shape[1]} values per sample but ref has {y.shape[1]}; "
            "both sets must hold fields on the same grid"
        )
    return x, y


def mean_field_error(samples: ArrayLike, ref: ArrayLike, *, relative_to: str = "mean") -> Tensor:
    """Relative error of the pointwise mean field, ‖μ̂ − μ‖₂ / ‖μ‖₂.

    μ̂, μ are sample means over axis 0 of ``(N, *grid)`` arrays; the norm runs over all grid
    points. This is the "mean error" of PI-GAN (Yang et al., arXiv:1811.02033) and of the PI-VAE
    code (WeihengZ/PI-VAE ``examples/SDE.py``: ``norm(mean_u − true_mean_u)/norm(true_mean_u)``).
    For zero-mean fields (GRFs, vorticity) that ratio divides by noise; ``relative_to="std"``
    divides by ‖σ‖₂ instead (σ the reference's pointwise std), the mean error in units of the
    spread.
    """
    x, y = _two_sets(samples, ref)
    if relative_to == "mean":
        scale = torch.linalg.vector_norm(y.mean(0))
    elif relative_to == "std":
        scale = torch.linalg.vector_norm(y.std(0))
    else:
        raise ValueError(f"relative_to must be 'mean' or 'std', got {relative_to!r}")
    return torch.linalg.vector_norm(x.mean(0) - y.mean(0)) / scale


def std_field_error(samples: ArrayLike, ref: ArrayLike, *, ddof: int = 1) -> Tensor:
    """Relative error of the pointwise standard-deviation field, ‖σ̂ − σ‖₂ / ‖σ‖₂.

    σ̂(x), σ(x) are per-point standard deviations over the samples (PI-GAN, arXiv:1811.02033,
    compares these curves). For the scalar variant that the PI-VAE code reports, see
    :func:`total_std_error`.
    """
    x, y = _two_sets(samples, ref)
    s_hat, s = x.std(0, correction=ddof), y.std(0, correction=ddof)
    return torch.linalg.vector_norm(s_hat - s) / torch.linalg.vector_norm(s)


def std_ratio(samples: ArrayLike, ref: ArrayLike, *, ddof: int = 1) -> Tensor:
    r"""Collapse check: the mean over points of the pointwise std ratio,
    :math:`\frac1D\sum_x \hat\sigma(x)/\sigma(x)`.

    1 for a model with the data's spread, below 1 for a collapsed (too narrow) one and above
    1 for an over-dispersed one. Points where the reference does not vary (σ = 0, e.g. a
    Dirichlet wall) are left out.
    """
    x, y = _two_sets(samples, ref)
    s_hat, s = x.std(0, correction=ddof), y.std(0, correction=ddof)
    varies = s > 0
    if not bool(varies.any()):
        raise ValueError("std_ratio: the reference does not vary at any point")
    return (s_hat[varies] / s[varies]).mean()


def total_std(samples: ArrayLike) -> Tensor:
    """Total standard deviation σ_tot = √( (1/N) Σ_n ‖x_n − x̄‖₂² ), one scalar for a set.

    Exactly WeihengZ/PI-VAE ``lib/visualization.py::std_cal`` (population normalisation 1/N,
    squared Euclidean norm over all grid points).
    """
    x = flatten_samples(samples)
    return ((x - x.mean(0)).square().sum(1).mean()).sqrt()


def total_std_error(samples: ArrayLike, ref: ArrayLike) -> Tensor:
    """Relative error of the scalar total std, ``|σ̂_tot − σ_tot| / σ_tot`` (the PI-VAE "std error").

    This is the number ``examples/SDE.py`` of WeihengZ/PI-VAE (Zhong & Meidani,
    arXiv:2203.11363) prints as "u std error" — a scalar comparison, not a pointwise curve error,
    so it is smaller than :func:`std_field_error` whenever the std is right on average but wrong
    in shape. Compare PI-VAE anchors only with this definition.
    """
    x, y = _two_sets(samples, ref)
    s = total_std(y)
    return (total_std(x) - s).abs() / s


def _bandwidths(dist2: Tensor, scales: tuple[float, ...]) -> Tensor:
    """Median-heuristic bandwidths h = scale × median pairwise distance (off-diagonal)."""
    n = dist2.shape[0]
    off = dist2[~torch.eye(n, dtype=torch.bool, device=dist2.device)]
    median = off.clamp_min(0).sqrt().median()
    if median <= 0:
        raise ValueError("all samples are identical; the MMD bandwidth is undefined")
    return median * torch.as_tensor(scales, dtype=torch.float64, device=dist2.device)


def _pooled_kernel(
    x: Tensor, y: Tensor, scales: tuple[float, ...], bandwidths: ArrayLike | None
) -> Tensor:
    """Gaussian-mixture kernel matrix of the pooled set [x; y]: Σ_h exp(−‖a−b‖²/(2h²))."""
    z = torch.cat([x, y])  # (n + m, D)
    sq = z.square().sum(1)
    dist2 = (sq[:, None] + sq[None, :] - 2 * z @ z.T).clamp_min(0)  # (n + m, n + m)
    h = (
        _bandwidths(dist2, scales)
        if bandwidths is None
        else as_float64(bandwidths, name="bandwidths").to(z.device).reshape(-1)
    )
    return torch.exp(-dist2[None] / (2 * h[:, None, None] ** 2)).sum(0)


def _mmd2_from_kernel(kernel: Tensor, member: Tensor) -> Tensor:
    """Unbiased MMD² for each 0/1 assignment row of ``member`` (P, n+m) over a pooled kernel."""
    a = member.to(kernel.dtype)  # (P, n+m): 1 = first set
    b = 1 - a
    n, m = a.sum(1), b.sum(1)
    diag = kernel.diagonal()
    ka, kb = a @ kernel, b @ kernel  # (P, n+m)
    sxx = (ka * a).sum(1) - a @ diag
    syy = (kb * b).sum(1) - b @ diag
    sxy = (ka * b).sum(1)
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * sxy / (n * m)


def mmd(
    samples: ArrayLike,
    ref: ArrayLike,
    *,
    scales: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0),
    bandwidths: ArrayLike | None = None,
) -> Tensor:
    """Unbiased squared maximum mean discrepancy with a multi-bandwidth Gaussian kernel.

    MMD² = E k(X,X') + E k(Y,Y') − 2 E k(X,Y), estimated by the U-statistic of Gretton et al.
    (JMLR 2012, Lemma 6): the within-set means leave out the diagonal. The kernel is a sum of
    Gaussians k(a,b) = Σ_h exp(−‖a−b‖²/(2h²)) with h = scale × median pairwise distance of the
    pooled set (the median heuristic), over flattened fields — the mixture that PI-VAE trains
    with (WeihengZ/PI-VAE ``lib/models.py::MMD_loss``). The unbiased estimate is ≈ 0 (and can be
    slightly negative) when both sets come from one distribution.

    Args:
        samples, ref: ``(N, *event)`` and ``(M, *event)``, N, M ≥ 2.
        scales: multiples of the median distance used as bandwidths.
        bandwidths: explicit bandwidths (overrides ``scales``), e.g. to compare models on a
            fixed kernel.
    """
    x, y = _two_sets(samples, ref)
    kernel = _pooled_kernel(x, y, scales, bandwidths)
    member = torch.zeros(1, len(x) + len(y), device=x.device)
    member[0, : len(x)] = 1
    return _mmd2_from_kernel(kernel, member)[0]


def mmd_permutation_test(
    samples: ArrayLike,
    ref: ArrayLike,
    *,
    num_permutations: int = 500,
    scales: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0),
    seed: int = 0,
) -> tuple[Tensor, float]:
    """MMD² and its permutation-test p-value for H₀: both sets come from one distribution.

    The pooled set is relabelled at random ``num_permutations`` times with the kernel (and its
    bandwidths) fixed; p = (1 + #{MMD²_perm ≥ MMD²_obs}) / (1 + P), a valid level-α test
    (Gretton et al., JMLR 2012, §5).

    Returns:
        ``(mmd2, p_value)``.
    """
    if num_permutations < 1:
        raise ValueError(f"num_permutations must be ≥ 1, got {num_permutations}")
    x, y = _two_sets(samples, ref)
    kernel = _pooled_kernel(x, y, scales, None)
    total = len(x) + len(y)
    gen = torch.Generator().manual_seed(seed)
    member = torch.zeros(num_permutations + 1, total, device=x.device)
    member[0, : len(x)] = 1
    for p in range(1, num_permutations + 1):
        member[p, torch.randperm(total, generator=gen)[: len(x)].to(x.device)] = 1
    stats = _mmd2_from_kernel(kernel, member)
    p_value = (1 + int((stats[1:] >= stats[0]).sum())) / (1 + num_permutations)
    return stats[0], p_value


def _wasserstein_1d(a: Tensor, b: Tensor, p: float) -> Tensor:
    """W_p^p between the columns of a (n, K) and b (m, K) as empirical 1-D distributions.

    Equal sizes: mean |sort(a) − sort(b)|^p, the exact optimal coupling. Unequal sizes: both
    quantile functions on the midpoints of max(n, m) equal-mass cells (linear interpolation).
    """
    a, b = a.sort(0).values, b.sort(0).values
    if a.shape[0] != b.shape[0]:
        q = torch.arange(max(len(a), len(b)), dtype=torch.float64, device=a.device) + 0.5
        q = q / max(len(a), len(b))
        a = torch.quantile(a, q, dim=0)
        b = torch.quantile(b, q, dim=0)
    return (a - b).abs().pow(p).mean(0)


def sliced_wasserstein(
    samples: ArrayLike,
    ref: ArrayLike,
    *,
    num_projections: int = 500,
    p: float = 2.0,
    seed: int = 0,
) -> Tensor:
    """Sliced Wasserstein distance SW_p = ( E_θ W_p^p(θ·X, θ·Y) )^{1/p}.

    Monte Carlo over ``num_projections`` directions θ uniform on the sphere S^{D−1} (Bonneel et
    al. 2015; Deshpande et al., arXiv:1803.11188); each 1-D W_p between equal-size samples is the
    mean of ``|sort(a) − sort(b)|^p``. The directions come from ``seed``, so two calls (a model and
    its floor) use the same slices.
    """
    x, y = _two_sets(samples, ref)
    gen = torch.Generator().manual_seed(seed)
    # Directions in chunks: a (D, L) matrix of 64² × 50-frame trajectories would not fit.
    chunk = max(1, min(num_projections, _DIRECTION_BUDGET // x.shape[1]))
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, num_projections, chunk):
        count = min(chunk, num_projections - start)
        theta = torch.randn(x.shape[1], count, generator=gen, dtype=torch.float64)
        theta = (theta / theta.norm(dim=0, keepdim=True)).to(x.device)  # (D, count)
        total = total + _wasserstein_1d(x @ theta, y @ theta, p).sum()
    return (total / num_projections).pow(1 / p)


def marginal_w1(samples: ArrayLike, ref: ArrayLike, *, pooled: bool = False) -> Tensor:
    """Wasserstein-1 distance of pointwise marginals.

    ``pooled=False``: W1 between the N values at each grid point, averaged over the grid (the
    point-PDF comparison of GenCFD, arXiv:2409.18359). ``pooled=True``: W1 between the
    histograms of all values pooled over points (The Well's ``HistogramW1`` without its
    normalisation; ``scipy.stats.wasserstein_distance`` of the flattened arrays).
    """
    x, y = _two_sets(samples, ref)
    if pooled:
        return _wasserstein_1d(x.reshape(-1, 1), y.reshape(-1, 1), 1.0)[0]
    return _wasserstein_1d(x, y, 1.0).mean()


def energy_distance(samples: ArrayLike, ref: ArrayLike) -> Tensor:
    """Energy distance 2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖ (unbiased within-set means).

    Székely & Rizzo's statistic on flattened fields; zero in expectation iff the distributions
    agree. Its one-sided form against a single outcome is the energy score
    (:func:`physgen.metrics.energy_score`).
    """
    x, y = _two_sets(samples, ref)
    dxx, dyy, dxy = torch.cdist(x, x), torch.cdist(y, y), torch.cdist(x, y)
    n, m = len(x), len(y)
    return 2 * dxy.mean() - dxx.sum() / (n * (n - 1)) - dyy.sum() / (m * (m - 1))


def _pca(centered: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Leading k principal directions ``(D, k)`` and singular values of centred rows ``(N, D)``.

    For D > N the N×N Gram matrix is diagonalised instead of an SVD whose right factor would
    be N×D (1.6 GB in float64 for 1000 trajectories of 50 frames at 64²).
    """
    n, d = centered.shape
    if d <= n:
        _, s, vh = torch.linalg.svd(centered, full_matrices=False)
        return vh[:k].T, s[:k]
    evals, evecs = torch.linalg.eigh(centered @ centered.T)  # ascending
    evals, evecs = evals.flip(0)[:k].clamp_min(0), evecs.flip(1)[:, :k]
    s = evals.sqrt()
    basis = centered.T @ evecs / s.clamp_min(torch.finfo(s.dtype).tiny)  # (D, k)
    return basis, s


def frechet_distance(
    samples: ArrayLike, ref: ArrayLike, *, num_components: int = 16, whiten: bool = False
) -> Tensor:
    """Fréchet distance on PCA features of the reference ("Fréchet-PCA").

    FD = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^{½}) (Heusel et al., arXiv:1706.08500) between Gaussian
    fits of the two sets' coordinates on the leading ``num_components`` principal directions
    of ``ref`` (Inception features mean nothing for fields). Tr (Σ₁Σ₂)^{½} is computed as
    Σ √λ(Σ₁^{½} Σ₂ Σ₁^{½}), a symmetric PSD eigenproblem. With ``whiten=True`` the coordinates
    are divided by the reference's singular values so every mode weighs the same. FD is biased
    upward at small N; compare at equal N and beside the floor.
    """
    x, y = _two_sets(samples, ref)
    k = min(num_components, y.shape[0] - 1, y.shape[1])
    mu = y.mean(0)
    basis, s = _pca(y - mu, k)  # (D, k), (k,)
    fx, fy = (x - mu) @ basis, (y - mu) @ basis  # (N, k), (M, k)
    if whiten:
        scale = s[:k] / (y.shape[0] - 1) ** 0.5
        fx, fy = fx / scale, fy / scale
    m1, m2 = fx.mean(0), fy.mean(0)
    c1, c2 = torch.cov(fx.T).reshape(k, k), torch.cov(fy.T).reshape(k, k)
    evals, evecs = torch.linalg.eigh(c1)
    root1 = evecs @ torch.diag(evals.clamp_min(0).sqrt()) @ evecs.T
    cross = torch.linalg.eigvalsh(root1 @ c2 @ root1).clamp_min(0).sqrt().sum()
    return (m1 - m2).square().sum() + torch.trace(c1) + torch.trace(c2) - 2 * cross

"""Per-sample errors between a prediction and its paired truth: rel-L2, RMSE, VRMSE, spectral."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from physgen.metrics._common import ArrayLike, as_float64, reduce_dims

__all__ = ["binned_spectral_error", "relative_l2", "rmse", "vrmse"]


def _pair(pred: ArrayLike, target: ArrayLike) -> tuple[Tensor, Tensor]:
    p = as_float64(pred, name="pred")
    t = as_float64(target, name="target").to(p.device)
    if p.shape != t.shape:
        raise ValueError(f"pred has shape {tuple(p.shape)} but target has {tuple(t.shape)}")
    return p, t


def relative_l2(pred: ArrayLike, target: ArrayLike, *, spatial_dims: int | None = None) -> Tensor:
    """Relative L2 error ‖ŷ − y‖₂ / ‖y‖₂ per sample (or per channel/time, see ``spatial_dims``).

    This is FNO's ``LpLoss`` (Li et al., arXiv:2010.08895) and PDEBench's nRMSE
    (``pdebench/models/metrics.py``: √mean(ŷ−y)² / √mean y², which is the same ratio).

    Args:
        pred, target: arrays of equal shape ``(..., *grid)``.
        spatial_dims: number of trailing axes to reduce over; ``None`` reduces all but axis 0.

    Returns:
        float64 tensor over the remaining leading axes; average it for the dataset value.

    Example:
        >>> relative_l2(torch.ones(3, 8) * 1.1, torch.ones(3, 8))
        tensor([0.1000, 0.1000, 0.1000], dtype=torch.float64)
    """
    p, t = _pair(pred, target)
    dims = reduce_dims(t, spatial_dims)
    return (p - t).square().sum(dims).sqrt() / t.square().sum(dims).sqrt()


def rmse(pred: ArrayLike, target: ArrayLike, *, spatial_dims: int | None = None) -> Tensor:
    """Root-mean-square error √(mean_i (ŷ_i − y_i)²) per sample, in the field's units.

    Shu et al.'s (arXiv:2211.14680) per-frame "L2 loss" is this RMSE averaged over frames.
    """
    p, t = _pair(pred, target)
    return (p - t).square().mean(reduce_dims(t, spatial_dims)).sqrt()


def vrmse(
    pred: ArrayLike, target: ArrayLike, *, spatial_dims: int | None = None, eps: float = 1e-7
) -> Tensor:
    """Variance-scaled RMSE √( mean(ŷ − y)² / (var(y) + ε) ) per sample (The Well headline metric).

    Matches ``the_well/benchmark/metrics/spatial.py`` (``nrmse`` with ``norm_mode="std"``:
    ``torch.std`` over the spatial axes, i.e. the Bessel-corrected variance, ε = 1e-7).
    Predicting the spatial mean of ``y`` scores √((n−1)/n) ≈ 1, so values above 1 are worse
    than a constant.
    """
    p, t = _pair(pred, target)
    dims = reduce_dims(t, spatial_dims)
    var = t.var(dims, correction=1)
    return ((p - t).square().mean(dims) / (var + eps)).sqrt()


def _wavenumber_magnitude(shape: Sequence[int], device: torch.device) -> Tensor:
    """|k| of every FFT mode of a grid with unit spacing, k_i = 2π·fftfreq(n_i) ∈ [−π, π)."""
    axes = [2 * math.pi * torch.fft.fftfreq(n, device=device, dtype=torch.float64) for n in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.sqrt(sum(k.square() for k in mesh))


def binned_spectral_error(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    spatial_dims: int,
    edges: Sequence[float] | None = None,
    normalized: bool = True,
) -> Tensor:
    """MSE of ŷ − y restricted to wavenumber bins (The Well's ``binned_spectral_mse`` / NMSE).

    With D = FFT(ŷ − y) over the ``spatial_dims`` trailing axes (n points in all), Plancherel
    gives ``mean_i (ŷ−y)² = Σ_k |D_k|² / n²``, so the bin value ``Σ_{k∈bin} |D_k|² / n²``
    splits the MSE by scale. Wavenumbers are angular per grid spacing, ``|k| ∈ [0, π√d]``. The
    default edges are The Well's: [0, logspace(2π/N, π, 4)[1:-1], π] with N the smallest grid
    size — low, mid and high bands — except that the last bin also takes the corner modes
    ``|k| > π``, so the bins add up to the MSE exactly. ``normalized=True`` divides each bin by
    the energy of ``y`` in it (The Well's binned NMSE), making bands with little energy visible.

    Returns:
        tensor ``(..., n_bins)`` over the leading axes.
    """
    p, t = _pair(pred, target)
    dims = reduce_dims(t, spatial_dims)
    grid = [t.shape[d] for d in dims]
    if edges is None:
        n_min = min(grid)
        inner = torch.logspace(math.log10(2 * math.pi / n_min), math.log10(math.pi), 4)[1:-1]
        edges_t = torch.cat([torch.zeros(1), inner, torch.tensor([math.inf])]).double()
    else:
        edges_t = torch.as_tensor(list(edges), dtype=torch.float64)
        if edges_t.ndim != 1 or len(edges_t) < 2 or bool((edges_t.diff() <= 0).any()):
            raise ValueError(
                f"edges must be an increasing sequence of ≥ 2 values, got {list(edges)}"
            )
    kmag = _wavenumber_magnitude(grid, t.device).flatten()
    bin_index = torch.bucketize(kmag, edges_t.to(t.device), right=True) - 1  # (n,)
    n_bins = len(edges_t) - 1
    onehot = torch.nn.functional.one_hot(bin_index.clamp(0, n_bins), n_bins + 1)[:, :n_bins]
    onehot = onehot.to(torch.float64)  # (n, n_bins); modes outside the edges drop out
    npts = math.prod(grid)

    def band_power(x: Tensor) -> Tensor:
        power = torch.fft.fftn(x, dim=dims).abs().square().flatten(start_dim=x.ndim - len(dims))
        return power @ onehot / npts**2  # (..., n_bins)

    err = band_power(p - t)
    return err / band_power(t) if normalized else err

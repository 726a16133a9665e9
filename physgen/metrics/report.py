"""Metric suites: every applicable metric of one field, with floors, as a JSON-able dict."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from physgen.metrics._common import ArrayLike, as_float64, split_halves, with_floor
from physgen.metrics.distribution import (
    energy_distance,
    frechet_distance,
    marginal_w1,
    mean_field_error,
    mmd,
    mmd_permutation_test,
    sliced_wasserstein,
    std_field_error,
    total_std_error,
)
from physgen.metrics.ensemble import (
    crps_fair,
    crps_nrg,
    energy_score,
    interval_coverage,
    rank_histogram,
    spread_skill_ratio,
)
from physgen.metrics.fields import binned_spectral_error, relative_l2, rmse, vrmse
from physgen.metrics.spectra import correlation_distance, spectrum_distance

__all__ = ["distribution_report", "ensemble_report", "paired_report"]


def _scalar(v: Any) -> Any:
    """Tensors → Python floats (or lists), recursively, so the result is JSON-able."""
    if isinstance(v, Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, dict):
        return {str(k): _scalar(x) for k, x in v.items()}
    return v


def distribution_report(
    samples: ArrayLike,
    ref: ArrayLike,
    *,
    spatial_dims: int,
    periodic: bool,
    seed: int = 0,
    num_permutations: int = 200,
    num_splits: int = 5,
) -> dict[str, dict[str, Any]]:
    """All set-to-set metrics of one field, each with its reference-vs-reference floor.

    The reference is split into two random halves of m = min(N_samples, ⌊N_ref/2⌋) fields each;
    every metric is evaluated as ``value = metric(samples[:m], B)`` and ``floor = metric(A, B)``
    (see :func:`physgen.metrics.with_floor`). Spectra and correlations use a Hann window and the
    non-periodic correlation estimator unless the field is ``periodic``.

    Args:
        samples: generated fields ``(N, [T], *grid)``.
        ref: reference fields of the same per-sample shape.
        spatial_dims: number of trailing grid axes.
        periodic: whether every grid axis is periodic.
        seed: fixes the reference split, the slicing directions and the permutations.
        num_permutations: permutations of the MMD test (0 skips it).
        num_splits: reference splits averaged for value and floor (``floor_std`` when > 1).

    Returns:
        ``{metric: {"value", "floor", "floor_std", "n"}}`` (plus ``"p_value"`` for MMD²).
    """
    x = as_float64(samples, name="samples")
    r = as_float64(ref, name="ref")
    m = min(x.shape[0], r.shape[0] // 2)
    if m < 2:
        raise ValueError(
            f"need ≥ 2 generated and ≥ 4 reference samples for a floor, got {x.shape[0]} and "
            f"{r.shape[0]}"
        )
    x = x[:m]
    r = r[torch.randperm(r.shape[0], generator=torch.Generator().manual_seed(seed))[: 2 * m]]
    window = None if periodic else "hann"
    metrics: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
        "mean_error": (mean_field_error, {}),
        "mean_error_std_units": (mean_field_error, {"relative_to": "std"}),
        "std_error": (std_field_error, {}),
        "total_std_error": (total_std_error, {}),
        "marginal_w1": (marginal_w1, {}),
        "sliced_wasserstein": (sliced_wasserstein, {"seed": seed}),
        "mmd2": (mmd, {}),
        "energy_distance": (energy_distance, {}),
        "frechet_pca": (frechet_distance, {}),
        "spectrum_lsd": (spectrum_distance, {"spatial_dims": spatial_dims, "window": window}),
        "correlation_rms": (
            correlation_distance,
            {"spatial_dims": spatial_dims, "periodic": periodic},
        ),
    }
    out = {
        name: _scalar(with_floor(fn, x, r, split_seed=seed, num_splits=num_splits, **kwargs))
        for name, (fn, kwargs) in metrics.items()
    }
    if num_permutations > 0:
        _, half = split_halves(r, seed=seed)  # the first half with_floor compared the samples with
        _, p = mmd_permutation_test(x, half, num_permutations=num_permutations, seed=seed)
        out["mmd2"]["p_value"] = p
    return out


def paired_report(pred: ArrayLike, target: ArrayLike, *, spatial_dims: int) -> dict[str, Any]:
    """Per-sample errors of paired fields, averaged over samples (and times).

    rel-L2 (= PDEBench nRMSE), RMSE, VRMSE and the binned spectral NMSE in the low, mid and
    high bands of The Well.
    """
    p = as_float64(pred, name="pred")
    t = as_float64(target, name="target")
    bands = binned_spectral_error(p, t, spatial_dims=spatial_dims)
    lead = tuple(range(bands.ndim - 1))
    return _scalar(
        {
            "relative_l2": relative_l2(p, t, spatial_dims=spatial_dims).mean(),
            "rmse": rmse(p, t, spatial_dims=spatial_dims).mean(),
            "vrmse": vrmse(p, t, spatial_dims=spatial_dims).mean(),
            "spectral_nmse_low_mid_high": bands.mean(lead),
        }
    )


def ensemble_report(
    members: ArrayLike, truth: ArrayLike, *, spatial_dims: int, member_dim: int = 1, seed: int = 0
) -> dict[str, Any]:
    """Probabilistic scores of an ensemble ``(B, M, ...)`` against its truths ``(B, ...)``.

    Fair CRPS (and the biased NRG form, named so), corrected spread–skill ratio, rank
    histogram, 50 %/90 % interval coverage, energy score per case, the relative L2 error of the
    ensemble mean and of single members, and the spectrum LSD of members against the truths.
    """
    x = as_float64(members, name="members").movedim(member_dim, 0)  # (M, B, ...)
    y = as_float64(truth, name="truth")
    m = x.shape[0]
    mean = x.mean(0)
    return _scalar(
        {
            "members": m,
            "crps_fair": crps_fair(x, y).mean(),
            "crps_nrg_biased": crps_nrg(x, y).mean(),
            "spread_skill_corrected": spread_skill_ratio(x, y),
            "spread_skill_raw": spread_skill_ratio(x, y, corrected=False),
            "coverage": interval_coverage(x, y),
            "energy_score": energy_score(x, y).mean(),
            "ensemble_mean_relative_l2": relative_l2(mean, y).mean(),
            "member_relative_l2": relative_l2(
                x.flatten(0, 1), y.repeat(m, *[1] * (y.ndim - 1))
            ).mean(),
            "spectrum_lsd": spectrum_distance(x.flatten(0, 1), y, spatial_dims=spatial_dims),
            "rank_histogram": rank_histogram(x, y, seed=seed),
        }
    )

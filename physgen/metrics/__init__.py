"""Metrics for generated fields: per-sample errors, spectra, distributions, ensembles, physics."""

from physgen.metrics._common import (
    FloorComparison,
    compare_to_floor,
    split_halves,
    with_floor,
)
from physgen.metrics.distribution import (
    energy_distance,
    frechet_distance,
    marginal_w1,
    mean_field_error,
    mmd,
    mmd_permutation_test,
    sliced_wasserstein,
    std_field_error,
    total_std,
    total_std_error,
)
from physgen.metrics.ensemble import (
    calibrated_coverage,
    crps_fair,
    crps_nrg,
    energy_score,
    interval_coverage,
    observation_consistency,
    rank_histogram,
    spread_skill_ratio,
)
from physgen.metrics.fields import binned_spectral_error, relative_l2, rmse, vrmse
from physgen.metrics.likelihood import bits_per_dim, bits_to_nats, nats_per_dim, nats_to_bits
from physgen.metrics.physics import residual_metric, residual_rms
from physgen.metrics.spectra import (
    correlation_distance,
    energy_spectrum,
    log_spectral_distance,
    spectral_slope,
    spectrum_distance,
    two_point_correlation,
)

__all__ = [
    "FloorComparison",
    "binned_spectral_error",
    "bits_per_dim",
    "bits_to_nats",
    "calibrated_coverage",
    "compare_to_floor",
    "correlation_distance",
    "crps_fair",
    "crps_nrg",
    "energy_distance",
    "energy_score",
    "energy_spectrum",
    "frechet_distance",
    "interval_coverage",
    "log_spectral_distance",
    "marginal_w1",
    "mean_field_error",
    "mmd",
    "mmd_permutation_test",
    "nats_per_dim",
    "nats_to_bits",
    "observation_consistency",
    "rank_histogram",
    "relative_l2",
    "residual_metric",
    "residual_rms",
    "rmse",
    "sliced_wasserstein",
    "spectral_slope",
    "spectrum_distance",
    "split_halves",
    "spread_skill_ratio",
    "std_field_error",
    "total_std",
    "total_std_error",
    "two_point_correlation",
    "vrmse",
    "with_floor",
]

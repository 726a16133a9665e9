"""Generative models as instruments: anomaly scores and how well they detect anomalies."""

from physgen.diagnostics.anomaly import (
    SCORES,
    available_scores,
    entropy_estimate,
    log_likelihood_ratio,
    model_scores,
    perturb,
    reconstruction_error,
    residual_score,
    typicality_statistic,
    typicality_threshold,
)
from physgen.diagnostics.detection import DetectionScore, auprc, auroc, hanley_mcneil_se

__all__ = [
    "SCORES",
    "DetectionScore",
    "auprc",
    "auroc",
    "available_scores",
    "entropy_estimate",
    "hanley_mcneil_se",
    "log_likelihood_ratio",
    "model_scores",
    "perturb",
    "reconstruction_error",
    "residual_score",
    "typicality_statistic",
    "typicality_threshold",
]

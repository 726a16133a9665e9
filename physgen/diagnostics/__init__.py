"""Generative models as instruments: anomaly scores, detection, disentanglement, features."""

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
from physgen.diagnostics.detection import (
    DetectionScore,
    auprc,
    auroc,
    batch_means,
    hanley_mcneil_se,
)
from physgen.diagnostics.disentanglement import (
    MIGResult,
    discretize,
    latent_factor_correlation,
    mig,
    mutual_information,
)
from physgen.diagnostics.feature_encoder import (
    FeatureEncoder,
    fit_feature_encoder,
    load_feature_encoder,
    train_feature_encoder,
)
from physgen.diagnostics.feature_scores import MahalanobisFit, spectrum_features
from physgen.diagnostics.features import (
    encoder_features,
    feature_distance,
    feature_frechet,
    feature_kid,
    log_residual_feature,
    polynomial_mmd2,
)
from physgen.diagnostics.ranking import RankCorrelation, consensus_score, rank_correlation

__all__ = [
    "SCORES",
    "DetectionScore",
    "FeatureEncoder",
    "MIGResult",
    "MahalanobisFit",
    "RankCorrelation",
    "auprc",
    "auroc",
    "available_scores",
    "batch_means",
    "consensus_score",
    "discretize",
    "encoder_features",
    "entropy_estimate",
    "feature_distance",
    "feature_frechet",
    "feature_kid",
    "fit_feature_encoder",
    "hanley_mcneil_se",
    "latent_factor_correlation",
    "load_feature_encoder",
    "log_likelihood_ratio",
    "log_residual_feature",
    "mig",
    "model_scores",
    "mutual_information",
    "perturb",
    "polynomial_mmd2",
    "rank_correlation",
    "reconstruction_error",
    "residual_score",
    "spectrum_features",
    "train_feature_encoder",
    "typicality_statistic",
    "typicality_threshold",
]

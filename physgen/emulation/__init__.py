"""Probabilistic emulation of trajectories: (history → next frame) pairs, conditional models
of the next frame, autoregressive ensemble rollouts and their scores over lead time."""

from physgen.emulation.baselines import Regressor, climatology_model, persistence_model
from physgen.emulation.calibration import (
    SpreadCalibration,
    fit_spread_calibration,
    scale_spread,
)
from physgen.emulation.emulator import Emulator, SolverModel, rollout, train_emulator
from physgen.emulation.pairs import (
    TrajectoryPairs,
    channel_statistics,
    pack_history,
    read_trajectories,
)
from physgen.emulation.residual import ResidualModel, residual_targets, train_residual_emulator
from physgen.emulation.scores import (
    correlation_horizon,
    lead_time_residuals,
    lead_time_scores,
    lead_time_spectrum_error,
    lead_time_ssr_interval,
    score_forecast,
    stability_horizon,
)

__all__ = [
    "Emulator",
    "Regressor",
    "ResidualModel",
    "SolverModel",
    "SpreadCalibration",
    "TrajectoryPairs",
    "channel_statistics",
    "climatology_model",
    "correlation_horizon",
    "fit_spread_calibration",
    "lead_time_residuals",
    "lead_time_scores",
    "lead_time_spectrum_error",
    "lead_time_ssr_interval",
    "pack_history",
    "persistence_model",
    "read_trajectories",
    "residual_targets",
    "rollout",
    "scale_spread",
    "score_forecast",
    "stability_horizon",
    "train_emulator",
    "train_residual_emulator",
]

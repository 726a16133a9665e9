"""Probabilistic emulation of trajectories: (history → next frame) pairs, conditional models
of the next frame, autoregressive ensemble rollouts and their scores over lead time."""

from physgen.emulation.baselines import ClimatologyModel, Regressor, persistence_model
from physgen.emulation.emulator import Emulator, SolverModel, rollout, train_emulator
from physgen.emulation.pairs import (
    TrajectoryPairs,
    channel_statistics,
    pack_history,
    read_trajectories,
)
from physgen.emulation.scores import correlation_horizon, lead_time_scores, score_forecast

__all__ = [
    "ClimatologyModel",
    "Emulator",
    "Regressor",
    "SolverModel",
    "TrajectoryPairs",
    "channel_statistics",
    "correlation_horizon",
    "lead_time_scores",
    "pack_history",
    "persistence_model",
    "read_trajectories",
    "rollout",
    "score_forecast",
    "train_emulator",
]

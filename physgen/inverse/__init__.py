"""Inverse problems: observation operators, task pairing, and posterior sampling by any model."""

from physgen.inverse.fill import KrigingFit, harmonic_fill, kriging
from physgen.inverse.guided import ScorePrior, posterior_score
from physgen.inverse.mask import Mask, box_mask, random_mask, read_mask
from physgen.inverse.operators import (
    BlockAverage,
    ChannelMask,
    ObservationOperator,
    Sensors,
    Subsample,
    interpolate,
)
from physgen.inverse.pairs import PairedDataset, pair_tensors
from physgen.inverse.residual import complete_residual, spread_inflation
from physgen.inverse.scores import missing_region_scores, spread_skill_interval
from physgen.inverse.solve import solve
from physgen.inverse.task import Task, parse_task

__all__ = [
    "BlockAverage",
    "ChannelMask",
    "KrigingFit",
    "Mask",
    "ObservationOperator",
    "PairedDataset",
    "ScorePrior",
    "Sensors",
    "Subsample",
    "Task",
    "box_mask",
    "complete_residual",
    "harmonic_fill",
    "interpolate",
    "kriging",
    "missing_region_scores",
    "pair_tensors",
    "parse_task",
    "posterior_score",
    "random_mask",
    "read_mask",
    "solve",
    "spread_inflation",
    "spread_skill_interval",
]

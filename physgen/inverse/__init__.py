"""Inverse problems: observation operators, task pairing, and posterior sampling by any model."""

from physgen.inverse.guided import ScorePrior, posterior_score
from physgen.inverse.operators import (
    BlockAverage,
    ChannelMask,
    ObservationOperator,
    Sensors,
    Subsample,
    interpolate,
)
from physgen.inverse.pairs import PairedDataset, pair_tensors
from physgen.inverse.solve import solve
from physgen.inverse.task import Task, parse_task

__all__ = [
    "BlockAverage",
    "ChannelMask",
    "ObservationOperator",
    "PairedDataset",
    "ScorePrior",
    "Sensors",
    "Subsample",
    "Task",
    "interpolate",
    "pair_tensors",
    "parse_task",
    "posterior_score",
    "solve",
]

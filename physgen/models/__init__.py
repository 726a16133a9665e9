"""Generative model families behind one protocol (``loss``, ``sample``, ``config``)."""

from .base import (
    DensityModel,
    GenerativeModel,
    ScoreBasedModel,
    TwoPlayerModel,
    available_models,
    get_model_class,
    register_model,
)

__all__ = [
    "DensityModel",
    "GenerativeModel",
    "ScoreBasedModel",
    "TwoPlayerModel",
    "available_models",
    "get_model_class",
    "register_model",
]

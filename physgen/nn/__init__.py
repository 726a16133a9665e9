"""Neural-network building blocks shared by the model families."""

from .mlp import MLP, activation

__all__ = ["MLP", "activation"]

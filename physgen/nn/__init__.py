"""Neural-network building blocks shared by the model families."""

from .embeddings import FourierTime, SinusoidalEmbedding, TimeMLP
from .mlp import MLP, activation
from .unet import UNet

__all__ = ["MLP", "FourierTime", "SinusoidalEmbedding", "TimeMLP", "UNet", "activation"]

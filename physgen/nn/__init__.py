"""Neural-network building blocks shared by the model families."""

from .embeddings import FourierTime, SinusoidalEmbedding, TimeMLP
from .mlp import MLP, CoordinateNet, activation
from .patchgan import PatchGAN
from .unet import UNet

__all__ = [
    "MLP",
    "CoordinateNet",
    "FourierTime",
    "PatchGAN",
    "SinusoidalEmbedding",
    "TimeMLP",
    "UNet",
    "activation",
]

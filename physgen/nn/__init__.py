"""Neural-network building blocks shared by the model families."""

from .by_shape import ContextEncoder, time_network
from .conv import conv_nd
from .embeddings import FourierTime, SinusoidalEmbedding, TimeMLP
from .mlp import MLP, CoordinateNet, activation
from .patchgan import PatchGAN
from .unet import UNet

__all__ = [
    "MLP",
    "ContextEncoder",
    "CoordinateNet",
    "FourierTime",
    "PatchGAN",
    "SinusoidalEmbedding",
    "TimeMLP",
    "UNet",
    "activation",
    "conv_nd",
    "time_network",
]

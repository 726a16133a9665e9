"""Training: ``fit``, checkpoints that resume exactly, EMA, mixed precision and DDP helpers."""

from .amp import autocast, fp32
from .checkpoint import build_model, load_checkpoint, read_checkpoint, save_checkpoint
from .conflict_free import conflict_free_direction
from .ema import EMA
from .fit import CHECKPOINT_NAME, FitResult, NonFiniteLossError, fit, lr_factor

__all__ = [
    "CHECKPOINT_NAME",
    "EMA",
    "FitResult",
    "NonFiniteLossError",
    "autocast",
    "build_model",
    "conflict_free_direction",
    "fit",
    "fp32",
    "load_checkpoint",
    "lr_factor",
    "read_checkpoint",
    "save_checkpoint",
]

"""Reusable pieces of the reference training loop (``examples/train_vvi.py``)."""

from xreid.engine.checkpoint import atomic_save, load_checkpoint
from xreid.engine.config import TrainConfig
from xreid.engine.optim import build_optimizer, build_scheduler
from xreid.engine.trainer import Callbacks, Trainer, build_model, build_reader, train_step

__all__ = [
    "Callbacks",
    "TrainConfig",
    "Trainer",
    "atomic_save",
    "build_model",
    "build_optimizer",
    "build_reader",
    "build_scheduler",
    "load_checkpoint",
    "train_step",
]

"""Reusable pieces of the reference training loop (``examples/train_vvi.py``)."""

from xreid.engine.checkpoint import (
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
)
from xreid.engine.config import PRESET_NAMES, TrainConfig
from xreid.engine.optim import build_optimizer, build_scheduler, lr_factor
from xreid.engine.trainer import (
    Callbacks,
    Trainer,
    build_model,
    build_reader,
    seed_everything,
    train_step,
)

__all__ = [
    "PRESET_NAMES",
    "Callbacks",
    "TrainConfig",
    "Trainer",
    "atomic_save",
    "build_model",
    "build_optimizer",
    "build_reader",
    "build_scheduler",
    "capture_rng_state",
    "load_checkpoint",
    "lr_factor",
    "restore_rng_state",
    "seed_everything",
    "train_step",
]

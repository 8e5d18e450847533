"""Reusable pieces of the reference training loop (``examples/train_vvi.py``)."""

from xreid.engine.checkpoint import atomic_save, load_checkpoint
from xreid.engine.config import TrainConfig
from xreid.engine.optim import build_optimizer, build_scheduler
from xreid.engine.trainer import Callbacks, Trainer, build_model, build_reader, train_step
from xreid.engine.variants import Variant, get_variant, list_variants, register_variant

__all__ = [
    "Callbacks",
    "TrainConfig",
    "Trainer",
    "Variant",
    "atomic_save",
    "build_model",
    "build_optimizer",
    "build_reader",
    "build_scheduler",
    "get_variant",
    "list_variants",
    "load_checkpoint",
    "register_variant",
    "train_step",
]

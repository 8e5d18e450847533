"""Training as a library: the configuration, the trainer, its hooks and its parts.

What a user calls; everything else stays in its module (loggers in ``xreid.engine.loggers``,
the memory initialisation in ``xreid.engine.memory_init``, X-ReID's step in
``xreid.engine.objective``, the sections in ``xreid.engine.sections``, ...).
"""

from xreid.engine.build import build_model, build_trainer
from xreid.engine.checkpoint import load_checkpoint
from xreid.engine.config import TrainConfig, resolve_config
from xreid.engine.hooks import CheckpointHook, Hook
from xreid.engine.objective import NonFiniteLossError, StepLoss, train_step
from xreid.engine.optim import build_optimizer, build_scheduler
from xreid.engine.trainer import Trainer
from xreid.engine.variants import list_variants, register_variant

__all__ = [
    "CheckpointHook",
    "Hook",
    "NonFiniteLossError",
    "StepLoss",
    "TrainConfig",
    "Trainer",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "build_trainer",
    "list_variants",
    "load_checkpoint",
    "register_variant",
    "resolve_config",
    "train_step",
]

"""Reusable pieces of the reference training loop (``examples/train_vvi.py``)."""

from xreid.engine.checkpoint import (
    atomic_save,
    atomic_write,
    capture_rng_state,
    current_umask,
    error_message,
    load_checkpoint,
    remove_stale_temporaries,
    restore_rng_state,
)
from xreid.engine.config import PRESET_NAMES, TrainConfig
from xreid.engine.config_checks import (
    check_config,
    check_field_types,
)
from xreid.engine.device import (
    DEVICE_PATTERN,
    check_device_spec,
    resolve_device,
    setup_device,
)
from xreid.engine.optim import build_optimizer, build_scheduler, lr_factor
from xreid.engine.prompt_stages import (
    STAGE1_DEFAULTS,
    PromptLoss,
    PromptStages,
    build_prompt_text_tower,
    stage1_lr,
)
from xreid.engine.trainer import (
    RESUMABLE_OPTIONS,
    Callbacks,
    NonFiniteLossError,
    Trainer,
    build_model,
    build_reader,
    remove_stale_dataset_temporaries,
    resume_conflicts,
    seed_everything,
    train_step,
    truncate_log,
)
from xreid.engine.variants import (
    STUDIES,
    Variant,
    get_variant,
    list_variants,
    register_variant,
    study_variants,
    unregister_variant,
)

__all__ = [
    "DEVICE_PATTERN",
    "PRESET_NAMES",
    "RESUMABLE_OPTIONS",
    "STAGE1_DEFAULTS",
    "STUDIES",
    "Callbacks",
    "NonFiniteLossError",
    "PromptLoss",
    "PromptStages",
    "TrainConfig",
    "Trainer",
    "Variant",
    "atomic_save",
    "atomic_write",
    "build_model",
    "build_optimizer",
    "build_prompt_text_tower",
    "build_reader",
    "build_scheduler",
    "capture_rng_state",
    "check_config",
    "check_device_spec",
    "check_field_types",
    "current_umask",
    "error_message",
    "get_variant",
    "list_variants",
    "load_checkpoint",
    "lr_factor",
    "register_variant",
    "remove_stale_dataset_temporaries",
    "remove_stale_temporaries",
    "resolve_device",
    "restore_rng_state",
    "resume_conflicts",
    "seed_everything",
    "setup_device",
    "stage1_lr",
    "study_variants",
    "train_step",
    "truncate_log",
    "unregister_variant",
]

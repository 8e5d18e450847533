"""Every preset in one place: model heads, loss weights and training options.

Three tables, each ``{preset name: {option: value}}``, read by the classes they configure:

* :data:`MODEL_PRESETS`: keywords of :class:`xreid.XReID` / :class:`xreid.models.XReIDConfig`
  over its defaults (``XReID.from_preset``);
* :data:`LOSS_PRESETS`: keywords of :class:`xreid.XReIDLoss` (``XReIDLoss.from_preset``);
* :data:`TRAIN_PRESETS`: partial nested configurations (``{section: {field: value}}``) over
  the defaults of :class:`xreid.engine.TrainConfig`; their ``model`` and ``loss`` sections
  hold the model and loss presets of the same name. ``"demo"`` (the offline demo) is those
  defaults plus the shipped pre-trained tiny encoder and its fine-tuning LR and schedule.

Where ``paper`` and ``official`` differ, ``docs/differences.md`` gives the reason. This module
holds data only and imports nothing from the package.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LOSS_PRESETS", "MODEL_PRESETS", "PRESET_NAMES", "TRAIN_PRESETS"]

PRESET_NAMES = ("demo", "paper", "official")
"""The training presets (:data:`TRAIN_PRESETS`)."""

MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # The paper: SII (1 block) + LII (S=2) + CII + CMCL, momentum 0.2, cross-modal hard
    # selection; the paper is silent about detaching, so gradients reach the backbone.
    "paper": {},
    # The authors' released code (docs/differences.md): SII only with 2 blocks, detached MII
    # input, frame-level ID losses, momentum 0.1, hard sample of either modality.
    "official": {
        "sii_depth": 2,
        "use_lii": False,
        "use_cii": False,
        "detach_mii": True,
        "frame_logits": True,
        "memory_momentum": 0.1,
        "hard_selection": "any",
    },
}

LOSS_PRESETS: dict[str, dict[str, Any]] = {
    # Eq. 10 as printed
    "paper": {"cpcl": 1.0, "triplet": 1.0, "id": 1.0, "cmcl": 1.0, "frame_id": 0.0,
              "margin": 0.3, "label_smoothing": 0.0},
    # the authors' code: ID 0.25, no CMCL, frame-level ID with total weight 1 over T frames
    "official": {"cpcl": 1.0, "triplet": 1.0, "id": 0.25, "cmcl": 0.0, "frame_id": 1.0,
                 "margin": 0.3, "label_smoothing": 0.0},
}
"""Constructor keywords of :class:`XReIDLoss` per preset; ``frame_id`` is the weight summed
over the T frames (:meth:`XReIDLoss.from_preset` divides it by ``num_frames``)."""

# "paper" and "official" spell out the same keys on purpose: each preset reads as a whole.
_CLIP_TRAINING: dict[str, Any] = {
    "data": {"dataset": "hitsz-vcm", "img_size": (288, 144), "num_frames": 10,
             "ids_per_batch": 4, "clips_per_modality": 2, "use_cameras": True,
             "eval_batch_size": 32},
    "optim": {"lr": 5e-6, "warmup_epochs": 10, "warmup_factor": 0.1, "weight_decay": 1e-4,
              "bias_lr_factor": 2.0, "classifier_lr_factor": 10.0, "head_lr_factor": 10.0},
}
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # the offline demo: the paper's regime at tiny scale, the shipped pre-trained tiny encoder
    # fine-tuned; schedule and LR chosen on validation splits by rules fixed before their runs
    # (docs/training.md, "The demo's defaults, chosen on validation")
    "demo": {
        "model": {"weights": "synthetic-pretrained"},
        "optim": {"lr": 3e-4, "epochs": 12, "milestones": (10,)},
    },
    "paper": {
        "data": {**_CLIP_TRAINING["data"], "normalization": "clip", "pad": 10},
        "model": {"backbone": "clip-vit-b16", "freeze_patch_embed": True,
                  **MODEL_PRESETS["paper"]},
        "loss": {**LOSS_PRESETS["paper"], "memory_init": "once"},
        "optim": {**_CLIP_TRAINING["optim"], "epochs": 60, "iters_per_epoch": None,
                  "milestones": (30, 50)},
    },
    "official": {
        "data": {**_CLIP_TRAINING["data"], "normalization": "imagenet", "pad": 0},
        "model": {"backbone": "clip-vit-b16", "freeze_patch_embed": True,
                  **MODEL_PRESETS["official"]},
        "loss": {**LOSS_PRESETS["official"], "memory_init": "every_epoch"},
        "optim": {**_CLIP_TRAINING["optim"], "epochs": 30, "iters_per_epoch": 300,
                  "milestones": (30, 50, 70)},
    },
}
"""Partial training configurations: ``{section: {field: value}}`` written over the defaults
of :class:`xreid.engine.TrainConfig` (which are the ``"demo"`` preset); a preset's ``model``
and ``loss`` sections include :data:`MODEL_PRESETS` / :data:`LOSS_PRESETS` of the same name."""

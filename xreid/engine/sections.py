"""The ``run`` section of a training configuration, the table of sections, and the flat
option names of earlier versions.

A :class:`~xreid.engine.TrainConfig` has one section per owner: ``data``
(:class:`xreid.data.config.DataConfig`), ``model`` (:class:`xreid.models.config.ModelConfig`),
``loss`` (:class:`xreid.losses.config.LossConfig`), ``optim``
(:class:`xreid.engine.optim.OptimConfig`), ``prompts``
(:class:`xreid.prompts.config.PromptConfig`) and ``run`` (:class:`RunConfig`, here).

Before sections existed every option was a flat field (``lr``, ``cpcl_weight``, ...).
:data:`FLAT_OPTIONS` maps each old name to its section and field; :func:`nested_from_flat`
converts an old flat mapping (a ``config.json`` or checkpoint of an earlier version, or
keywords of ``TrainConfig.from_preset``) into sections.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xreid._config import check_choice, check_field_types, check_range, option
from xreid.data.config import DataConfig
from xreid.engine.device import check_device_spec
from xreid.engine.optim import OptimConfig
from xreid.losses.config import LossConfig
from xreid.models.config import ModelConfig
from xreid.presets import LOSS_PRESETS, MODEL_PRESETS
from xreid.prompts.config import PromptConfig

__all__ = [
    "AMP_MODES",
    "FLAT_OPTIONS",
    "LOGGERS",
    "SECTIONS",
    "RunConfig",
    "check_partial",
    "nested_from_flat",
]

AMP_MODES: tuple[str, ...] = ("none", "bf16", "fp16")
"""Mixed-precision modes of training and evaluation."""

LOGGERS: tuple[str, ...] = ("jsonl", "text", "csv", "tensorboard")
"""Names accepted by ``run.log``."""


@dataclass
class RunConfig:
    """Where and how a run executes: output folder, seed, device, precision, evaluation, logs.

    Attributes:
        output_dir: where metrics.json, plots, log.jsonl and checkpoint.pt go.
        seed: random seed of sampling, augmentation and initialisation.
        device: auto | cpu | cuda | cuda:N.
        threads: torch intra-op CPU threads (None: torch's default).
        amp: mixed precision: none | bf16 | fp16.
        compile: torch.compile the backbone and MII.
        deterministic: deterministic torch algorithms (slower).
        eval_before: also evaluate before training (the untrained row).
        pixel_baseline: also rank the test split by raw pixels (metrics.json baselines.pixels).
        rerank: k-reciprocal re-ranking at evaluation.
        save_every: epochs between checkpoints (the final one is always written).
        log_every: iterations between per-iteration log records.
        log: loggers: jsonl (log.jsonl) | text (train.log) | csv (csv/) | tensorboard
            (tensorboard/; needs the tensorboard package).
    """

    output_dir: str = option("xreid_runs/demo", resumable=True)
    seed: int = 0
    device: str = option("auto", resumable=True)
    threads: int | None = option(None, resumable=True)
    amp: str = "none"
    compile: bool = option(False, resumable=True)
    deterministic: bool = option(False, resumable=True)
    eval_before: bool = option(True, resumable=True)
    pixel_baseline: bool = True
    rerank: bool = option(False, resumable=True)
    save_every: int = option(1, resumable=True)
    log_every: int = option(1, resumable=True)
    log: tuple[str, ...] = option(("jsonl",), resumable=True)

    def validate(self) -> None:
        """``ValueError`` naming the first invalid option."""
        check_field_types(self)
        if not self.output_dir:
            raise ValueError("output_dir: expected a non-empty string, got ''")
        check_range("seed", self.seed, 0)
        check_device_spec(self.device)
        check_range("threads", self.threads, 1, allow_none=True)
        check_choice("amp", self.amp, AMP_MODES)
        check_range("save_every", self.save_every, 1)
        check_range("log_every", self.log_every, 1)
        for name in self.log:
            check_choice("log", name, LOGGERS)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "optim": OptimConfig,
    "prompts": PromptConfig,
    "run": RunConfig,
}
"""Section name -> its dataclass, in the order of ``TrainConfig``."""

_RENAMED = {
    "num_heads": "model.backbone_heads",
    "cpcl_weight": "loss.cpcl",
    "triplet_weight": "loss.triplet",
    "id_weight": "loss.id",
    "cmcl_weight": "loss.cmcl",
    "frame_id_weight": "loss.frame_id_per_frame",
    "text_prompts": "prompts.enabled",
    "text_weights": "prompts.text_weights",
    "prompt_stage1_epochs": "prompts.stage1_epochs",
    "prompt_stage1_lr": "prompts.stage1_lr",
    "prompt_stage1_batch_size": "prompts.stage1_batch_size",
    "prompt_stage1_i2t": "prompts.stage1_i2t",
    "prompt_similarity": "prompts.similarity",
    "prompt_i2t_weight": "prompts.i2t_weight",
    "prompt_template": "prompts.template",
}
_KEPT = {
    "data": ("dataset", "root", "synthetic_seed", "synthetic_train_ids", "synthetic_test_ids",
             "val_ids", "min_len", "img_size", "num_frames", "ids_per_batch", "clips_per_modality",
             "normalization", "flip_p", "pad", "erasing_p", "num_workers", "use_cameras",
             "eval_batch_size", "eval_sampling"),
    "model": ("backbone", "weights", "random_init", "patch_size", "embed_dim", "depth",
              "lii_stride", "sii_depth", "use_lii", "use_cii", "cii_query_residual",
              "cmcl_stop_gradient", "detach_mii", "use_sii", "sii_stride", "use_memory",
              "hard_selection", "memory_collaboration", "memory_momentum",
              "memory_temperature", "freeze_patch_embed", "grad_checkpointing", "cii_depth",
              "cmcl_branches", "cmcl_directions", "cpcl_form", "memory_shared"),
    "loss": ("label_smoothing", "memory_init", "memory_batch_size"),
    "optim": ("epochs", "iters_per_epoch", "lr", "warmup_epochs", "warmup_factor",
              "milestones", "gamma", "weight_decay", "bias_lr_factor", "classifier_lr_factor",
              "head_lr_factor", "max_grad_norm"),
    "run": ("device", "threads", "amp", "compile", "seed", "deterministic", "eval_before",
            "pixel_baseline", "rerank", "output_dir", "save_every", "log_every", "log"),
}
FLAT_OPTIONS: dict[str, str] = {
    **{name: f"{section}.{name}" for section, names in _KEPT.items() for name in names},
    **_RENAMED,
}
"""Flat option name of earlier versions -> ``"section.field"`` (``model_preset`` and
``loss_preset`` are converted by :func:`nested_from_flat` into the preset's values)."""


def nested_from_flat(values: Mapping[str, Any]) -> dict[str, Any]:
    """Sections from an old flat mapping: ``model_preset`` / ``loss_preset`` expand into the
    named preset's model / loss values, then every flat option goes to its section; a ``None``
    head or loss option meant "the preset's value" and is dropped. Keys that are already
    sections, ``preset``, ``variant`` and ``extra`` pass through; an unknown key raises
    ``ValueError``."""
    out: dict[str, dict[str, Any]] = {}
    passed: dict[str, Any] = {}
    for key, value in values.items():
        if key in SECTIONS or key in ("preset", "variant", "extra"):
            passed[key] = value
        elif key == "model_preset":
            check_choice("model_preset", value, MODEL_PRESETS)
            out.setdefault("model", {}).update(
                {k: v for k, v in MODEL_PRESETS[value].items()
                 if f"model.{k}" not in (FLAT_OPTIONS.get(n) for n in values
                                         if values[n] is not None)})
        elif key == "loss_preset":
            check_choice("loss_preset", value, LOSS_PRESETS)
            out.setdefault("loss", {}).update(
                {k: v for k, v in LOSS_PRESETS[value].items()
                 if f"loss.{k}" not in (FLAT_OPTIONS.get(n) for n in values
                                        if values[n] is not None)})
        elif key in FLAT_OPTIONS:
            section, name = FLAT_OPTIONS[key].split(".")
            if value is None and section in ("model", "loss") and _default_not_none(section,
                                                                                   name):
                continue  # None: "the preset's value"
            out.setdefault(section, {})[name] = value
        else:
            raise ValueError(f"config: unknown option {key!r}")
    merged: dict[str, Any] = dict(passed)
    for section, update in out.items():
        base = merged.get(section, {})
        merged[section] = {**update, **(base if isinstance(base, Mapping) else {})}
    return merged


def _default_not_none(section: str, name: str) -> bool:
    default = {f.name: f.default for f in dataclasses.fields(SECTIONS[section])}.get(name)
    return default is not None


def check_partial(values: Mapping[str, Any], what: str) -> None:
    """``ValueError`` naming ``what`` unless ``values`` is a partial nested configuration
    (sections with known fields, plus ``preset``/``variant``/``extra``)."""
    if not isinstance(values, Mapping):
        raise ValueError(f"{what}: expected a mapping of sections, got {type(values).__name__}")
    for key, value in values.items():
        if key in ("preset", "variant", "extra"):
            continue
        if key not in SECTIONS:
            hint = f" (now {FLAT_OPTIONS[key]})" if key in FLAT_OPTIONS else ""
            raise ValueError(f"{what}: unknown option {key!r}{hint}; expected a section "
                             f"({', '.join(SECTIONS)}) of options")
        if not isinstance(value, Mapping):
            raise ValueError(f"{what}: section {key!r} must be a mapping, got {value!r}")
        fields = {f.name for f in dataclasses.fields(SECTIONS[key])}
        unknown = sorted(set(value) - fields)
        if unknown:
            raise ValueError(f"{what}: unknown option(s) {unknown} in section {key!r}")

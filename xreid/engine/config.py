"""Training configuration: one section per owner, presets, variants, files and flags.

:class:`TrainConfig` nests ``data`` (:class:`~xreid.data.config.DataConfig`), ``model``
(:class:`~xreid.models.config.ModelConfig`, i.e. :class:`~xreid.models.XReIDConfig` plus the
backbone), ``loss`` (:class:`~xreid.losses.config.LossConfig`), ``optim``
(:class:`~xreid.engine.optim.OptimConfig`), ``prompts``
(:class:`~xreid.prompts.config.PromptConfig`) and ``run``
(:class:`~xreid.engine.sections.RunConfig`). Each section validates itself; errors name
``section.field``. The defaults are the ``"demo"`` preset.

A configuration is resolved in one order, each layer a partial nested mapping written over
the previous one: **preset → variant → config file → flags** (:func:`resolve_config`).

Presets (:data:`xreid.presets.TRAIN_PRESETS`):

* ``"demo"``: the offline demo — a synthetic HITSZ-VCM-layout dataset, the ``"tiny"``
  backbone, the paper's heads and losses, a short CPU schedule.
* ``"paper"``: the paper's "Implementation Details": CLIP ViT-B/16, 288x144, T = 10,
  4 identities x 2 clips per modality, Adam 5e-6, 10 warm-up epochs from 5e-7, x0.1 at epochs
  30 and 50, 60 epochs; SII + LII (S = 2) + CII; Eq. 10 with unit weights; momentum 0.2;
  one memory initialisation from the pre-trained encoder. Where the paper is silent the
  authors' code is followed (per-parameter LR factors, weight decay, camera embedding).
* ``"official"``: the authors' released setup (``docs/differences.md``): 30 epochs of 300
  iterations, milestones never reached, SII only (2 blocks, detached), frame ID losses,
  0.25 ID weight, momentum 0.1, hard sample of either modality, memory rebuilt every epoch,
  ImageNet normalisation, no random crop.

Fields marked ``resumable`` (``xreid._config.option``) may differ between a checkpoint and
the run resuming it; :func:`resume_conflicts` lists the others that differ.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xreid._config import (
    check_choice,
    check_field_types,
    merge_nested,
    resumable_fields,
    section_from_dict,
)
from xreid.backbones.factory import default_patch_size
from xreid.data.config import DataConfig
from xreid.engine.optim import OptimConfig
from xreid.engine.sections import (
    FLAT_OPTIONS,
    SECTIONS,
    RunConfig,
    check_partial,
    nested_from_flat,
)
from xreid.engine.variants import get_variant, list_variants
from xreid.losses.config import LossConfig
from xreid.models.config import ModelConfig
from xreid.presets import PRESET_NAMES, TRAIN_PRESETS
from xreid.prompts.config import PromptConfig

__all__ = [
    "PRESET_NAMES",
    "RESUMABLE_OPTIONS",
    "TrainConfig",
    "check_types",
    "resolve_config",
    "resolve_values",
    "resume_conflicts",
]


def _is_flat(values: Mapping[str, Any]) -> bool:
    return any(k in FLAT_OPTIONS or k in ("model_preset", "loss_preset") for k in values)


def _as_nested(values: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``values`` as a partial nested mapping (old flat spellings converted), checked."""
    nested = nested_from_flat(values) if _is_flat(values) else dict(values)
    check_partial(nested, what)
    return nested


def resolve_values(preset: str | None = "demo", variant: str | None = None,
                   *layers: Mapping[str, Any]) -> dict[str, Any]:
    """The nested values of ``preset`` → ``variant`` → each of ``layers`` (partial nested
    mappings, or old flat ones) over the defaults; checked for unknown names, not yet
    validated (a later layer may still complete them)."""
    name = preset or "demo"
    check_choice("preset", name, PRESET_NAMES)
    values = merge_nested(TrainConfig().to_dict(), TRAIN_PRESETS[name])
    values["preset"] = name
    if variant is not None:
        values = merge_nested(values, get_variant(variant).overrides)
        values["variant"] = variant
    for layer in layers:  # a saved configuration keeps its preset and variant labels
        values = merge_nested(values, _as_nested(layer, "config"))
    return values


def check_types(values: Mapping[str, Any]) -> None:
    """``ValueError`` naming ``section.field`` for the first value of the nested ``values``
    whose type does not match its field (ranges and cross-checks are left to ``validate``)."""
    for name, cls in SECTIONS.items():
        try:
            check_field_types(section_from_dict(cls, values.get(name, {}), name))
        except ValueError as exc:
            raise ValueError(f"{name}.{exc}") from None


def resolve_config(preset: str | None = "demo", variant: str | None = None,
                   *layers: Mapping[str, Any]) -> TrainConfig:
    """The configuration of ``preset``, then ``variant``'s overrides, then each of ``layers``
    (config file, flags: partial nested mappings, or old flat ones), validated."""
    return TrainConfig.from_dict(resolve_values(preset, variant, *layers))


@dataclass
class TrainConfig:
    """Every option of the reference training loop, one section per owner.

    Attributes:
        data: dataset, clip shape, batch and augmentation (:class:`DataConfig`).
        model: X-ReID heads and backbone (:class:`ModelConfig`).
        loss: Eq. 10's weights and the memory initialisation (:class:`LossConfig`).
        optim: optimiser and LR schedule (:class:`OptimConfig`).
        prompts: CLIP-ReID-style textual prompts (:class:`PromptConfig`).
        run: output folder, seed, device, precision, evaluation and logging (:class:`RunConfig`).
        preset: the preset this configuration started from.
        variant: the named ablation applied on top of the preset (``xreid.engine.list_variants``).
        extra: free-form values carried into config.json.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    run: RunConfig = field(default_factory=RunConfig)
    preset: str = field(default="demo", metadata={"resumable": True})
    variant: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ presets and I/O
    @classmethod
    def from_preset(cls, name: str = "demo", **overrides: Any) -> TrainConfig:
        """The preset, then the ``variant`` keyword's overrides (if given), then ``overrides``:
        sections as mappings (``optim={"lr": 5e-4}``) or the flat names of earlier versions
        (``lr=5e-4``, see :data:`xreid.engine.sections.FLAT_OPTIONS`)."""
        variant = overrides.pop("variant", None)
        return resolve_config(name, variant, overrides)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build and validate; accepts this version's nested ``to_dict()`` and the flat
        configuration of earlier versions (converted on read)."""
        if not isinstance(values, Mapping):
            raise ValueError(f"config: expected a mapping of sections, got "
                             f"{type(values).__name__}")
        nested = _as_nested(values, "config")
        sections = {name: section_from_dict(cls_, nested.get(name, {}), name)
                    for name, cls_ in SECTIONS.items()}
        top = {k: nested[k] for k in ("preset", "variant", "extra") if k in nested}
        cfg = cls(**sections, **top)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Nested plain values (tuples as lists), as written to ``config.json``."""
        def plain(v: Any) -> Any:
            if isinstance(v, (tuple, list)):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v

        out: dict[str, Any] = {name: plain(dataclasses.asdict(getattr(self, name)))
                               for name in SECTIONS}
        out.update(preset=self.preset, variant=self.variant, extra=plain(self.extra))
        return out

    def flat_items(self) -> dict[str, Any]:
        """``{"section.field": value}`` of every option (tuples as lists)."""
        d = self.to_dict()
        out = {f"{s}.{k}": v for s in SECTIONS for k, v in d[s].items()}
        out.update(preset=d["preset"], variant=d["variant"])
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def replace(self, **sections: Mapping[str, Any]) -> TrainConfig:
        """A copy with the given sections' fields written over (``cfg.replace(optim={"lr":
        1e-4})``), validated."""
        return TrainConfig.from_dict(merge_nested(self.to_dict(), _as_nested(sections, "replace")))

    def validate(self) -> None:
        """Each section validates itself (errors name ``section.field``), then the options
        that span sections."""
        for name in SECTIONS:
            section = getattr(self, name)
            if not isinstance(section, SECTIONS[name]):
                raise ValueError(f"{name}: expected a {SECTIONS[name].__name__}, got "
                                 f"{type(section).__name__}")
            try:
                section.validate()
            except ValueError as exc:
                where = f" (variant {self.variant})" if self.variant else ""
                raise ValueError(f"{name}.{exc}{where}") from None
        check_choice("preset", self.preset, PRESET_NAMES)
        if self.variant is not None:
            check_choice("variant", self.variant, [v.name for v in list_variants()])
        if not isinstance(self.extra, dict):
            raise ValueError(f"extra: expected a mapping, got {type(self.extra).__name__}")
        patch = self.model.patch_size or default_patch_size(self.model.backbone)
        height, width = self.data.img_size
        if height % patch or width % patch:
            raise ValueError(f"data.img_size: expected multiples of the patch size {patch} "
                             f"(model.patch_size), got {height} x {width}")


RESUMABLE_OPTIONS: frozenset[str] = frozenset(
    {f"{name}.{f}" for name, cls in SECTIONS.items() for f in resumable_fields(cls)}
    | resumable_fields(TrainConfig)
)
"""``"section.field"`` of every option marked ``resumable`` (derived from the markers)."""


def resume_conflicts(saved: Mapping[str, Any], current: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """``{"section.field": (checkpoint value, current value)}`` for every option that is not
    marked resumable and differs from the checkpoint's ``saved`` configuration (nested, or
    flat from an earlier version)."""
    before = TrainConfig.from_dict(saved).flat_items()
    now = current.flat_items()
    return {k: (before[k], v) for k, v in now.items()
            if k not in RESUMABLE_OPTIONS and k in before and before[k] != v}

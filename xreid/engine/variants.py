"""Named ablation variants: every row of the paper's Tables 3-5 and every point of Figs. 4-5.

A variant is a set of :class:`~xreid.engine.TrainConfig` overrides applied on top of any
preset (``demo``, ``paper``, ``official``) and under the options the user sets explicitly::

    TrainConfig.from_preset("paper", variant="tab5/3", root=...)
    python examples/train_vvi.py --preset paper --variant tab5/3 ...

Every variant sets all the switches its row is about, so the preset's own choice for *those
switches* does not leak in (e.g. the ``official`` preset's ``hard_selection="any"`` is
replaced by the cross-modal rule in ``tab4/cpc``; a row with CII sets CMCL's weight to the
paper's 1, which the ``official`` loss preset has at 0). Everything else comes from the
preset, so a variant's *result* does depend on it: with the ``official`` preset's
``detach_mii=True`` the MII/CII losses train only the heads. Where a switch can change
nothing, the configuration is refused with one line instead of running a copy of another
row: CII on ``official`` without an MII branch (``tab5/4``; CMCL would reach only CII, which
inference does not use), see :meth:`~xreid.engine.TrainConfig.validate_no_op`.
The switches (all plain config fields):

=====================  =====================================================================
``use_memory``         CPC prototype memories and the CPCL term (Table 4 "Vanilla": off)
``hard_selection``     which sample updates a prototype: ``"same_modality"`` (PCL's
                       per-modality memories), ``"cross_modal"`` (Eq. 2, "Cross-modal
                       Update"), ``"any"`` (the authors' code)
``memory_collaboration``  each sample against both memories (Eqs. 3-4, "Cross-modal
                       Collaboration") or only its own modality's
``use_sii``, ``use_lii``, ``use_cii``  the three MII components (Table 5)
``sii_stride``         SII time stride S (Fig. 4); ``lii_stride``: LII stride S (Fig. 5)
=====================  =====================================================================

How the paper's rows map (HITSZ-VCM numbers of the paper in :attr:`Variant.paper`):
Table 3's "Baseline" (PCL) is Table 4's "Visual Memories"; "+ CPC" is Table 4's "CPC" and
Table 5's row 1; "+ MII" is Table 5's row 8, the full model. ``tab4/textual-prompts`` is
"Vanilla" plus CLIP-ReID's two-stage textual prompts (:mod:`xreid.engine.prompt_stages`)
with CLIP-ReID's stage-2 recipe; ``baselines/textual-prompts-xreid`` keeps the earlier
reading (X-ReID's loss weights, no smoothing, CLIP-ReID's photo template).

Beyond the paper's tables (``docs/ablations.md``, ``docs/training.md``):

- ``baselines``: ``baselines/pcl`` is the PCL baseline as PCL's own code trains it (one
  memory for both modalities rebuilt from identity centroids every epoch, memory loss plus
  a label-smoothed ID loss at 0.25, no triplet); ``tab3/baseline`` is the paper's text
  (two per-modality memories).
- ``cpcl``: the CPCL form (``cpcl/memory``, the default, and ``cpcl/paper``, Eqs. 3-4 as
  printed) on the full model.
- ``cmcl``: the readings of Eq. 9 on the full model: both branches and directions (the
  default), one branch, one direction.
- ``code``: the ``paper`` preset's own choices undone one at a time, each restoring what the
  authors' code does (``docs/training.md``, "Where each option of the paper preset comes
  from").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "STUDIES",
    "Variant",
    "get_variant",
    "list_variants",
    "register_variant",
    "study_variants",
    "unregister_variant",
]


@dataclass(frozen=True)
class Variant:
    """One named configuration of an ablation.

    Attributes:
        name: ``"<study>/<row>"``, e.g. ``"tab5/3"``.
        description: one line for ``study.py --list``.
        overrides: :class:`~xreid.engine.TrainConfig` field -> value.
        label: the row's name in the paper's table (or the figure's x value as text).
        columns: extra table columns in the paper's layout (Table 5: SII, LII, CII marks).
        x: the figure's abscissa (the stride S) for ``fig4`` / ``fig5`` variants.
        paper: the paper's HITSZ-VCM numbers ``(I2V R-1, I2V mAP, V2I R-1, V2I mAP)`` in
            percent, where the paper prints them (tables only).
        paper_bupt: the same for BUPTCampus, where the paper prints them (Table 3 only).
    """

    name: str
    description: str
    overrides: Mapping[str, Any]
    label: str = ""
    columns: Mapping[str, str] = field(default_factory=dict)
    x: float | None = None
    paper: tuple[float, float, float, float] | None = None
    paper_bupt: tuple[float, float, float, float] | None = None

    @property
    def study(self) -> str:
        return self.name.split("/", 1)[0]


_REGISTRY: dict[str, Variant] = {}

STUDIES: dict[str, tuple[str, ...]] = {
    "tab3": ("tab3/baseline", "tab3/cpc", "tab3/mii"),
    "tab4": (
        "tab4/vanilla",
        "tab4/textual-prompts",
        "tab4/visual-memories",
        "tab4/cross-modal-update",
        "tab4/cross-modal-collaboration",
        "tab4/cpc",
    ),
    "tab5": tuple(f"tab5/{i}" for i in range(1, 9)),
    "fig4": tuple(f"fig4/s{s}" for s in range(1, 5)),
    "fig5": tuple(f"fig5/s{s}" for s in range(0, 5)),
    "baselines": ("baselines/pcl", "baselines/textual-prompts-xreid"),
    "cpcl": ("cpcl/memory", "cpcl/paper"),
    "cmcl": ("cmcl/both", "cmcl/sii", "cmcl/lii", "cmcl/v2i", "cmcl/i2v"),
    "code": ("code/detach-mii", "code/imagenet-norm", "code/epoch-300"),
}
"""The variants of each study, in the paper's row (or x-axis) order. A listed name that is
not registered (e.g. after :func:`unregister_variant`) is skipped by :func:`study_variants`."""


def register_variant(variant: Variant, *, replace: bool = False) -> Variant:
    """Add ``variant`` to the registry (``ValueError`` if the name is taken, unless
    ``replace``). Every key of ``variant.overrides`` must be a :class:`TrainConfig` field."""
    from xreid.engine.config import TrainConfig

    if not isinstance(variant, Variant):
        raise TypeError(f"variant: expected a Variant, got {type(variant).__name__}")
    if "/" not in variant.name:
        raise ValueError(f"variant: expected a name '<study>/<row>', got {variant.name!r}")
    if variant.name in _REGISTRY and not replace:
        raise ValueError(f"variant: {variant.name!r} is already registered")
    fields = set(TrainConfig.__dataclass_fields__) - {"preset", "variant", "extra"}
    unknown = sorted(set(variant.overrides) - fields)
    if unknown:
        raise ValueError(f"variant: {variant.name!r} overrides unknown option(s) {unknown}")
    _REGISTRY[variant.name] = variant
    return variant


def unregister_variant(name: str) -> Variant:
    """Remove and return the registered variant ``name`` (``ValueError`` if unknown)."""
    variant = get_variant(name)
    del _REGISTRY[name]
    return variant


def list_variants() -> list[Variant]:
    """Every registered variant, studies in :data:`STUDIES` order, then any others."""
    order = [n for names in STUDIES.values() for n in names]
    known = [_REGISTRY[n] for n in order if n in _REGISTRY]
    return known + [v for n, v in _REGISTRY.items() if n not in order]


def get_variant(name: str) -> Variant:
    """The registered variant ``name``; ``ValueError`` listing the valid names otherwise."""
    if name not in _REGISTRY:
        valid = ", ".join(v.name for v in list_variants())
        raise ValueError(f"variant: unknown name {name!r}; expected one of: {valid}")
    return _REGISTRY[name]


def study_variants(study: str) -> list[Variant]:
    """The registered variants of ``study`` (a key of :data:`STUDIES`: ``tab3``, ``tab4``,
    ``tab5``, ``fig4``, ``fig5``, ``baselines``, ``cpcl``, ``cmcl``, ``code``) in order."""
    if study not in STUDIES:
        raise ValueError(f"study: expected one of {sorted(STUDIES)}, got {study!r}")
    return [_REGISTRY[n] for n in STUDIES[study] if n in _REGISTRY]


# ----------------------------------------------------------------------------- the paper
def _memory(update: str, collaboration: bool) -> dict[str, Any]:
    return {"use_memory": True, "hard_selection": update, "memory_collaboration": collaboration}


_NO_MII = {"use_sii": False, "use_lii": False, "use_cii": False}
_CPC = _memory("cross_modal", True)
# the paper's full model: CPC + SII (S = 1) + LII (S = 2) + CII, with CMCL at Eq. 10's weight
_FULL = {**_CPC, "use_sii": True, "use_lii": True, "use_cii": True, "sii_stride": 1,
         "lii_stride": 2, "cmcl_weight": 1.0}


def _add(name: str, description: str, overrides: dict[str, Any], **kw: Any) -> None:
    register_variant(Variant(name, description, overrides, **kw))


_add("tab3/baseline", "PCL baseline: per-modality memories (same-modality update, "
     "own-modality loss), no MII/CII", {**_memory("same_modality", False), **_NO_MII},
     label="Baseline", paper=(64.4, 51.3, 67.0, 53.7), paper_bupt=(61.2, 58.6, 61.7, 57.3))
_add("tab3/cpc", "+ CPC: cross-modal update, both-memory loss, no MII/CII",
     {**_CPC, **_NO_MII}, label="+ CPC", paper=(67.7, 57.1, 71.4, 56.6),
     paper_bupt=(63.6, 62.6, 64.4, 61.2))
_add("tab3/mii", "+ MII: the full model (CPC + SII + LII + CII)", dict(_FULL),
     label="+ MII", paper=(73.4, 60.5, 76.1, 59.6), paper_bupt=(68.2, 68.5, 68.8, 65.9))

_add("tab4/vanilla", "fine-tuning only: no memory, no MII/CII (ID + triplet losses)",
     {"use_memory": False, **_NO_MII}, label="Vanilla", paper=(53.9, 44.0, 55.9, 42.0))
# CLIP-ReID's stage 2 (configs/person/vit_clipreid.yml): ID 0.25 with smoothing 0.1, triplet
# 1, image-to-text 1 with the same smoothing; the paper's modality-specific template
_CLIP_REID = {"text_prompts": True, "use_memory": False, **_NO_MII,
              "prompt_template": "A {modality} video of a X X X X person.",
              "id_weight": 0.25, "triplet_weight": 1.0, "label_smoothing": 0.1,
              "prompt_i2t_weight": 1.0, "classifier_lr_factor": 1.0}
_add("tab4/textual-prompts", "CLIP-ReID's two stages and stage-2 recipe (ID 0.25, smoothing "
     "0.1, 'A visible/infrared video of a X X X X person.'), no memory, no MII/CII",
     _CLIP_REID, label="Textual Prompts", paper=(54.5, 40.0, 56.9, 41.4))
_add("tab4/visual-memories", "same-modality update, own-modality loss (= tab3/baseline)",
     {**_memory("same_modality", False), **_NO_MII}, label="Visual Memories",
     paper=(64.4, 51.3, 67.0, 53.7))
_add("tab4/cross-modal-update", "cross-modal update, own-modality loss, no MII/CII",
     {**_memory("cross_modal", False), **_NO_MII}, label="Cross-modal Update",
     paper=(67.5, 55.4, 70.5, 54.7))
_add("tab4/cross-modal-collaboration", "same-modality update, both-memory loss, no MII/CII",
     {**_memory("same_modality", True), **_NO_MII}, label="Cross-modal Collaboration",
     paper=(61.9, 49.0, 64.8, 51.0))
_add("tab4/cpc", "CPC: cross-modal update, both-memory loss, no MII/CII (= tab3/cpc)",
     {**_CPC, **_NO_MII}, label="CPC", paper=(67.7, 57.1, 71.4, 56.6))

_TAB5 = [  # (SII, LII, CII) and the paper's numbers, rows 1-8
    ((False, False, False), (67.7, 57.1, 71.4, 56.6)),
    ((True, False, False), (71.5, 58.9, 73.6, 57.6)),
    ((False, True, False), (71.2, 59.6, 74.0, 58.4)),
    ((False, False, True), (71.0, 59.2, 73.8, 58.0)),
    ((True, False, True), (72.0, 59.6, 74.5, 58.9)),
    ((False, True, True), (71.8, 60.0, 74.3, 58.6)),
    ((True, True, False), (72.9, 59.8, 75.5, 59.0)),
    ((True, True, True), (73.4, 60.5, 76.1, 59.6)),
]
for _row, ((_sii, _lii, _cii), _paper) in enumerate(_TAB5, start=1):
    _on = [n for n, v in (("SII", _sii), ("LII", _lii), ("CII", _cii)) if v]
    _add(f"tab5/{_row}", f"CPC + {' + '.join(_on) if _on else 'no MII component'}",
         {**_FULL, "use_sii": _sii, "use_lii": _lii, "use_cii": _cii}, label=str(_row),
         columns={k: ("✓" if v else "×") for k, v in
                  (("SII", _sii), ("LII", _lii), ("CII", _cii))},
         paper=_paper)

for _s in range(1, 5):
    _add(f"fig4/s{_s}", f"full model, SII time stride S={_s} (LII S=2)",
         {**_FULL, "sii_stride": _s}, label=f"S={_s}", x=float(_s))
for _s in range(0, 5):
    _add(f"fig5/s{_s}", f"full model, LII time stride S={_s} (SII S=1)"
         + (" (S=0: each frame's [CLS] with its own patches)" if _s == 0 else ""),
         {**_FULL, "lii_stride": _s}, label=f"S={_s}", x=float(_s))

# ------------------------------------------------------------------- beyond the tables
# PCL's code (RikoLi/PCL-CLIP, pcl/processor_pcl.py, config/pcl-vit.yml): one memory rebuilt
# from identity centroids every epoch, the hardest sample of the identity updates it
# (momentum 0.2, temperature 0.05), loss = memory CE + 0.25 * label-smoothed ID CE, no triplet.
# The shared memory is read as both modalities' (collaboration off: each sample against "its"
# copy), and the two copies' CE means add up to twice PCL's one, hence the weight 0.5.
_add("baselines/pcl", "PCL as its code trains it: one memory for both modalities rebuilt "
     "every epoch, memory + 0.25 x smoothed ID loss, no triplet, no MII/CII",
     {"use_memory": True, "memory_shared": True, "hard_selection": "any",
      "memory_collaboration": False, "memory_init": "every_epoch", "memory_momentum": 0.2,
      "memory_temperature": 0.05, "cpcl_form": "memory", "cpcl_weight": 0.5,
      "id_weight": 0.25, "triplet_weight": 0.0, "frame_id_weight": 0.0,
      "label_smoothing": 0.1, **_NO_MII},
     label="Baseline (PCL's code)")
_add("baselines/textual-prompts-xreid", "textual prompts with X-ReID's loss weights, no "
     "smoothing and 'A photo of a X X X X person.' (the earlier tab4/textual-prompts)",
     {"text_prompts": True, "use_memory": False, **_NO_MII,
      "prompt_template": "A photo of a X X X X person.", "id_weight": 1.0,
      "triplet_weight": 1.0, "label_smoothing": 0.0, "prompt_i2t_weight": 1.0,
      "classifier_lr_factor": 10.0},
     label="Textual Prompts (X-ReID losses)")

_add("cpcl/memory", "full model, CPCL as cosine / tau over all identities (the authors' "
     "code; the default)", {**_FULL, "cpcl_form": "memory"}, label="memory form")
_add("cpcl/paper", "full model, CPCL as Eqs. 3-4 print it: cosine, no temperature, "
     "softmax over the batch's identities", {**_FULL, "cpcl_form": "paper"},
     label="paper form")

_CMCL_READINGS = {
    "both": ("both", "both", "CMCL on SII and LII, both directions (the default)"),
    "sii": ("sii", "both", "CMCL on the SII branch only, both directions"),
    "lii": ("lii", "both", "CMCL on the LII branch only (the branch Eq. 9 writes), both "
            "directions"),
    "v2i": ("both", "v2i", "CMCL on both branches, visible anchor -> infrared patches only "
            "(the direction Eq. 9 writes)"),
    "i2v": ("both", "i2v", "CMCL on both branches, infrared anchor -> visible patches only"),
}
for _name, (_branches, _directions, _text) in _CMCL_READINGS.items():
    _add(f"cmcl/{_name}", f"full model, {_text}",
         {**_FULL, "cmcl_branches": _branches, "cmcl_directions": _directions},
         label=f"branches={_branches}, directions={_directions}")

_add("code/detach-mii", "MII/CII on detached backbone tokens, as the authors' code (the "
     "paper preset lets their gradients reach the backbone)", {"detach_mii": True},
     label="detach_mii=True")
_add("code/imagenet-norm", "ImageNet input statistics, as the authors' code (the paper "
     "preset uses CLIP's)", {"normalization": "imagenet"}, label="ImageNet normalisation")
_add("code/epoch-300", "an epoch of 300 iterations for 30 epochs, as the authors' code "
     "(9,000 in all; the paper preset: one sampler pass x 60)",
     {"iters_per_epoch": 300, "epochs": 30}, label="30 x 300 iterations")

"""Training configuration (a plain dataclass) and its presets.

Presets (``TrainConfig.preset(name)``):

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
  ImageNet normalisation, no random crop. The clear bugs are not reproduced (the shift is
  out of place, erasing pastes at the sampled position, the sampler re-draws every epoch,
  memory extraction runs in eval mode, no model selection on the test set).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xreid._validation import check_positive_int
from xreid.engine.config_checks import check_config
from xreid.presets import PRESET_NAMES, TRAIN_PRESETS

__all__ = ["PRESET_NAMES", "TrainConfig"]



def _option(default: Any, help: str) -> Any:
    """A dataclass field with its CLI help text (``examples/train_vvi.py`` builds every flag,
    help included, from the fields)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every option of the reference training loop (each is also a CLI flag).

    The defaults are the ``"demo"`` preset. Sizes are (height, width).
    """

    # data
    dataset: str = _option(
        "synthetic",
        "dataset reader: synthetic (generated offline), hitsz-vcm, bupt-campus or folder "
        "(own data)"
    )
    root: str | None = _option(None, "dataset folder (synthetic: where to generate/cache it)")
    synthetic_seed: int = _option(0, "seed of the synthetic dataset generator")
    synthetic_train_ids: int | None = _option(
        None,
        "synthetic training identities (default: the generator's)"
    )
    synthetic_test_ids: int | None = _option(
        None,
        "synthetic test identities (default: the generator's)"
    )
    val_ids: int | None = _option(
        None,
        "training identities held out as a validation split shaped like the test protocol "
        "(default: 24 for the synthetic dataset, generated in addition to its training "
        "identities; 0, i.e. none, for the others); choose options on it, not on test"
    )
    min_len: int | None = _option(
        None,
        "drop tracklets shorter than this (default: the dataset's, HITSZ-VCM 12, "
        "BUPTCampus 1)"
    )
    img_size: tuple[int, int] = _option((64, 32), "input height and width")
    num_frames: int = _option(4, "frames per clip T")
    ids_per_batch: int = _option(8, "identities per batch P")
    clips_per_modality: int = _option(2, "clips per identity and modality K")
    normalization: str = _option("imagenet", "input normalisation statistics: imagenet | clip")
    flip_p: float = _option(0.5, "probability of a horizontal flip of a training clip")
    pad: int = _option(4, "pixels of zero padding before the random crop (0: no crop)")
    erasing_p: float = _option(0.5, "probability of random erasing of a training clip")
    num_workers: int = _option(0, "data loader worker processes")
    use_cameras: bool = _option(
        False,
        "camera embedding (SIE) on the [CLS] token (off in the demo; on in the paper and "
        "official presets, as the authors' code)"
    )
    # model
    backbone: str = _option("tiny", "tiny | clip-vit-b16 | clip-vit-b16-openclip")
    weights: str | None = _option(
        None,
        "local weights file (OpenAI ViT-B-16.pt, open_clip state dict or safetensors)"
    )
    random_init: bool = _option(
        False,
        "allow a CLIP backbone without --weights (random init; smoke tests only)"
    )
    # backbone size overrides (None: the backbone's default; CLIP sizes must match weights)
    patch_size: int | None = _option(None, "backbone patch size (default: the backbone's)")
    embed_dim: int | None = _option(
        None,
        "backbone width D (default: the backbone's; CLIP must match the weights)"
    )
    depth: int | None = _option(None, "backbone blocks (default: the backbone's)")
    num_heads: int | None = _option(None, "backbone attention heads (default: the backbone's)")
    model_preset: str = _option("paper", "X-ReID heads: paper | official")
    loss_preset: str = _option("paper", "Eq. 10 weights: paper | official")
    lii_stride: int | None = _option(None, "LII time stride S (default: the model preset's)")
    sii_depth: int | None = _option(None, "SII blocks (default: the model preset's)")
    use_lii: bool | None = _option(None, "LII branch of MII (default: the model preset's; Table 5)")
    use_cii: bool | None = _option(
        None,
        "CII cross-modal interaction (default: the model preset's; Table 5)"
    )
    cii_query_residual: bool | None = _option(
        None,
        "keep the residual of CII's query token (default: the model preset's, True); "
        "false closes the CMCL shortcut (docs/modules.md)"
    )
    cii_depth: int | None = _option(None, "CII blocks (default: the model preset's, 1)")
    cmcl_branches: str | None = _option(
        None,
        "MII branches under CII/CMCL: both (the paper) | sii | lii (default: the model "
        "preset's, both; docs/modules.md)"
    )
    cmcl_directions: str | None = _option(
        None,
        "CII directions: both (the paper) | v2i | i2v (default: the model preset's, both)"
    )
    cmcl_stop_gradient: str | None = _option(
        None,
        "side of Eq. 9 held constant: none (the paper) | anchor | interaction "
        "(default: the model preset's, none; docs/modules.md)"
    )
    detach_mii: bool | None = _option(
        None,
        "feed MII/CII detached backbone tokens, as the authors' code (default: the model "
        "preset's)"
    )
    # ablation switches (None: the model / loss preset's value); see xreid.engine.variants
    use_sii: bool | None = _option(None, "SII branch of MII (Table 5)")
    sii_stride: int | None = _option(None, "SII time stride S (Fig. 4)")
    use_memory: bool | None = _option(None, "CPC prototype memories and the CPCL loss (Table 4)")
    hard_selection: str | None = _option(
        None,
        "memory update: cross_modal | same_modality | any (Table 4)"
    )
    memory_collaboration: bool | None = _option(
        None,
        "CPCL against both memories (else own modality only; Table 4)"
    )
    cpcl_form: str | None = _option(
        None,
        "CPCL form: memory (cosine / tau over all identities, the authors' code) | paper "
        "(Eqs. 3-4 as printed: cosine, no tau, the batch's identities) (default: memory)"
    )
    memory_shared: bool | None = _option(
        None,
        "one memory for both modalities, initialised from cross-modal identity centroids "
        "(PCL's code; default: the model preset's, False)"
    )
    memory_momentum: float | None = _option(
        None,
        "prototype momentum mu of Eq. 1 (default: the model preset's)"
    )
    memory_temperature: float | None = _option(
        None,
        "CPCL temperature tau (default: the model preset's)"
    )
    cpcl_weight: float | None = _option(None, "Eq. 10 weight of CPCL (default: the loss preset's)")
    triplet_weight: float | None = _option(
        None,
        "Eq. 10 weight of the triplet loss (default: the loss preset's)"
    )
    id_weight: float | None = _option(
        None,
        "Eq. 10 weight of the identity cross-entropy (default: the loss preset's)"
    )
    cmcl_weight: float | None = _option(None, "Eq. 10 weight of CMCL (default: the loss preset's)")
    frame_id_weight: float | None = _option(
        None,
        "weight of the frame-level identity loss (default: the loss preset's)"
    )
    variant: str | None = _option(
        None,
        "a named ablation of the paper (e.g. tab5/3; `examples/study.py --list`), applied "
        "on top of the preset; explicit flags override it"
    )
    freeze_patch_embed: bool = _option(False, "freeze the backbone's patch projection")
    grad_checkpointing: bool = _option(
        False,
        "recompute backbone blocks in backward (less activation memory)"
    )
    label_smoothing: float = _option(
        0.0,
        "label smoothing of the identity cross-entropies, in [0, 1)"
    )
    memory_init: str = _option("once", "CPC memory: once (paper) | every_epoch (authors' code)")
    memory_batch_size: int = _option(32, "batch size of the memory feature extraction")
    # optimisation (Adam, per-epoch warm-up + multi-step schedule)
    epochs: int = _option(40, "training epochs")
    iters_per_epoch: int | None = _option(
        50,
        "iterations per epoch (default: one pass of the identity sampler)"
    )
    lr: float = _option(1e-3, "base learning rate (Adam)")
    warmup_epochs: int = _option(2, "epochs of linear LR warm-up")
    warmup_factor: float = _option(0.1, "LR multiplier at the start of the warm-up")
    milestones: tuple[int, ...] = _option(
        (32,),
        "1-based epochs after which the LR is multiplied by gamma"
    )
    gamma: float = _option(0.1, "LR multiplier at each milestone")
    weight_decay: float = _option(1e-4, "Adam (coupled L2) weight decay, on every parameter")
    bias_lr_factor: float = _option(1.0, "LR multiplier of biases")
    classifier_lr_factor: float = _option(10.0, "LR multiplier of the identity classifiers")
    head_lr_factor: float = _option(1.0, "LR multiplier of the MII and CII parameters")
    max_grad_norm: float | None = _option(
        None,
        "clip the gradient norm to this value (default: no clipping)"
    )
    # textual prompts (Table 4 "Textual Prompts"; CLIP-ReID's two stages, see
    # xreid.engine.prompt_stages): stage 1 learns the prompts, then `epochs` of stage 2
    text_prompts: bool = _option(
        False,
        "CLIP-ReID's two stages with per-identity, per-modality text prompts"
    )
    text_weights: str | None = _option(
        None,
        "CLIP checkpoint with the text tower (default: --weights)"
    )
    prompt_stage1_epochs: int = _option(120, "stage-1 (prompt learning) epochs; CLIP-ReID: 120")
    prompt_stage1_lr: float = _option(
        3.5e-4,
        "stage-1 Adam LR (warm-up 5 epochs from 1e-5, cosine); CLIP-ReID: 3.5e-4"
    )
    prompt_stage1_batch_size: int = _option(
        64,
        "stage-1 batch of cached clip features; CLIP-ReID: 64"
    )
    prompt_stage1_i2t: str = _option(
        "batch",
        "stage-1 image-to-text candidates: batch (CLIP-ReID) | all"
    )
    prompt_similarity: str = _option(
        "dot",
        "image-text similarity: dot (CLIP-ReID) | cosine (x logit scale)"
    )
    prompt_i2t_weight: float = _option(1.0, "weight of the stage-2 image-to-text cross-entropy")
    prompt_template: str = _option(
        "A photo of a X X X X person.",
        "prompt text; the X words are learned, {modality} becomes visible/infrared (the "
        "paper: 'A {modality} video of a X X X X person.')"
    )
    # runtime
    device: str = _option("auto", "auto | cpu | cuda | cuda:N")
    threads: int | None = _option(None, "torch intra-op CPU threads (default: torch's)")
    amp: str = _option("none", "mixed precision: none | bf16 | fp16")
    compile: bool = _option(False, "torch.compile the backbone and MII")
    seed: int = _option(0, "random seed of sampling, augmentation and initialisation")
    deterministic: bool = _option(False, "deterministic torch algorithms (slower)")
    eval_batch_size: int = _option(16, "tracklets per evaluation batch")
    eval_sampling: str = _option(
        "chunk_first",
        "evaluation frames: chunk_first | uniform | dense | restricted_random"
    )
    eval_before: bool = _option(True, "also evaluate before training (the untrained row)")
    pixel_baseline: bool = _option(
        True,
        "also rank the test split by raw pixels (metrics.json baselines.pixels)"
    )
    rerank: bool = _option(False, "k-reciprocal re-ranking at evaluation")
    output_dir: str = _option(
        "xreid_runs/demo",
        "where metrics.json, plots, log.jsonl and checkpoint.pt go"
    )
    save_every: int = _option(1, "epochs between checkpoints (the final one is always written)")
    log_every: int = _option(1, "iterations between JSONL log lines")
    preset: str = _option("demo", "the preset this configuration started from")
    extra: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "free-form values carried into config.json"}
    )

    # ------------------------------------------------------------------ presets and I/O
    @classmethod
    def from_preset(cls, name: str = "demo", **overrides: Any) -> TrainConfig:
        """The preset's values, then the named ``variant``'s overrides (if ``overrides`` has
        a ``variant`` key), then ``overrides`` (unknown keys raise ``ValueError``)."""
        if name not in TRAIN_PRESETS:
            raise ValueError(f"preset: expected one of {list(PRESET_NAMES)}, got {name!r}")
        variant: dict[str, Any] = {}
        if overrides.get("variant") is not None:
            from xreid.engine.variants import get_variant

            variant = dict(get_variant(overrides["variant"]).overrides)
        values = {**TRAIN_PRESETS[name], **variant, **overrides, "preset": name}
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"config: unknown option(s) {unknown}")
        cfg = cls(**values)
        cfg.img_size = tuple(int(v) for v in cfg.img_size)  # type: ignore[assignment]
        cfg.milestones = tuple(int(v) for v in cfg.milestones)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["img_size"] = list(self.img_size)
        d["milestones"] = list(self.milestones)
        return d

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def backbone_overrides(self) -> dict[str, Any]:
        """Non-None backbone size options for :func:`xreid.build_backbone`."""
        keys = ("patch_size", "embed_dim", "depth", "num_heads")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def model_overrides(self) -> dict[str, Any]:
        """Non-None head overrides for :meth:`xreid.XReID.from_preset`."""
        keys = ("lii_stride", "sii_depth", "use_lii", "use_cii", "cii_query_residual",
                "cmcl_stop_gradient", "detach_mii", "use_sii",
                "sii_stride", "use_memory", "hard_selection", "memory_collaboration",
                "memory_momentum", "memory_temperature", "cii_depth", "cmcl_branches",
                "cmcl_directions", "cpcl_form", "memory_shared")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def loss_overrides(self) -> dict[str, float]:
        """Non-None Eq. 10 weights, as keywords of :class:`xreid.XReIDLoss`."""
        keys = {"cpcl_weight": "cpcl", "triplet_weight": "triplet", "id_weight": "id",
                "cmcl_weight": "cmcl", "frame_id_weight": "frame_id"}
        return {v: float(getattr(self, k)) for k, v in keys.items()
                if getattr(self, k) is not None}

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent option."""
        check_config(self)  # every field's type and range (xreid.engine.config_checks)
        self.validate_ablation()
        choices = {
            "dataset": ("synthetic", "hitsz-vcm", "bupt-campus", "folder"),
            "normalization": ("imagenet", "clip"),
            "model_preset": ("paper", "official"),
            "loss_preset": ("paper", "official"),
            "memory_init": ("once", "every_epoch"),
            "amp": ("none", "bf16", "fp16"),
            "eval_sampling": ("chunk_first", "uniform", "dense", "restricted_random"),
            "preset": PRESET_NAMES,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}: expected one of {list(allowed)}, got "
                                 f"{getattr(self, key)!r}")
        if self.dataset != "synthetic" and not self.root:
            raise ValueError(f"root: expected the dataset folder for --dataset {self.dataset}, "
                             "got none")
        if len(self.img_size) != 2 or min(self.img_size) < 1:
            raise ValueError(f"img_size: expected (height, width), got {self.img_size}")
        positive = ("num_frames", "ids_per_batch", "clips_per_modality", "epochs",
                    "eval_batch_size", "memory_batch_size", "save_every", "log_every")
        for key in positive:
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key}: expected a positive integer, got {getattr(self, key)}")
        if self.iters_per_epoch is not None and self.iters_per_epoch < 1:
            raise ValueError(f"iters_per_epoch: expected None or >= 1, got {self.iters_per_epoch}")
        if self.lr <= 0:
            raise ValueError(f"lr: expected > 0, got {self.lr}")
        if not 0 <= self.warmup_epochs:
            raise ValueError(f"warmup_epochs: expected >= 0, got {self.warmup_epochs}")
        # textual prompts (xreid.engine.prompt_stages)
        for key, allowed in (("prompt_stage1_i2t", ("batch", "all")),
                             ("prompt_similarity", ("dot", "cosine"))):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}: expected one of {list(allowed)}, got "
                                 f"{getattr(self, key)!r}")
        if int(self.prompt_stage1_epochs) < 0:
            raise ValueError("prompt_stage1_epochs: expected an integer >= 0, got "
                             f"{self.prompt_stage1_epochs}")
        if int(self.prompt_stage1_batch_size) < 1:
            raise ValueError("prompt_stage1_batch_size: expected a positive integer, got "
                             f"{self.prompt_stage1_batch_size}")
        if not self.prompt_stage1_lr > 0:
            raise ValueError(f"prompt_stage1_lr: expected > 0, got {self.prompt_stage1_lr}")
        if not self.prompt_i2t_weight >= 0:
            raise ValueError(f"prompt_i2t_weight: expected >= 0, got {self.prompt_i2t_weight}")
        if "X" not in self.prompt_template.split() and "X." not in self.prompt_template.split():
            raise ValueError(f"prompt_template: expected learned words 'X' (e.g. 'A photo of a "
                             f"X X X X person.'), got {self.prompt_template!r}")
        self.validate_no_op()

    def resolved_model_option(self, key: str) -> Any:
        """The value the model will get for head option ``key``: this config's override, else
        the model preset's, else :class:`xreid.models.XReIDConfig`'s default."""
        from xreid.models.xreid import XReIDConfig
        from xreid.presets import MODEL_PRESETS

        value = self.model_overrides().get(key)
        if value is None:
            value = MODEL_PRESETS[self.model_preset].get(
                key, XReIDConfig.__dataclass_fields__[key].default)
        return value

    def validate_no_op(self) -> None:
        """Refuse (``ValueError``, one line) a CII that cannot change the trained model.

        CII's only loss is CMCL and inference never runs CII, so CII changes the model only
        through CMCL's gradient into its inputs. With ``detach_mii`` (the ``official``
        preset) the backbone tokens are constant to CII; without an MII branch the anchor is
        the detached sequence feature, so CMCL reaches nothing but CII itself (Table 5 row 4
        on ``official``): the run would equal the one without CII up to random numbers. (A
        CMCL weight of 0 with CII built is allowed: it is the control of
        ``docs/modules.md``; the variants with CII set the weight to 1.)
        """
        opt = self.resolved_model_option
        if not opt("use_cii") or not opt("detach_mii") or opt("use_sii") or opt("use_lii"):
            return
        where = f" (variant {self.variant})" if self.variant else ""
        raise ValueError(
            f"use_cii: with detach_mii true and no MII branch, CMCL reaches only CII, which "
            f"inference does not use, so CII changes nothing{where}; set detach_mii false or "
            f"turn on use_sii/use_lii")

    def validate_ablation(self) -> None:
        """Check the ablation switches (``ValueError`` naming the option)."""
        allowed = ("cross_modal", "same_modality", "any")
        if self.hard_selection is not None and self.hard_selection not in allowed:
            raise ValueError(f"hard_selection: expected one of {list(allowed)}, got "
                             f"{self.hard_selection!r}")
        from xreid.losses.cpcl import CPCL_FORMS
        from xreid.models.xreid import (
            CMCL_BRANCHES,
            CMCL_DIRECTIONS,
            CMCL_STOP_GRADIENTS,  # the one list of the values
        )

        for key, values in (("cmcl_stop_gradient", CMCL_STOP_GRADIENTS),
                            ("cmcl_branches", CMCL_BRANCHES),
                            ("cmcl_directions", CMCL_DIRECTIONS), ("cpcl_form", CPCL_FORMS)):
            if getattr(self, key) is not None and getattr(self, key) not in values:
                raise ValueError(f"{key}: expected one of {list(values)}, got "
                                 f"{getattr(self, key)!r}")
        if self.cii_depth is not None:
            check_positive_int(self.cii_depth, "cii_depth")
        for key in ("cpcl_weight", "triplet_weight", "id_weight", "cmcl_weight",
                    "frame_id_weight"):
            value = getattr(self, key)
            if value is not None and not value >= 0:
                raise ValueError(f"{key}: expected a weight >= 0, got {value}")
        stride = self.sii_stride
        if stride is not None:
            check_positive_int(stride, "sii_stride")
        if self.variant is not None:
            from xreid.engine.variants import list_variants

            names = [v.name for v in list_variants()]
            if self.variant not in names:
                raise ValueError(f"variant: expected one of {names}, got {self.variant!r}")

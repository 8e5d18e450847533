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

__all__ = ["PRESET_NAMES", "TrainConfig"]

PRESET_NAMES = ("demo", "paper", "official")

_PRESETS: dict[str, dict[str, Any]] = {
    "demo": {},
    "paper": {
        "dataset": "hitsz-vcm",
        "backbone": "clip-vit-b16",
        "img_size": (288, 144),
        "num_frames": 10,
        "ids_per_batch": 4,
        "clips_per_modality": 2,
        "model_preset": "paper",
        "loss_preset": "paper",
        "epochs": 60,
        "iters_per_epoch": None,
        "lr": 5e-6,
        "warmup_epochs": 10,
        "warmup_factor": 0.1,
        "milestones": (30, 50),
        "weight_decay": 1e-4,
        "bias_lr_factor": 2.0,
        "classifier_lr_factor": 10.0,
        "head_lr_factor": 10.0,
        "memory_init": "once",
        "normalization": "clip",
        "pad": 10,
        "freeze_patch_embed": True,
        "eval_batch_size": 32,
    },
    "official": {
        "dataset": "hitsz-vcm",
        "backbone": "clip-vit-b16",
        "img_size": (288, 144),
        "num_frames": 10,
        "ids_per_batch": 4,
        "clips_per_modality": 2,
        "model_preset": "official",
        "loss_preset": "official",
        "epochs": 30,
        "iters_per_epoch": 300,
        "lr": 5e-6,
        "warmup_epochs": 10,
        "warmup_factor": 0.1,
        "milestones": (30, 50, 70),
        "weight_decay": 1e-4,
        "bias_lr_factor": 2.0,
        "classifier_lr_factor": 10.0,
        "head_lr_factor": 10.0,
        "memory_init": "every_epoch",
        "normalization": "imagenet",
        "pad": 0,
        "freeze_patch_embed": True,
        "eval_batch_size": 32,
    },
}


@dataclass
class TrainConfig:
    """Every option of the reference training loop (each is also a CLI flag).

    The defaults are the ``"demo"`` preset. Sizes are (height, width).
    """

    # data
    dataset: str = "synthetic"  # synthetic | hitsz-vcm | bupt-campus | folder (own data)
    root: str | None = None  # dataset root; synthetic: where it is generated (cached)
    synthetic_seed: int = 0
    synthetic_train_ids: int | None = None  # None: the generator's default
    synthetic_test_ids: int | None = None
    min_len: int | None = None  # drop shorter tracklets; None: the dataset's default (12 / 1)
    img_size: tuple[int, int] = (64, 32)
    num_frames: int = 4
    ids_per_batch: int = 8
    clips_per_modality: int = 2
    normalization: str = "imagenet"  # imagenet | clip
    flip_p: float = 0.5
    pad: int = 4
    erasing_p: float = 0.5
    num_workers: int = 0
    use_cameras: bool = True  # camera embedding (SIE) on the [CLS] token
    # model
    backbone: str = "tiny"
    weights: str | None = None
    random_init: bool = False  # allow a CLIP backbone without --weights (smoke tests only)
    # backbone size overrides (None: the backbone's default; CLIP sizes must match weights)
    patch_size: int | None = None
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    model_preset: str = "paper"  # XReID head preset: paper | official
    loss_preset: str = "paper"  # XReIDLoss preset: paper | official
    lii_stride: int | None = None
    sii_depth: int | None = None
    use_lii: bool | None = None
    use_cii: bool | None = None
    detach_mii: bool | None = None
    # ablation switches (None: the model / loss preset's value); see xreid.engine.variants
    use_sii: bool | None = None
    sii_stride: int | None = None
    use_memory: bool | None = None
    hard_selection: str | None = None  # cross_modal | same_modality | any
    memory_collaboration: bool | None = None
    memory_momentum: float | None = None
    memory_temperature: float | None = None
    cpcl_weight: float | None = None
    triplet_weight: float | None = None
    id_weight: float | None = None
    cmcl_weight: float | None = None
    frame_id_weight: float | None = None
    variant: str | None = None  # a named ablation (its overrides sit under explicit ones)
    freeze_patch_embed: bool = False
    grad_checkpointing: bool = False
    label_smoothing: float = 0.0
    memory_init: str = "once"  # once | every_epoch
    memory_batch_size: int = 32
    # optimisation (Adam, per-epoch warm-up + multi-step schedule)
    epochs: int = 40
    iters_per_epoch: int | None = 50  # None: one pass of the identity sampler
    lr: float = 5e-4
    warmup_epochs: int = 2
    warmup_factor: float = 0.1
    milestones: tuple[int, ...] = (32,)
    gamma: float = 0.1
    weight_decay: float = 1e-4
    bias_lr_factor: float = 1.0
    classifier_lr_factor: float = 10.0
    head_lr_factor: float = 1.0  # MII / CII parameters
    max_grad_norm: float | None = None
    # textual prompts (Table 4 "Textual Prompts"; CLIP-ReID's two stages, see
    # xreid.engine.prompt_stages): stage 1 learns the prompts, then `epochs` of stage 2
    text_prompts: bool = False
    text_weights: str | None = None  # CLIP checkpoint with the text tower (None: `weights`)
    prompt_stage1_epochs: int = 120  # CLIP-ReID: 120
    prompt_stage1_lr: float = 3.5e-4  # CLIP-ReID: Adam 3.5e-4, warm-up 5 epochs from 1e-5
    prompt_stage1_batch_size: int = 64  # CLIP-ReID: 64
    prompt_stage1_i2t: str = "batch"  # batch (CLIP-ReID) | all (every prompt)
    prompt_similarity: str = "dot"  # dot (CLIP-ReID) | cosine (x CLIP's logit scale)
    prompt_i2t_weight: float = 1.0  # stage-2 image-to-text CE (CLIP-ReID: 1.0)
    # runtime
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int | None = None  # torch intra-op CPU threads (None: torch's default)
    amp: str = "none"  # none | bf16 | fp16
    compile: bool = False
    seed: int = 0
    deterministic: bool = False
    eval_batch_size: int = 16
    eval_sampling: str = "chunk_first"
    eval_before: bool = True
    pixel_baseline: bool = True  # also rank the test split by raw pixels (metrics "baselines")
    rerank: bool = False
    output_dir: str = "xreid_runs/demo"
    save_every: int = 1  # epochs between checkpoints (the final one is always written)
    log_every: int = 1  # iterations between JSONL log lines
    preset: str = "demo"
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ presets and I/O
    @classmethod
    def from_preset(cls, name: str = "demo", **overrides: Any) -> TrainConfig:
        """The preset's values, then the named ``variant``'s overrides (if ``overrides`` has
        a ``variant`` key), then ``overrides`` (unknown keys raise ``ValueError``)."""
        if name not in _PRESETS:
            raise ValueError(f"preset: expected one of {list(PRESET_NAMES)}, got {name!r}")
        variant: dict[str, Any] = {}
        if overrides.get("variant") is not None:
            from xreid.engine.variants import get_variant

            variant = dict(get_variant(overrides["variant"]).overrides)
        values = {**_PRESETS[name], **variant, **overrides, "preset": name}
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
        keys = ("lii_stride", "sii_depth", "use_lii", "use_cii", "detach_mii", "use_sii",
                "sii_stride", "use_memory", "hard_selection", "memory_collaboration",
                "memory_momentum", "memory_temperature")
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

    def validate_ablation(self) -> None:
        """Check the ablation switches (``ValueError`` naming the option)."""
        allowed = ("cross_modal", "same_modality", "any")
        if self.hard_selection is not None and self.hard_selection not in allowed:
            raise ValueError(f"hard_selection: expected one of {list(allowed)}, got "
                             f"{self.hard_selection!r}")
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

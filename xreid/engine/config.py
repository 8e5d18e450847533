"""Training configuration (a plain dataclass) and its presets.

Presets (``TrainConfig.preset(name)``):

* ``"demo"``: the offline demo — a synthetic HITSZ-VCM-layout dataset, the ``"tiny"``
  backbone, the paper's heads and losses, a short CPU schedule.
* ``"paper"``: the paper's "Implementation Details": CLIP ViT-B/16, 288x144, T = 10,
  4 identities x 2 clips per modality, Adam 5e-6, 10 warm-up epochs from 5e-7, x0.1 at epochs
  30 and 50, 60 epochs; SII + LII (S = 2) + CII; Eq. 10 with unit weights; momentum 0.2;
  one memory initialisation from the pre-trained encoder. Where the paper is silent the
  authors' code is followed (per-parameter LR factors, weight decay, camera embedding).
* ``"official"``: the authors' released setup (official-code-notes §5, §8): 30 epochs of 300
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
    dataset: str = "synthetic"  # synthetic | hitsz-vcm | bupt-campus
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
        """The preset's values, then ``overrides`` (unknown keys raise ``ValueError``)."""
        if name not in _PRESETS:
            raise ValueError(f"preset: expected one of {list(PRESET_NAMES)}, got {name!r}")
        values = {**_PRESETS[name], **overrides, "preset": name}
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
        keys = ("lii_stride", "sii_depth", "use_lii", "use_cii", "detach_mii")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent option."""
        choices = {
            "dataset": ("synthetic", "hitsz-vcm", "bupt-campus"),
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

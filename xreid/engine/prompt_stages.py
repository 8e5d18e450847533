"""The two training stages of the textual-prompts variant (Table 4, "Textual Prompts").

CLIP-ReID's scheme (Li, Sun and Li 2023) with modality-specific prompts (Fig. 1(a)): one
learned prompt per identity *and* modality (:class:`xreid.prompts.PromptLearner`, template
``prompts.template``, e.g. the paper's ``"A {modality} video of a X X X X person."``), encoded
by CLIP's frozen text tower.

**Stage 1** (prompts only; image and text encoders frozen). The clip feature of every
training tracklet, ``v = mean_t projected[:, t]`` (TAP over frames of the projected [CLS],
the backbone's ``FrameTokens.projected``), is extracted once with the pre-trained image
encoder (eval transforms, no camera embedding, one clip per tracklet, as CLIP-ReID caches its
image features). Then for ``prompt_stage1_epochs`` epochs the cached features are shuffled
into batches of ``prompt_stage1_batch_size`` and the context vectors minimise
``L_i2t + L_t2i`` (:mod:`xreid.prompts.losses`), a clip's class being (modality, identity).
``prompt_stage1_i2t="batch"`` (CLIP-ReID) contrasts each clip with the batch's prompts,
``"all"`` with every prompt of both modalities (a 2C-way cross-entropy; it encodes all 2C
prompts at every step). Optimiser: Adam, weight decay 1e-4, lr ``prompt_stage1_lr``
(3.5e-4) with CLIP-ReID's per-epoch schedule (:func:`stage1_lr`: linear warm-up from 1e-5
over 5 epochs, then cosine to 1e-6 at epoch ``prompt_stage1_epochs``). CLIP-ReID's default is
120 epochs.

**Stage 2** (the image encoder is trained; the trainer's usual sampler, optimiser, schedule
and losses). The prompts are frozen and their features ``(2, C, d)`` computed once; they act
as a classifier: clip b is scored against the C prompts of its own modality and
``prompt_i2t_weight * CE(logits, labels)`` (label smoothing as the ID loss) is added to the
trainer's loss as the term ``"i2t"`` (:class:`PromptLoss`). The image feature is the
``projected`` TAP of :class:`xreid.XReIDOutput` (before BNNeck), CLIP-ReID's
``img_feature_proj``. Inference is unchanged (image features only).

Similarity (``prompt_similarity``): ``"dot"`` (CLIP-ReID: raw dot product of the
unnormalised features, scale 1) or ``"cosine"`` (L2-normalised features times CLIP's logit
scale ``exp(logit_scale)`` from the checkpoint, 100 for OpenAI's CLIP; 1/0.07 for a random
text tower).

**Text tower.** From ``text_weights`` or else ``weights`` (OpenAI's ``ViT-B-16.pt``, or a
``xreid-convert --format openclip --keep-text`` file); without weights, or when ``weights``
names bundled image-encoder weights (``"synthetic-pretrained"``: no text tower), a random tower of
:meth:`TextTowerConfig.tiny` size (backbone ``"tiny"``) or ViT-B/16 size, seeded by ``seed``.

**State.** :meth:`PromptStages.state_dict` (the context, the stage-2 prompt features and
whether stage 1 ran) travels in the trainer checkpoint under ``"prompts"``, so a resumed run
does not repeat stage 1. Under DDP every rank runs stage 1 on the same data and rank 0's
context is broadcast afterwards.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from xreid.backbones.bundled import BUNDLED_WEIGHTS
from xreid.engine.hooks import Hook
from xreid.losses.xreid_loss import LossOutput
from xreid.prompts.learner import PromptLearner
from xreid.prompts.losses import image_to_text_loss, prompt_logits, text_to_image_loss
from xreid.prompts.text_tower import (
    TextTowerConfig,
    build_text_tower,
    encode_prompt_embeddings,
    load_text_tower,
)

if TYPE_CHECKING:  # pragma: no cover
    from xreid.engine.config import TrainConfig

__all__ = [
    "STAGE1_DEFAULTS",
    "PromptLoss",
    "PromptStages",
    "PromptStagesHook",
    "build_prompt_text_tower",
    "stage1_lr",
]

STAGE1_DEFAULTS: dict[str, float] = {
    "epochs": 120,
    "lr": 3.5e-4,
    "batch_size": 64,
    "warmup_epochs": 5,
    "warmup_lr": 1e-5,
    "min_lr": 1e-6,
    "weight_decay": 1e-4,
}
"""CLIP-ReID's stage-1 solver (ViT-B/16 person config)."""

LogFn = Callable[[dict[str, Any]], None]


def stage1_lr(
    epoch: int,
    *,
    epochs: int,
    base_lr: float,
    warmup_epochs: int = 5,
    warmup_lr: float = 1e-5,
    min_lr: float = 1e-6,
) -> float:
    """Stage-1 learning rate of the 1-based ``epoch`` (CLIP-ReID's cosine schedule, one
    cycle, no warm-up prefix)::

        epoch < warmup_epochs:  warmup_lr + epoch * (base_lr - warmup_lr) / warmup_epochs
        epoch < epochs:         min_lr + (base_lr - min_lr) * (1 + cos(pi * epoch / epochs)) / 2
        otherwise:              min_lr
    """
    if epoch < warmup_epochs:
        return warmup_lr + epoch * (base_lr - warmup_lr) / warmup_epochs
    if epoch < epochs:
        return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * epoch / epochs))
    return min_lr


def build_prompt_text_tower(cfg: TrainConfig, embed_dim: int) -> tuple[nn.Module, float | None]:
    """The frozen text tower of ``cfg`` -> (tower, logit scale or None); see the module
    docstring. Raises ``ValueError`` if its feature width is not ``embed_dim``."""
    image = cfg.model.weights  # bundled names are image encoders only: no text tower
    source = cfg.prompts.text_weights or (image if image not in BUNDLED_WEIGHTS else None)
    if source:
        tower, logit_scale = load_text_tower(source)
    else:
        config = (TextTowerConfig.tiny(embed_dim) if cfg.model.backbone == "tiny"
                  else replace(TextTowerConfig.vit_b16(), embed_dim=embed_dim))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.run.seed)
            tower = build_text_tower(config)
        logit_scale = None
    width = tower.text_projection.shape[1]
    if width != embed_dim:
        raise ValueError(
            f"text_weights: expected a text tower with {embed_dim}-d features (the backbone's "
            f"projection width), got {width}-d features from {source!r}"
        )
    return tower.eval().requires_grad_(False), logit_scale


class PromptLoss(nn.Module):
    """Stage-2 loss: ``base(output, labels, memory, modality)`` plus
    ``weight * CE(prompt logits)``.

    The prompt logits are :func:`xreid.prompts.prompt_logits` of ``output.projected``
    against ``text_features`` (M, C, d), each clip against the prompts of its ``modality``
    (B,). The cross-entropy uses ``base.label_smoothing``. Returns a :class:`~xreid.LossOutput` with
    the extra term ``"i2t"``.
    """

    def __init__(self, base: nn.Module, *, weight: float = 1.0, scale: float = 1.0,
                 normalize: bool = False) -> None:
        super().__init__()
        if not weight >= 0:
            raise ValueError(f"weight: expected >= 0, got {weight!r}")
        self.base = base
        self.weight = float(weight)
        self.scale = float(scale)
        self.normalize = bool(normalize)
        self.register_buffer("text_features", None)

    def set_text_features(self, features: torch.Tensor) -> None:
        self.text_features = features.detach().float()

    def forward(self, output: Any, labels: torch.Tensor, memory: Any = None,
                modality: torch.Tensor | None = None) -> LossOutput:
        result = self.base(output, labels, memory, modality)
        if self.text_features is None:
            raise RuntimeError("PromptLoss: the prompt features are not set (run stage 1 "
                               "with PromptStages.prepare_stage2() first)")
        if modality is None:
            raise ValueError("modality: expected the batch's (B,) modality (each clip is "
                             "scored against the prompts of its modality), got None")
        text = self.text_features.to(output.projected.device)
        logits = prompt_logits(output.projected, modality, text, scale=self.scale,
                               normalize=self.normalize)
        smoothing = float(getattr(self.base, "label_smoothing", 0.0))
        i2t = F.cross_entropy(logits, labels.long(), label_smoothing=smoothing)
        total = result.total + self.weight * i2t if self.weight > 0 else result.total
        return LossOutput(total=total, terms={**result.terms, "i2t": i2t.detach()},
                          weights={**result.weights, "i2t": self.weight})


class PromptStages:
    """Stage 1 and the stage-2 prompt classifier for a :class:`~xreid.engine.Trainer`.

    Built by :func:`xreid.engine.build_trainer` when ``cfg.prompts.enabled`` (with
    :class:`PromptStagesHook`); see the module docstring. ``log`` receives one JSON-able record
    per stage-1 epoch (event ``"prompt_stage1_epoch"``), ``message`` progress lines.
    """

    def __init__(self, cfg: TrainConfig, core: nn.Module, reader: Any,
                 device: torch.device | str, *, distributed: bool = False,
                 log: LogFn | None = None, message: Callable[[str], None] | None = None
                 ) -> None:
        self.cfg = cfg
        self.core = core
        self.reader = reader
        self.device = torch.device(device)
        self.distributed = distributed
        self.log = log
        self.message = message
        self.num_identities = int(core.num_identities)
        self.text_tower, logit_scale = build_prompt_text_tower(cfg, int(core.proj_dim))
        self.text_tower.to(self.device)
        self.normalize = cfg.prompts.similarity == "cosine"
        self.scale = (logit_scale or 1 / 0.07) if self.normalize else 1.0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.run.seed)
            self.learner = PromptLearner(
                self.num_identities, self.text_tower.token_embedding,
                template=cfg.prompts.template,
                context_length=int(self.text_tower.positional_embedding.shape[0]),
            ).to(self.device)
        self.learner.ctx.requires_grad_(False)
        self.stage1_done = False
        self.text_features: torch.Tensor | None = None
        self.loss: PromptLoss | None = None

    # ----------------------------------------------------------------------- integration
    def wrap_loss(self, base: nn.Module) -> PromptLoss:
        """The stage-2 loss around the trainer's loss."""
        self.loss = PromptLoss(base, weight=self.cfg.prompts.i2t_weight, scale=self.scale,
                               normalize=self.normalize)
        if self.text_features is not None:
            self.loss.set_text_features(self.text_features)
        return self.loss

    def prepare_stage2(self) -> None:
        """Run stage 1 (unless done, e.g. in a resumed run) and freeze the prompt features."""
        if not self.stage1_done:
            self.run_stage1()
        if self.text_features is None:
            self.text_features = self.prompt_features()
        if self.loss is not None:
            self.loss.set_text_features(self.text_features)

    def state_dict(self) -> dict[str, Any]:
        return {"ctx": self.learner.ctx.detach().cpu(), "stage1_done": self.stage1_done,
                "text_features": (None if self.text_features is None
                                  else self.text_features.cpu())}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore :meth:`state_dict`; ``None`` (a checkpoint without prompts) is ignored."""
        if state is None:
            return
        self.learner.load_state_dict({"ctx": state["ctx"]})
        self.stage1_done = bool(state.get("stage1_done", False))
        features = state.get("text_features")
        self.text_features = None if features is None else features.to(self.device)
        if self.loss is not None and self.text_features is not None:
            self.loss.set_text_features(self.text_features)

    # ------------------------------------------------------------------------- features
    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.cfg.run.amp)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def encode(self, modality: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N,), (N,) -> (N, d) prompt features (with gradient to ``ctx`` when enabled)."""
        with self._autocast():
            emb = self.learner(modality, labels)
            return encode_prompt_embeddings(self.text_tower, emb, self.learner.eot_index).float()

    @torch.no_grad()
    def prompt_features(self, chunk: int = 256) -> torch.Tensor:
        """(M, C, d) features of every prompt, float32, no gradient."""
        m, y = self.learner.all_prompts()
        feats = [self.encode(mi, yi) for mi, yi in zip(m.split(chunk), y.split(chunk))]
        return torch.cat(feats).reshape(self.learner.num_modalities, self.num_identities, -1)

    def image_features(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One clip per training tracklet through the frozen image encoder -> (features
        (N, d) = TAP of the projected [CLS], labels (N,), modality (N,))."""
        from xreid.data import ClipTransform, VideoClipDataset
        from xreid.memory.build import extract_memory_features

        cfg = self.cfg
        dataset = VideoClipDataset(
            self.reader.train, num_frames=cfg.data.num_frames, sampling="restricted_random",
            transform=ClipTransform(tuple(cfg.data.img_size), train=False,
                                    normalization=cfg.data.normalization),
            seed=cfg.run.seed,
        )
        dataset.set_epoch(0)
        loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.loss.memory_batch_size,
                                             shuffle=False, num_workers=cfg.data.num_workers)

        def projected_tap(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
            return model.projected_features(batch["video"])

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.run.amp)
        return extract_memory_features(self.core, loader, feature_fn=projected_tap,
                                device=self.device, autocast_dtype=dtype)

    # --------------------------------------------------------------------------- stage 1
    def run_stage1(self) -> list[dict[str, float]]:
        """Optimise the prompts (module docstring); returns the per-epoch mean losses."""
        cfg = self.cfg
        epochs = int(cfg.prompts.stage1_epochs)
        history: list[dict[str, float]] = []
        if epochs > 0:
            self._message(f"textual prompts, stage 1: extracting clip features "
                          f"({len(self.reader.train)} tracklets)")
            feats, labels, modality = self.image_features()
            history = self._optimise(feats, labels, modality, epochs)
        if self.distributed:
            import torch.distributed as dist

            dist.broadcast(self.learner.ctx.data, src=0)
        self.stage1_done = True
        self.text_features = self.prompt_features()
        return history

    def _optimise(self, feats: torch.Tensor, labels: torch.Tensor, modality: torch.Tensor,
                  epochs: int) -> list[dict[str, float]]:
        cfg = self.cfg
        c = self.num_identities
        keys = modality * c + labels
        all_m, all_y = self.learner.all_prompts()
        all_keys = all_m * c + all_y
        ctx = self.learner.ctx
        ctx.requires_grad_(True)
        optimizer = torch.optim.Adam([ctx], lr=cfg.prompts.stage1_lr,
                                     weight_decay=STAGE1_DEFAULTS["weight_decay"])
        scaler = torch.amp.GradScaler(self.device.type) if cfg.run.amp == "fp16" else None
        generator = torch.Generator().manual_seed(cfg.run.seed)
        kw = {"scale": self.scale, "normalize": self.normalize}
        history: list[dict[str, float]] = []
        every = max(1, epochs // 12)
        try:
            for epoch in range(1, epochs + 1):
                lr = stage1_lr(epoch, epochs=epochs, base_lr=cfg.prompts.stage1_lr,
                               warmup_epochs=int(STAGE1_DEFAULTS["warmup_epochs"]),
                               warmup_lr=STAGE1_DEFAULTS["warmup_lr"],
                               min_lr=STAGE1_DEFAULTS["min_lr"])
                for group in optimizer.param_groups:
                    group["lr"] = lr
                sums = {"i2t": 0.0, "t2i": 0.0}
                steps = 0
                order = torch.randperm(feats.shape[0], generator=generator)
                for chunk in order.split(cfg.prompts.stage1_batch_size):
                    idx = chunk.to(feats.device)
                    img, k = feats[idx], keys[idx]
                    if cfg.prompts.stage1_i2t == "all":
                        every_text = self.encode(all_m, all_y)
                        l_i2t = image_to_text_loss(img, every_text, k, all_keys, **kw)
                        text = every_text[k]
                    else:
                        text = self.encode(modality[idx], labels[idx])
                        l_i2t = image_to_text_loss(img, text, k, k, **kw)
                    l_t2i = text_to_image_loss(text, img, k, k, **kw)
                    loss = l_i2t + l_t2i
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        loss.backward()
                        optimizer.step()
                    sums["i2t"] += float(l_i2t.detach())
                    sums["t2i"] += float(l_t2i.detach())
                    steps += 1
                record = {k: v / max(1, steps) for k, v in sums.items()}
                record["loss"] = record["i2t"] + record["t2i"]
                if not math.isfinite(record["loss"]):
                    raise FloatingPointError(f"non-finite stage-1 loss at epoch {epoch}: "
                                             f"{record}")
                record["lr"] = lr
                history.append(record)
                if self.log is not None:
                    self.log({"event": "prompt_stage1_epoch", "epoch": epoch, **record})
                if epoch % every == 0 or epoch == epochs:
                    self._message(f"textual prompts, stage 1: epoch {epoch}/{epochs}  "
                                  f"i2t={record['i2t']:.4f}  t2i={record['t2i']:.4f}  "
                                  f"lr={lr:.2e}")
        finally:
            ctx.requires_grad_(False)
            ctx.grad = None
        return history

    def _message(self, text: str) -> None:
        if self.message is not None:
            self.message(text)


class PromptStagesHook(Hook):
    """Runs :meth:`PromptStages.prepare_stage2` when training starts (stage 1 once, then the
    frozen prompt features) and keeps the stages' state in the checkpoint (``"prompts"``)."""

    main_process_only = False

    def __init__(self, stages: PromptStages) -> None:
        self.stages = stages

    def on_train_start(self, trainer: Any) -> None:
        self.stages.log = trainer.log
        self.stages.message = trainer.message
        self.stages.prepare_stage2()

    def state_dict(self) -> dict[str, Any]:
        return {"prompts": self.stages.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stages.load_state_dict(state.get("prompts"))

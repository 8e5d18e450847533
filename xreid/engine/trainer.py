"""The reference training loop: one training step, memory initialisation, evaluation hook.

The loop is library code so other projects can drive it; it never prints. Progress reaches the
caller through :class:`Callbacks` (the example script turns them into tqdm bars and tables),
and a JSONL log, the resolved config, checkpoints and metrics are written to
``cfg.output_dir`` by rank 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xreid._torch_utils import unwrap_model
from xreid.engine.checkpoint import (
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    remove_stale_temporaries,
    restore_rng_state,
)
from xreid.engine.config import TrainConfig
from xreid.engine.device import setup_device
from xreid.engine.optim import build_optimizer, build_scheduler
from xreid.engine.synthetic_cache import (
    prepare_synthetic_root,
    remove_stale_dataset_temporaries,
    synthetic_folder_name,
)

__all__ = [
    "RESUMABLE_OPTIONS",
    "Callbacks",
    "NonFiniteLossError",
    "Trainer",
    "build_model",
    "build_reader",
    "remove_stale_dataset_temporaries",
    "resume_conflicts",
    "seed_everything",
    "synthetic_root",
    "train_step",
    "truncate_log",
]


# ----------------------------------------------------------------------------- utilities
#: options that may differ between a checkpoint and the run resuming it: where and how fast it
#: runs, how it is evaluated and logged, and how long it trains; anything else changes the
#: optimisation and is refused by :meth:`Trainer.load_checkpoint`
RESUMABLE_OPTIONS = frozenset({
    "output_dir", "root", "device", "threads", "num_workers", "compile", "deterministic",
    "epochs", "save_every", "log_every", "eval_batch_size", "eval_sampling", "eval_before",
    "rerank", "memory_batch_size", "weights", "preset",
})


class NonFiniteLossError(FloatingPointError):
    """A NaN or inf loss term; ``terms`` holds every term's value (floats)."""

    def __init__(self, message: str, terms: dict[str, float]) -> None:
        super().__init__(message)
        self.terms = terms


def resume_conflicts(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """``{option: current value}`` for every option that differs from the checkpoint's
    ``saved`` config and may not change on resume (see :data:`RESUMABLE_OPTIONS`)."""
    return {k: v for k, v in current.items()
            if k not in RESUMABLE_OPTIONS and k in saved and saved[k] != v}


def truncate_log(path: Path, *, epoch: int, iteration: int) -> None:
    """Drop the JSONL records written after a checkpoint (``epoch`` completed epochs,
    ``iteration`` steps) so a resumed run does not repeat iterations in its log."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        event = rec.get("event")
        if event == "iteration" and rec.get("iteration", 0) > iteration:
            continue
        if event in ("epoch", "evaluation") and rec.get("epoch", 0) > epoch:
            continue
        kept.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(k + "\n" for k in kept))
    os.replace(tmp, path)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party global users
    torch.manual_seed(seed)


def autocast_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def train_step(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device | str = "cpu",
    amp: str = "none",
    scaler: torch.amp.GradScaler | None = None,
    max_grad_norm: float | None = None,
    use_cameras: bool = True,
) -> dict[str, float]:
    """One X-ReID optimisation step on a paired batch, then the CPC memory update.

    ``batch`` holds ``video`` (B, T, 3, H, W), ``label``, ``modality`` and ``camera`` (B,)
    tensors, ordered as :class:`xreid.data.CrossModalIdentitySampler` yields them. The loss
    (Eq. 10) is computed against the current prototypes; after ``backward`` and the optimiser
    step the memory is updated with the batch's detached memory features (Eqs. 1-2). Returns
    every loss term (unweighted) and the weighted total as floats.
    """
    device = torch.device(device)
    core = unwrap_model(model)
    missing = [k for k in ("video", "label", "modality", "camera") if k not in batch]
    if missing:
        raise ValueError(
            f"batch: expected the keys video, label, modality, camera (as VideoClipDataset "
            f"yields them), missing {missing}"
        )
    video = batch["video"].to(device, non_blocking=True)
    labels = batch["label"].to(device, non_blocking=True)
    modality = batch["modality"].to(device, non_blocking=True)
    cameras = batch["camera"].to(device, non_blocking=True) if use_cameras else None
    model.train()
    with autocast_context(device, amp):
        out = model(video, modality, cameras, labels)
        result = loss_fn(out, labels, core.memory, modality)
    # one host synchronisation: refuse a NaN/inf loss before it reaches the weights or memory
    terms = {**result.terms, "total": result.total}
    values = torch.stack([v.detach().float().reshape(()) for v in terms.values()])
    if not bool(torch.isfinite(values).all()):
        found = dict(zip(terms, values.tolist(), strict=True))
        raise NonFiniteLossError(f"non-finite loss: {found}", found)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(result.total).backward()
        if max_grad_norm:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
    else:
        result.total.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
    if core.memory is not None:  # a model built with use_memory=False has none
        core.memory.update(out.memory_feature.detach().float(), labels, modality)
    return dict(zip(terms, values.tolist(), strict=True))


def _synthetic_params(cfg: TrainConfig) -> dict[str, Any]:
    """The generator's parameters; held-out validation identities come on top of the
    training ones."""
    train_ids = cfg.synthetic_train_ids
    val = validation_ids(cfg)
    if val:
        train_ids = (train_ids or SYNTHETIC_TRAIN_IDS) + val
    sizes = {"num_train_ids": train_ids, "num_test_ids": cfg.synthetic_test_ids}
    return {"seed": cfg.synthetic_seed, **{k: v for k, v in sizes.items() if v is not None}}


SYNTHETIC_TRAIN_IDS = 64  # make_synthetic_hitsz_vcm's default num_train_ids
SYNTHETIC_VAL_IDS = 24  # the synthetic dataset's default validation identities


def validation_ids(cfg: TrainConfig) -> int:
    """``cfg.val_ids``, or its default: 24 for the synthetic dataset, 0 for the others."""
    if cfg.val_ids is not None:
        return cfg.val_ids
    return SYNTHETIC_VAL_IDS if cfg.dataset == "synthetic" else 0


def build_readers(cfg: TrainConfig) -> tuple[Any, Any | None]:
    """(training reader, validation reader or None): :func:`build_reader`, then
    :func:`xreid.data.validation.hold_out_identities` (split seed 0, the same for every
    training seed) when :func:`validation_ids` is positive. The training reader keeps the
    dataset's own test split."""
    reader = build_reader(cfg)
    n = validation_ids(cfg)
    if not n:
        return reader, None
    from xreid.data.validation import hold_out_identities

    return hold_out_identities(reader, n, seed=0)


def synthetic_root(cfg: TrainConfig) -> Path:
    """Where the synthetic dataset lives: ``cfg.root``, else
    ``<output_dir>/../data/<synthetic_folder_name(...)>`` (one folder per set of parameters
    and generator version; the validation identities, :func:`validation_ids`, are generated on
    top of the training ones and so are part of the parameters)."""
    name = synthetic_folder_name(_synthetic_params(cfg))
    return Path(cfg.root or Path(cfg.output_dir).parent / "data" / name)


def build_reader(cfg: TrainConfig) -> Any:
    """The dataset reader of ``cfg``; the synthetic dataset is generated once and cached."""
    from xreid.data import HITSZVCM, BUPTCampus

    # min_len None: each reader's own default (HITSZ-VCM 12 as every published loader,
    # BUPTCampus 1 as the dataset authors' loader)
    lengths = {} if cfg.min_len is None else {"min_len": cfg.min_len}
    if cfg.dataset == "hitsz-vcm":
        return HITSZVCM(cfg.root, **lengths)
    if cfg.dataset == "bupt-campus":
        return BUPTCampus(cfg.root, **lengths)
    if cfg.dataset == "folder":
        from xreid.data.folder import FolderVVI

        return FolderVVI(cfg.root)
    root = synthetic_root(cfg)
    prepare_synthetic_root(root, _synthetic_params(cfg))  # other parameters: refused
    return HITSZVCM(root, **lengths)


def build_model(cfg: TrainConfig, num_identities: int, num_cameras: int) -> nn.Module:
    """Backbone (``cfg.backbone``, local ``cfg.weights``) + X-ReID heads (``cfg.model_preset``)."""
    from xreid.backbones import build_backbone
    from xreid.models.xreid import XReID

    if cfg.backbone != "tiny" and cfg.weights is None and not cfg.random_init:
        raise ValueError(
            f"weights: the {cfg.backbone} backbone needs CLIP's pre-trained weights, got none. "
            "Download OpenAI's ViT-B-16.pt (the CLIP release) or an open_clip ViT-B-16 "
            "checkpoint, optionally convert it once with `xreid-convert ViT-B-16.pt "
            "vitb16.safetensors --img-size 288 144`, and pass --weights PATH; "
            "--random-init trains from random weights (smoke tests only)"
        )
    backbone = build_backbone(
        cfg.backbone,
        img_size=tuple(cfg.img_size),
        weights=cfg.weights,
        num_cameras=num_cameras if cfg.use_cameras else 0,
        freeze_patch_embed=cfg.freeze_patch_embed,
        grad_checkpointing=cfg.grad_checkpointing,
        **cfg.backbone_overrides(),
    )
    return XReID.from_preset(backbone, num_identities, cfg.model_preset,
                             **cfg.model_overrides())


class Callbacks:
    """Hooks of :class:`Trainer` (all no-ops). Override what you need."""

    def on_message(self, trainer: Trainer, text: str) -> None: ...

    def on_epoch_start(self, trainer: Trainer, epoch: int, num_iterations: int) -> None: ...

    def on_iteration(self, trainer: Trainer, epoch: int, iteration: int,
                     logs: dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None: ...

    def on_evaluation_start(self, trainer: Trainer, tag: str) -> Any:
        """May return a progress callable(done, total) passed to feature extraction."""
        return None

    def on_evaluation(self, trainer: Trainer, tag: str, result: Any) -> None: ...


class Trainer:
    """Trains :class:`xreid.XReID` as ``cfg`` says; see ``examples/train_vvi.py``.

    Distributed: when launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the
    trainer joins the process group (nccl on CUDA, gloo on CPU), wraps the model in DDP
    (``find_unused_parameters=False``; the CPC memory is kept out of buffer broadcasting and
    synchronised by its own all-gather), and shards identities with the sampler. Rank 0
    evaluates and writes files.
    """

    def __init__(self, cfg: TrainConfig, callbacks: Callbacks | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.callbacks = callbacks or Callbacks()
        self.output_dir = Path(cfg.output_dir)
        self._init_distributed()
        self.epoch = 0  # completed epochs
        self.iteration = 0
        self.history: list[dict[str, Any]] = []
        self.results: dict[str, Any] = {}
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.output_dir)
        self._barrier()
        self.reader, self.val_reader = build_readers(cfg) if self.is_main else (None, None)
        self._barrier()
        if self.reader is None:
            self.reader, self.val_reader = build_readers(cfg)
        self.model = build_model(cfg, self.reader.num_train_identities,
                                 self.reader.num_cameras).to(self.device)
        self.core = self.model
        if cfg.compile:
            for module in self.core.compile_targets():
                module.compile()
        from xreid.losses.xreid_loss import XReIDLoss

        # the preset, the explicit weights and the smoothing, all checked at construction
        self.loss_fn = XReIDLoss.from_preset(
            cfg.loss_preset, num_frames=cfg.num_frames, label_smoothing=cfg.label_smoothing,
            **cfg.loss_overrides(),
        )
        self.prompt_stages = None  # textual prompts (Table 4): xreid.engine.prompt_stages
        if cfg.text_prompts:
            from xreid.engine.prompt_stages import PromptStages

            self.prompt_stages = PromptStages(self, log=self._log)
            self.loss_fn = self.prompt_stages.wrap_loss(self.loss_fn)
        self.optimizer = build_optimizer(
            self.core, lr=cfg.lr, weight_decay=cfg.weight_decay,
            bias_lr_factor=cfg.bias_lr_factor, classifier_lr_factor=cfg.classifier_lr_factor,
            head_lr_factor=cfg.head_lr_factor,
        )
        self.scheduler = build_scheduler(
            self.optimizer, warmup_epochs=cfg.warmup_epochs, warmup_factor=cfg.warmup_factor,
            milestones=cfg.milestones, gamma=cfg.gamma,
        )
        self.scaler = (torch.amp.GradScaler(self.device.type)
                       if cfg.amp == "fp16" else None)
        self._build_train_data()
        self.memory_initialized = False
        if self.distributed:
            from xreid.memory import ignore_memory_buffers_in_ddp

            ignore_memory_buffers_in_ddp(self.core)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(
                self.core, device_ids=ids, find_unused_parameters=False
            )

    # ------------------------------------------------------------------ distributed setup
    def _init_distributed(self) -> None:
        import torch.distributed as dist

        world = int(os.environ.get("WORLD_SIZE", "1"))
        self.distributed = world > 1 or (dist.is_available() and dist.is_initialized())
        self.device = setup_device(self.cfg.device, distributed=self.distributed)
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.is_main = self.rank == 0

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's BatchNorm running statistics (DDP only broadcasts them at
        the start of a forward, so after the last step of an epoch they differ). The CPC
        memory is synchronised by its own all-gather and is left alone."""
        if not self.distributed:
            return
        import torch.distributed as dist

        memory = self.core.memory
        memory_buffers = {id(b) for b in memory.buffers()} if memory is not None else set()
        for buf in self.core.buffers():
            if id(buf) not in memory_buffers:
                dist.broadcast(buf, src=0)

    def _barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    # ------------------------------------------------------------------------- data
    def _build_train_data(self) -> None:
        from xreid.data import ClipTransform, CrossModalIdentitySampler, VideoClipDataset

        cfg = self.cfg
        transform = ClipTransform(
            tuple(cfg.img_size), train=True, normalization=cfg.normalization,
            flip_p=cfg.flip_p, pad=cfg.pad, erasing_p=cfg.erasing_p,
        )
        self.train_dataset = VideoClipDataset(
            self.reader.train, num_frames=cfg.num_frames, sampling="restricted_random",
            transform=transform, seed=cfg.seed,
        )
        self.sampler = CrossModalIdentitySampler(
            self.reader.train, ids_per_batch=cfg.ids_per_batch,
            clips_per_modality=cfg.clips_per_modality, seed=cfg.seed,
            num_replicas=self.world_size, rank=self.rank,
        )
        if len(self.sampler) == 0:
            raise ValueError(
                "ids_per_batch: the training set has too few identities for one batch per "
                f"rank (ids_per_batch={cfg.ids_per_batch}, world size {self.world_size}, "
                f"{self.reader.num_train_identities} identities)"
            )

    def iterations_per_epoch(self) -> int:
        return self.cfg.iters_per_epoch or len(self.sampler)

    def epoch_batches(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        """The training batches of the 0-based ``epoch``, as ``fit`` draws them: deterministic
        per (seed, epoch), cycling the identity sampler if an epoch needs more iterations."""
        cfg = self.cfg
        needed = self.iterations_per_epoch()
        produced, cycle = 0, 0
        while produced < needed:
            sub_epoch = epoch * 1000 + cycle
            self.sampler.set_epoch(sub_epoch)
            self.train_dataset.set_epoch(sub_epoch)
            loader = torch.utils.data.DataLoader(
                self.train_dataset, batch_sampler=self.sampler, num_workers=cfg.num_workers,
                pin_memory=self.device.type == "cuda",
            )
            for batch in loader:
                yield batch
                produced += 1
                if produced >= needed:
                    return
            cycle += 1

    # ------------------------------------------------------------------------- memory
    def initialize_memory(self) -> None:
        """(Re)build the CPC prototypes from the current model (eval mode, no grad).

        A no-op for a model without memory (``use_memory=False``)."""
        if self.core.memory is None:
            return
        from xreid.data import ClipTransform, VideoClipDataset
        from xreid.memory.build import extract_memory_features

        cfg = self.cfg
        dataset = VideoClipDataset(
            self.reader.train, num_frames=cfg.num_frames, sampling="restricted_random",
            transform=ClipTransform(tuple(cfg.img_size), train=False,
                                    normalization=cfg.normalization),
            seed=cfg.seed,
        )
        dataset.set_epoch(self.epoch)
        # each rank extracts a disjoint shard; ``initialize`` all-reduces the per-identity sums
        shard = torch.utils.data.Subset(dataset, range(self.rank, len(dataset), self.world_size))
        loader = torch.utils.data.DataLoader(
            shard, batch_size=cfg.memory_batch_size, shuffle=False, num_workers=cfg.num_workers,
        )
        autocast_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
        core = self.core
        use_cameras = cfg.use_cameras

        def clip_features(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
            # the same clip feature as training's (camera embedding included when used)
            return model.clip_features(batch["video"], batch["camera"] if use_cameras else None)

        raw, labels, modality = extract_memory_features(core, loader, feature_fn=clip_features,
                                                 device=self.device,
                                                 autocast_dtype=autocast_dtype)
        # the training batches' memory feature is BN with batch statistics: normalise every
        # clip with the statistics of the whole training set (every rank's shard)
        with torch.no_grad():
            core.memory.initialize(core.memory_norm(raw, *self._feature_statistics(raw)),
                                   labels, modality)
        self.memory_initialized = True

    def _feature_statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and (biased, as BatchNorm) variance per column of ``x`` (N, F) over every
        rank's rows."""
        x = x.double()
        stats = torch.cat([x.sum(0), (x * x).sum(0), x.new_tensor([x.shape[0]])])
        if self.world_size > 1:
            torch.distributed.all_reduce(stats)
        f = x.shape[1]
        n = stats[-1]
        mean = stats[:f] / n
        var = stats[f:2 * f] / n - mean * mean
        return mean.float(), var.clamp_min(0).float()

    # ----------------------------------------------------------------------- evaluation
    def evaluate(self, tag: str = "eval", model: nn.Module | None = None) -> Any:
        """I2V and V2I of ``model`` (default: the X-ReID model) on the reader's test split,
        or on the validation split when ``tag`` starts with ``"val_"`` (rank 0; other ranks
        return None)."""
        from xreid.metrics import evaluate_model

        result = None
        reader = self.val_reader if tag.startswith("val_") else self.reader
        if reader is None:
            raise ValueError(f"tag: {tag!r} needs a validation split, got val_ids=0")
        if self.is_main:
            cfg = self.cfg
            progress = self.callbacks.on_evaluation_start(self, tag)
            autocast_dtype = {"none": None, "bf16": torch.bfloat16,
                              "fp16": torch.float16}[cfg.amp]
            result = evaluate_model(
                model or self.core, reader, num_frames=cfg.num_frames,
                sampling=cfg.eval_sampling,
                img_size=tuple(cfg.img_size), normalization=cfg.normalization,
                batch_size=cfg.eval_batch_size, num_workers=cfg.num_workers,
                device=self.device, autocast_dtype=autocast_dtype, rerank=cfg.rerank,
                use_cameras=cfg.use_cameras, progress=progress,
            )
            self.results[tag] = result
            self.callbacks.on_evaluation(self, tag, result)
            self._log({"event": "evaluation", "tag": tag, "epoch": self.epoch,
                       **{"metrics": result.to_dict()}})
        self._barrier()
        return result

    # ----------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": "xreid-train-checkpoint-v1",
            "model": self.core.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch,
            "iteration": self.iteration,
            "memory_initialized": self.memory_initialized,
            "history": self.history,
            "results": {**getattr(self, "_restored_results", {}),
                        **{k: v.to_dict() for k, v in self.results.items()}},
            "config": self.cfg.to_dict(),
            "num_identities": int(self.reader.num_train_identities),
            "num_cameras": int(self.reader.num_cameras),
            "rng": capture_rng_state(),
            "world_size": self.world_size,
            **({"prompts": self.prompt_stages.state_dict()} if self.prompt_stages else {}),
        }

    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        """Write the full training state atomically (rank 0); returns the path."""
        path = Path(path) if path is not None else self.output_dir / "checkpoint.pt"
        if self.is_main:
            atomic_save(self.state_dict(), path)
        self._barrier()
        return path

    def load_checkpoint(self, path: str | Path, *, resume: bool = True) -> None:
        """Load model (and with ``resume`` the optimiser, schedule, epoch and RNG) state."""
        state = load_checkpoint(path, map_location=self.device)
        if resume and isinstance(state.get("config"), dict):
            conflicts = resume_conflicts(state["config"], self.cfg.to_dict())
            if conflicts:
                raise ValueError(
                    f"resume: {path} was trained with different options; "
                    + ", ".join(f"{k}={state['config'][k]!r} (now {v!r})"
                                for k, v in conflicts.items())
                    + " — drop these options (the checkpoint's values are used) or start a "
                    "new run"
                )
        model_state = self.core.state_dict()
        mismatched = [
            f"{k} {tuple(v.shape)} vs {tuple(model_state[k].shape)}"
            for k, v in state["model"].items()
            if isinstance(v, torch.Tensor) and k in model_state
            and tuple(v.shape) != tuple(model_state[k].shape)
        ]
        if mismatched:
            raise ValueError(
                f"checkpoint: {path} does not match this model (another architecture or size?); "
                f"shape of checkpoint vs model: {mismatched[:5]} (check --backbone/--preset/"
                "--img-size and the backbone size options)"
            )
        missing, unexpected = self.core.load_state_dict(state["model"], strict=False)
        if missing or unexpected:
            raise ValueError(
                f"checkpoint: {path} does not match this model; missing keys {missing[:10]}, "
                f"unexpected keys {unexpected[:10]} (check --backbone/--preset/--img-size)"
            )
        self.memory_initialized = bool(state.get("memory_initialized", True))
        if self.prompt_stages is not None:
            self.prompt_stages.load_state_dict(state.get("prompts"))
        if not resume:
            return
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.iteration = int(state["iteration"])
        self.history = list(state.get("history", []))
        # evaluations of the interrupted run (e.g. "before"), as plain dicts
        self._restored_results = dict(state.get("results", {}))
        restore_rng_state(state["rng"])
        if self.is_main:
            truncate_log(self.output_dir / "log.jsonl", epoch=self.epoch,
                         iteration=self.iteration)

    # --------------------------------------------------------------------------- logging
    def _log(self, record: dict[str, Any]) -> None:
        if not self.is_main:
            return
        self.history.append(record) if record.get("event") == "epoch" else None
        with open(self.output_dir / "log.jsonl", "a") as fh:
            fh.write(json.dumps({"time": time.time(), **record}) + "\n")

    def _message(self, text: str) -> None:
        if self.is_main:
            self.callbacks.on_message(self, text)

    # ------------------------------------------------------------------------------ fit
    def fit(self) -> dict[str, Any]:
        """Train for ``cfg.epochs`` (from the current epoch on) and return the metrics.

        ``{"before": ..., "after": ..., "config": ...}`` with ``before`` present when
        ``cfg.eval_before`` and training starts from epoch 0.
        """
        cfg = self.cfg
        if self.is_main:
            cfg.save(self.output_dir / "config.json")
        restored = getattr(self, "_restored_results", {})
        if cfg.eval_before and self.epoch == 0 and "before" not in self.results:
            self.evaluate("before")
            if self.val_reader is not None:
                self.evaluate("val_before")
            if cfg.weights is not None:  # the pre-trained encoder's own features
                from xreid.backbones.features import EncoderEmbedding

                encoder = EncoderEmbedding(self.core.backbone)
                for prefix in ("", "val_") if self.val_reader is not None else ("",):
                    self.evaluate(prefix + "encoder", encoder)
        if (cfg.pixel_baseline and "pixels" not in self.results
                and "pixels" not in restored):
            self.evaluate_pixel_baseline()
        if (cfg.pixel_baseline and self.val_reader is not None
                and "val_pixels" not in self.results and "val_pixels" not in restored):
            self.evaluate_pixel_baseline("val_pixels")
        if self.prompt_stages is not None:  # stage 1 (once), then frozen prompt features
            self.prompt_stages.prepare_stage2()
        while self.epoch < cfg.epochs:
            epoch = self.epoch
            needs_memory = self.core.memory is not None
            if needs_memory and (cfg.memory_init == "every_epoch"
                                 or not self.memory_initialized):
                self._message(f"initialising the CPC memory (epoch {epoch + 1})")
                self.initialize_memory()
            n_iter = self.iterations_per_epoch()
            if self.is_main:
                self.callbacks.on_epoch_start(self, epoch, n_iter)
            sums: dict[str, float] = {}
            for i, batch in enumerate(self.epoch_batches(epoch)):
                try:
                    logs = train_step(
                        self.model, batch, self.loss_fn, self.optimizer, device=self.device,
                        amp=cfg.amp, scaler=self.scaler, max_grad_norm=cfg.max_grad_norm,
                        use_cameras=cfg.use_cameras,
                    )
                except NonFiniteLossError as exc:
                    raise NonFiniteLossError(
                        f"non-finite loss at epoch {epoch + 1}, iteration {i + 1} "
                        f"(global iteration {self.iteration + 1}): {exc.terms}; nothing was "
                        "updated in this step and the last checkpoint is intact (lower --lr, "
                        "set --max-grad-norm or use --amp bf16 instead of fp16)",
                        exc.terms,
                    ) from None
                self.iteration += 1
                logs["lr"] = self.optimizer.param_groups[0]["lr"]
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                if self.is_main:
                    if self.iteration % cfg.log_every == 0:
                        self._log({"event": "iteration", "epoch": epoch + 1,
                                   "iteration": self.iteration, **logs})
                    self.callbacks.on_iteration(self, epoch, i, logs)
            self.scheduler.step()
            self._sync_buffers()
            self.epoch += 1
            means = {k: v / max(1, n_iter) for k, v in sums.items()}
            self._log({"event": "epoch", "epoch": self.epoch, **means})
            if self.is_main:
                self.callbacks.on_epoch_end(self, epoch, means)
            if self.epoch % cfg.save_every == 0 or self.epoch == cfg.epochs:
                self.save_checkpoint()
        if self.val_reader is not None:
            self.evaluate("val_after")
        self.evaluate("after")
        metrics = self.metrics()
        if self.is_main:
            (self.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        return metrics

    def evaluate_pixel_baseline(self, tag: str = "pixels") -> Any:
        """The raw-pixel ranking of the test split (:func:`xreid.metrics.pixel_baseline`),
        stored as the result ``tag``; of the validation split for ``tag="val_pixels"``
        (rank 0; other ranks return None)."""
        from xreid.metrics import pixel_baseline

        if not self.is_main:
            return None
        result = pixel_baseline(self.val_reader if tag.startswith("val_") else self.reader)
        self.results[tag] = result
        self.callbacks.on_evaluation(self, tag, result)
        return result

    def metrics(self) -> dict[str, Any]:
        """``{"before", "after", "baselines", "validation", "config"}`` from the evaluations
        run (``before``/``after``/``baselines`` on the test split).

        ``baselines`` holds what training must beat: ``"pixels"`` (raw-pixel ranking) and
        either ``"untrained"`` (no ``cfg.weights``: the model before training, the same
        numbers as ``"before"``) or ``"pretrained"`` (``cfg.weights`` set: the encoder's own
        features before fine-tuning, :class:`xreid.backbones.features.EncoderEmbedding`, the
        analogue of zero-shot CLIP; ``"before"`` then still holds the whole model with its
        freshly initialised heads). ``validation`` has the same ``before``/``after``/
        ``baselines`` on the held-out validation identities (``cfg.val_ids``), when any.
        """
        out: dict[str, Any] = {}
        restored = getattr(self, "_restored_results", {})

        def result(tag: str) -> dict[str, Any] | None:
            if tag in self.results:
                return self.results[tag].to_dict()
            return restored.get(tag)

        start = (("untrained", "before") if self.cfg.weights is None
                 else ("pretrained", "encoder"))
        for prefix in ("", "val_"):
            part: dict[str, Any] = {}
            for tag in ("before", "after", "eval"):
                if (r := result(prefix + tag)) is not None:
                    part[tag] = r
            baselines = {name: r for name, tag in (("pixels", "pixels"), start)
                         if (r := result(prefix + tag)) is not None}
            if baselines:
                part["baselines"] = baselines
            if prefix and part:
                out["validation"] = part
            elif not prefix:
                out.update(part)
        out["config"] = self.cfg.to_dict()
        return out

    def close(self) -> None:
        """Leave the process group if this trainer created it."""
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()

"""Assembling the reference X-ReID run from a :class:`~xreid.engine.TrainConfig`.

:func:`build_trainer` does, in this order (the order fixes the random streams, so a seed
reproduces a run): join the process group (``torchrun``), set threads, seed, deterministic
algorithms; prepare the output folder; build (and cache) the dataset readers (training and the
held-out validation split, :func:`xreid.data.build.build_readers`); build the model
(:func:`build_model`), the loss (Eq. 10, :meth:`LossConfig.build`), the prompt stages, the
optimiser and the LR schedule, the training batches; wrap the model in DDP; and hand these
parts with the hooks (memory initialisation, prompt stages, loggers, the caller's hooks, the
run folder) to :class:`~xreid.engine.Trainer`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xreid.data.batches import TrainBatches
from xreid.data.build import build_readers
from xreid.data.preprocessing import evaluation_preprocessing
from xreid.engine.checkpoint import remove_stale_temporaries
from xreid.engine.config import TrainConfig, resume_conflicts
from xreid.engine.device import setup_device
from xreid.engine.evaluation import ReaderEvaluator
from xreid.engine.hooks import CheckpointHook, Hook
from xreid.engine.loggers import build_loggers
from xreid.engine.memory_init import MemoryInitHook
from xreid.engine.objective import XReIDObjective
from xreid.engine.optim import build_optimizer, build_scheduler
from xreid.engine.trainer import Trainer, seed_everything
from xreid.models.spec import build_from_spec, model_spec

__all__ = ["AUTOCAST_DTYPES", "build_model", "build_trainer", "checkpoint_metadata",
           "evaluation_parts", "setup_distributed"]

AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""``run.amp`` → the autocast dtype of feature extraction."""


def build_model(cfg: TrainConfig, num_identities: int, num_cameras: int) -> nn.Module:
    """Backbone (``cfg.model.backbone``, local ``cfg.model.weights``) + X-ReID heads
    (the head options of ``cfg.model``)."""
    model = cfg.model
    if model.backbone != "tiny" and model.weights is None and not model.random_init:
        raise ValueError(
            f"model.weights: the {model.backbone} backbone needs CLIP's pre-trained weights, "
            "got none. Download OpenAI's ViT-B-16.pt (the CLIP release) or an open_clip "
            "ViT-B-16 checkpoint, optionally convert it once with `xreid-convert ViT-B-16.pt "
            "vitb16.safetensors --img-size 288 144`, and pass --model.weights PATH; "
            "--model.random_init true trains from random weights (smoke tests only)"
        )
    spec = model_spec(model, img_size=cfg.data.img_size, num_identities=num_identities,
                      num_cameras=num_cameras, use_cameras=cfg.data.use_cameras)
    return build_from_spec(spec, weights=model.weights)


def checkpoint_metadata(cfg: TrainConfig, num_identities: int,
                        num_cameras: int) -> dict[str, Any]:
    """What every training checkpoint stores besides the training state: the dataset sizes,
    the model spec and the evaluation preprocessing (what ``load_model`` rebuilds from)."""
    spec = model_spec(cfg.model, img_size=cfg.data.img_size, num_identities=num_identities,
                      num_cameras=num_cameras, use_cameras=cfg.data.use_cameras)
    return {"num_identities": int(num_identities), "num_cameras": int(num_cameras),
            "model_spec": spec, "preprocessing": evaluation_preprocessing(cfg.data).to_dict()}


def setup_distributed(device_spec: str) -> tuple[torch.device, int, int, bool]:
    """``(device, rank, world_size, distributed)``; under ``torchrun`` (``WORLD_SIZE`` > 1)
    joins the process group (nccl on CUDA, gloo on CPU)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    distributed = world > 1 or (dist.is_available() and dist.is_initialized())
    device = setup_device(device_spec, distributed=distributed)
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if not distributed:
        return device, 0, 1, False
    return device, dist.get_rank(), dist.get_world_size(), True


def build_trainer(cfg: TrainConfig, hooks: Sequence[Hook] = ()) -> Trainer:
    """The reference X-ReID run of ``cfg`` as a :class:`Trainer` (see the module docstring);
    ``hooks`` (e.g. a console) run after the built-in ones and before the run folder's."""
    cfg.validate()
    device, rank, world_size, distributed = setup_distributed(cfg.run.device)
    out = Path(cfg.run.output_dir)
    reader, val_reader = _prepare_run(cfg, out, is_main=rank == 0, distributed=distributed)
    core = build_model(cfg, reader.num_train_identities, reader.num_cameras).to(device)
    if cfg.run.compile:
        for module in core.compile_targets():
            module.compile()
    loss_fn: nn.Module = cfg.loss.build(cfg.data.num_frames)
    built: list[Hook] = []
    if core.memory is not None:
        built.append(_memory_hook(cfg, core, reader, device, rank, world_size))
    if cfg.prompts.enabled:  # textual prompts (Table 4): xreid.engine.prompt_stages
        from xreid.engine.prompt_stages import PromptStages, PromptStagesHook

        stages = PromptStages(cfg, core, reader, device, distributed=distributed)
        loss_fn = stages.wrap_loss(loss_fn)
        built.append(PromptStagesHook(stages))
    optim = cfg.optim
    optimizer = build_optimizer(
        core, lr=optim.lr, weight_decay=optim.weight_decay, bias_lr_factor=optim.bias_lr_factor,
        classifier_lr_factor=optim.classifier_lr_factor, head_lr_factor=optim.head_lr_factor)
    scheduler = build_scheduler(optimizer, warmup_epochs=optim.warmup_epochs,
                                warmup_factor=optim.warmup_factor, milestones=optim.milestones,
                                gamma=optim.gamma)
    batches = TrainBatches(reader.train, cfg.data, seed=cfg.run.seed,
                           iterations=optim.iters_per_epoch, rank=rank, world_size=world_size,
                           pin_memory=device.type == "cuda")
    model: nn.Module = core
    if distributed:
        from xreid.memory import ignore_memory_buffers_in_ddp

        ignore_memory_buffers_in_ddp(core)
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(core, device_ids=ids,
                                                    find_unused_parameters=False)
    def check_resume(state: dict[str, Any]) -> None:
        saved = state.get("config")
        conflicts = resume_conflicts(saved, cfg) if isinstance(saved, dict) else {}
        if conflicts:
            raise ValueError(
                "resume: the checkpoint was trained with different options; "
                + ", ".join(f"{k}={old!r} (now {new!r})" for k, (old, new) in conflicts.items())
                + " — drop these options (the checkpoint's values are used) or start a new run")

    all_hooks = [*built, *build_loggers(cfg.run.log, out), *hooks,
                 CheckpointHook(out, save_every=cfg.run.save_every)]
    return Trainer(
        model, XReIDObjective(loss_fn, device=device, use_cameras=cfg.data.use_cameras),
        optimizer, scheduler, batches, hooks=all_hooks, epochs=optim.epochs, device=device,
        amp=cfg.run.amp, max_grad_norm=optim.max_grad_norm, eval_before=cfg.run.eval_before,
        **evaluation_parts(cfg, core, reader, val_reader, device),
        log_every=cfg.run.log_every, config=cfg,
        metadata=checkpoint_metadata(cfg, reader.num_train_identities, reader.num_cameras),
        resume_check=check_resume, rank=rank, world_size=world_size, distributed=distributed)


def evaluation_parts(cfg: TrainConfig, core: nn.Module, reader: Any, val_reader: Any | None,
                     device: torch.device | str = "cpu") -> dict[str, Any]:
    """The :class:`Trainer`'s evaluation arguments of ``cfg``: ``evaluator`` (the test split),
    ``val_evaluator`` (the held-out validation split, ``val_reader``; None without one),
    ``baselines`` (``pixels`` / ``val_pixels``: the raw-pixel ranking, ``run.pixel_baseline``),
    ``initial_baselines`` (``pretrained`` / ``val_pretrained``: the encoder's own features
    before fine-tuning, :class:`~xreid.backbones.features.EncoderEmbedding`, when
    ``model.weights`` is set and ``run.eval_before``) and ``before_is_baseline`` (the
    ``untrained`` row, without weights)."""
    from xreid.backbones.features import EncoderEmbedding

    data, pre = cfg.data, evaluation_preprocessing(cfg.data)
    evaluators = [None if r is None else ReaderEvaluator(
        r, num_frames=pre.num_frames, sampling=pre.sampling, img_size=pre.img_size,
        normalization=pre.normalization, batch_size=data.eval_batch_size,
        num_workers=data.num_workers, device=device,
        autocast_dtype=AUTOCAST_DTYPES[cfg.run.amp], rerank=cfg.run.rerank,
        use_cameras=data.use_cameras) for r in (reader, val_reader)]
    pairs = [(p, e) for p, e in zip(("", "val_"), evaluators, strict=True) if e is not None]
    baselines = {p + "pixels": e.pixel_baseline for p, e in pairs} if cfg.run.pixel_baseline else {}
    initial: dict[str, Any] = {}
    if cfg.model.weights is not None and cfg.run.eval_before:
        encoder = EncoderEmbedding(core.backbone)
        initial = {p + "pretrained": (lambda e=e: e(encoder)) for p, e in pairs}
    return {"evaluator": evaluators[0], "val_evaluator": evaluators[1], "baselines": baselines,
            "initial_baselines": initial, "before_is_baseline": cfg.model.weights is None}


def _prepare_run(cfg: TrainConfig, out: Path, *, is_main: bool,
                 distributed: bool) -> tuple[Any, Any | None]:
    """Threads, seed, deterministic algorithms, the output folder (rank 0), and the dataset
    readers, training and validation (rank 0 first: it may generate the synthetic data)."""
    def barrier() -> None:
        if distributed:
            torch.distributed.barrier()

    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    seed_everything(cfg.run.seed)
    if cfg.run.deterministic:
        torch.use_deterministic_algorithms(True)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)
    barrier()
    readers = build_readers(cfg.data, out) if is_main else None
    barrier()
    return readers if readers is not None else build_readers(cfg.data, out)


def _memory_hook(cfg: TrainConfig, core: nn.Module, reader: Any, device: torch.device,
                 rank: int, world_size: int) -> MemoryInitHook:
    return MemoryInitHook(
        core, reader.train, num_frames=cfg.data.num_frames, img_size=cfg.data.img_size,
        normalization=cfg.data.normalization, every_epoch=cfg.loss.memory_init == "every_epoch",
        seed=cfg.run.seed, batch_size=cfg.loss.memory_batch_size,
        num_workers=cfg.data.num_workers, device=device,
        autocast_dtype=AUTOCAST_DTYPES[cfg.run.amp], use_cameras=cfg.data.use_cameras,
        rank=rank, world_size=world_size)

"""Build (or rebuild) the CPC prototype memory from a model and a data loader.

"Memory Initialization" of the paper: traverse the training set with the encoder, average
each identity's sequence features per modality, L2-normalise. The paper does this once, from
the pre-trained CLIP encoder; the authors' code rebuilds the memory from the current model at
the start of every epoch. :func:`build_memory` serves both: call it once before training, or
at the start of every epoch with ``memory=`` the existing memory.

Unlike the authors' code (which extracts in whatever mode the model happens to be in, see
``docs/differences.md``), extraction always runs with every submodule in ``eval()``
and under ``torch.no_grad()``; each submodule's previous ``training`` flag is restored
afterwards, even on error.

Loader batches are dicts with at least ``"video"`` (B, T, 3, H, W) float, ``"label"`` (B,)
long and ``"modality"`` (B,) long (``"camera"`` is passed through to a custom
``feature_fn``). Features stay on ``device`` and are concatenated once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from xreid._torch_utils import eval_mode, model_device, unwrap_model
from xreid._validation import check_tensor
from xreid.memory.prototype_memory import CrossModalPrototypeMemory, HardSelection

__all__ = ["FeatureFn", "build_memory", "default_feature_fn", "extract_memory_features"]

FeatureFn = Callable[[nn.Module, Mapping[str, Any]], torch.Tensor]
"""``feature_fn(model, batch) -> (B, d)``; ``batch`` has its tensors moved to ``device``."""


def default_feature_fn(model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
    """``model.memory_features(batch["video"]) -> (B, d)`` (unwrapping DDP/DataParallel)."""
    net = unwrap_model(model)
    fn = getattr(net, "memory_features", None)
    if not callable(fn):
        raise ValueError(
            f"model: expected a `memory_features(video) -> (B, d)` method, got "
            f"{type(net).__name__} without one (pass feature_fn=...)"
        )
    return fn(batch["video"])


def extract_memory_features(
    model: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    *,
    feature_fn: FeatureFn | None = None,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training-set features for the prototype memory: ``model`` over ``loader`` in eval mode
    without gradient (every submodule's mode is restored afterwards).

    Not to be confused with :func:`xreid.metrics.extract_features`, which embeds query and
    gallery tracklets (``model.embed``, CPU output, camera ids) for evaluation; this one
    keeps labels and modality on ``device`` and takes any ``feature_fn``.

    Returns:
        features (M, d) float32, labels (M,) long, modality (M,) long, all on ``device``
        (default: the device of the model's first parameter), in loader order.

    Args:
        feature_fn: ``feature_fn(model, batch) -> (B, d)``; default
            ``model.memory_features(batch["video"])``.
        device: where batches are moved and features are kept.
        autocast_dtype: e.g. ``torch.bfloat16`` to extract under ``torch.autocast``.
    """
    fn = feature_fn or default_feature_fn
    dev = torch.device(device) if device is not None else model_device(model)
    feats: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    modality: list[torch.Tensor] = []
    with eval_mode(model), torch.no_grad():
        for step, batch in enumerate(loader):
            if not isinstance(batch, Mapping):
                raise ValueError(f"loader: expected batches that are dicts, got "
                                 f"{type(batch).__name__} at batch {step}")
            for key in ("video", "label", "modality"):
                if key not in batch:
                    raise ValueError(f"loader: expected batch key {key!r}, got keys "
                                     f"{sorted(batch)} at batch {step}")
            moved = {k: v.to(dev, non_blocking=True) if isinstance(v, torch.Tensor) else v
                     for k, v in batch.items()}
            if autocast_dtype is not None:
                with torch.autocast(device_type=dev.type, dtype=autocast_dtype):
                    f = fn(model, moved)
            else:
                f = fn(model, moved)
            b = moved["label"].shape[0]
            check_tensor(f, "feature_fn(model, batch)", ndim=2, dims={0: b}, layout="(B, d)")
            feats.append(f)
            labels.append(moved["label"])
            modality.append(moved["modality"])
    if not feats:
        raise ValueError("loader: expected at least one batch, got none")
    return (
        torch.cat(feats).float(),
        torch.cat(labels).long(),
        torch.cat(modality).long(),
    )


def build_memory(
    model: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    num_identities: int | None = None,
    *,
    memory: CrossModalPrototypeMemory | None = None,
    feature_fn: FeatureFn | None = None,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    momentum: float = 0.2,
    temperature: float = 0.05,
    hard_selection: HardSelection = "cross_modal",
    collaboration: bool = True,
) -> CrossModalPrototypeMemory:
    """Extract features with ``model`` over ``loader`` and initialise a CPC memory.

    With ``memory=None`` a new :class:`~xreid.CrossModalPrototypeMemory` of
    ``num_identities`` rows (required), the extracted feature size, and ``momentum``,
    ``temperature``, ``hard_selection``, ``collaboration`` is created on ``device``. With
    ``memory`` given it is re-initialised in place (the per-epoch rebuild of the authors'
    code) and returned; ``num_identities``, if given, must match, and the memory's device
    is the default ``device``.

    Under ``torch.distributed`` each rank may pass its own shard (e.g. a
    ``DistributedSampler`` loader): :meth:`~xreid.CrossModalPrototypeMemory.initialize`
    all-reduces the per-identity sums, so every rank gets the same memory (samples that the
    sampler repeats as padding are counted twice). Every rank must call it.

    Returns the initialised memory. See :func:`extract_memory_features` for the other arguments.
    """
    if memory is not None:
        if not isinstance(memory, CrossModalPrototypeMemory):
            raise ValueError(f"memory: expected a CrossModalPrototypeMemory, got "
                             f"{type(memory).__name__}")
        if num_identities is not None and num_identities != memory.num_identities:
            raise ValueError(f"num_identities: expected {memory.num_identities} to match "
                             f"memory, got {num_identities}")
        if device is None:
            device = memory.visible.device
    elif num_identities is None:
        raise ValueError("num_identities: expected the number of training identities when "
                         "no memory is given, got None")
    features, labels, modality = extract_memory_features(
        model, loader, feature_fn=feature_fn, device=device, autocast_dtype=autocast_dtype
    )
    if memory is None:
        assert num_identities is not None
        memory = CrossModalPrototypeMemory(
            num_identities, features.shape[1], momentum=momentum, temperature=temperature,
            hard_selection=hard_selection, collaboration=collaboration,
        ).to(features.device)
    memory.initialize(features, labels, modality)
    return memory

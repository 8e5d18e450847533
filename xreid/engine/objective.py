"""One optimisation step: a loss that calls the model, then backward and the optimiser.

The trainer's loss is a callable ``loss(model, batch)`` returning a :class:`StepLoss` (or a
scalar tensor, or a mapping of terms with ``"total"``). :func:`optimization_step` runs it under
autocast, refuses a NaN/inf term before anything is updated, steps the optimiser (with the
fp16 grad scaler and gradient clipping when given), then calls the result's ``after_step``.

:class:`XReIDObjective` is X-ReID's: the forward on a paired batch (``video`` (B, T, 3, H, W),
``label``, ``modality``, ``camera`` (B,)), Eq. 10 against the current prototypes, and as
``after_step`` the CPC memory update with the batch's detached memory features (Eqs. 1-2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from xreid._torch_utils import unwrap_model

__all__ = [
    "NonFiniteLossError",
    "StepLoss",
    "XReIDObjective",
    "autocast_context",
    "optimization_step",
    "train_step",
]


class NonFiniteLossError(FloatingPointError):
    """A NaN or inf loss term; ``terms`` holds every term's value (floats)."""

    def __init__(self, message: str, terms: dict[str, float]) -> None:
        super().__init__(message)
        self.terms = terms


@dataclass
class StepLoss:
    """A step's weighted ``total``, its unweighted ``terms``, and what to run after the
    optimiser step (e.g. a memory update)."""

    total: torch.Tensor
    terms: Mapping[str, torch.Tensor] = field(default_factory=dict)
    after_step: Callable[[], None] | None = None


def autocast_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` in bf16 or fp16 on ``device`` (``amp="none"``: no autocast)."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _as_step_loss(result: Any) -> StepLoss:
    if isinstance(result, StepLoss):
        return result
    if isinstance(result, torch.Tensor):
        return StepLoss(result)
    if isinstance(result, Mapping) and "total" in result:
        return StepLoss(result["total"], {k: v for k, v in result.items() if k != "total"})
    raise TypeError(f"loss: expected a StepLoss, a scalar tensor or a mapping with 'total', "
                    f"got {type(result).__name__}")


def optimization_step(
    model: nn.Module,
    loss: Callable[[nn.Module, Any], Any],
    batch: Any,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device | str = "cpu",
    amp: str = "none",
    scaler: torch.amp.GradScaler | None = None,
    max_grad_norm: float | None = None,
) -> dict[str, float]:
    """``loss(model, batch)`` in train mode, backward, optimiser step, ``after_step``.

    Returns every term and the total as floats (one host synchronisation).
    """
    device = torch.device(device)
    model.train()
    with autocast_context(device, amp):
        result = _as_step_loss(loss(model, batch))
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
    if result.after_step is not None:
        result.after_step()
    return dict(zip(terms, values.tolist(), strict=True))


class XReIDObjective(nn.Module):
    """X-ReID's step loss around ``loss_fn`` (:class:`xreid.XReIDLoss` or a wrapper with its
    call signature ``(output, labels, memory, modality)``)."""

    def __init__(self, loss_fn: nn.Module, *, device: torch.device | str = "cpu",
                 use_cameras: bool = True) -> None:
        super().__init__()
        self.loss_fn = loss_fn
        self.device = torch.device(device)
        self.use_cameras = use_cameras

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> StepLoss:
        missing = [k for k in ("video", "label", "modality", "camera") if k not in batch]
        if missing:
            raise ValueError(
                f"batch: expected the keys video, label, modality, camera (as VideoClipDataset "
                f"yields them), missing {missing}"
            )
        device = self.device
        video = batch["video"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        modality = batch["modality"].to(device, non_blocking=True)
        cameras = batch["camera"].to(device, non_blocking=True) if self.use_cameras else None
        core = unwrap_model(model)
        out = model(video, modality, cameras, labels)
        result = self.loss_fn(out, labels, core.memory, modality)
        memory = core.memory  # a model built with use_memory=False has none

        def update_memory() -> None:
            memory.update(out.memory_feature.detach().float(), labels, modality)

        return StepLoss(result.total, result.terms,
                        update_memory if memory is not None else None)


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
    objective = XReIDObjective(loss_fn, device=device, use_cameras=use_cameras)
    return optimization_step(model, objective, batch, optimizer, device=device, amp=amp,
                             scaler=scaler, max_grad_norm=max_grad_norm)

"""Small torch helpers shared across the subpackages (one home for each).

* :func:`autocast_enabled`: whether ``torch.autocast`` is active for a device type;
* :func:`is_compiling`: whether ``torch.compile`` is tracing the current code;
* :func:`unwrap_model`: the user's module inside ``DistributedDataParallel`` / ``DataParallel``;
* :func:`model_device`: the device of a module's first parameter (or buffer; CPU if none);
* :func:`eval_mode`: a context that puts every submodule in eval mode and then restores each
  submodule's own ``training`` flag.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["autocast_enabled", "eval_mode", "is_compiling", "model_device", "unwrap_model"]


def autocast_enabled(device_type: str) -> bool:
    """True while ``torch.autocast(device_type)`` is active (any device type torch knows)."""
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # pragma: no cover - torch < 2.4 has no device argument
        if device_type == "cpu":
            return bool(torch.is_autocast_cpu_enabled())
        return bool(torch.is_autocast_enabled())


def is_compiling() -> bool:
    """True while ``torch.compile`` traces (host synchronising checks are skipped then)."""
    check = getattr(torch.compiler, "is_compiling", None)
    return bool(check is not None and check())


def unwrap_model(model: nn.Module) -> nn.Module:
    """``model.module`` for ``DistributedDataParallel`` / ``DataParallel``, else ``model``."""
    if isinstance(model, (nn.parallel.DataParallel, nn.parallel.DistributedDataParallel)):
        return model.module
    return model


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter, else of its first buffer, else CPU."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule of ``model`` in eval mode; restore each one's own mode afterwards
    (also when the body raises)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training

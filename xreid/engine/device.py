"""Device selection for the training loop: ``auto | cpu | cuda | cuda:N`` -> an indexed device.

``torch.cuda.set_device`` rejects a CUDA device without an index, so every CUDA device is
resolved to ``cuda:<index>`` first: ``cuda`` becomes ``cuda:<LOCAL_RANK>`` under a distributed
launcher and ``cuda:<current device>`` otherwise.
"""

from __future__ import annotations

import os
import re

import torch

__all__ = ["DEVICE_PATTERN", "check_device_spec", "resolve_device", "setup_device"]

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def check_device_spec(spec: object) -> str:
    """Syntax check of a device option (no CUDA query); returns it."""
    if not isinstance(spec, str) or not DEVICE_PATTERN.match(spec):
        raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {spec!r}")
    return spec


def resolve_device(spec: str, *, distributed: bool = False,
                   local_rank: int | None = None) -> torch.device:
    """``spec`` -> ``torch.device('cpu')`` or ``torch.device('cuda', index)``.

    ``auto`` is CUDA when available. ``cuda`` is ``cuda:<local_rank>`` when ``distributed``
    (``local_rank`` defaults to ``$LOCAL_RANK``), else the current CUDA device. Raises
    ``ValueError`` for an unknown spec, for CUDA without a CUDA device, or an index out of range.
    """
    spec = check_device_spec(spec)
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device: {spec!r} asks for CUDA, but no CUDA device is available "
                         "(use --device cpu or auto)")
    count = torch.cuda.device_count()
    if spec.startswith("cuda:"):
        index = int(spec.split(":", 1)[1])
    elif distributed:
        index = int(os.environ.get("LOCAL_RANK", "0")) if local_rank is None else local_rank
    else:
        index = torch.cuda.current_device()
    if not 0 <= index < count:
        raise ValueError(f"device: cuda:{index} does not exist ({count} CUDA device(s) "
                         f"visible), from {spec!r}")
    return torch.device("cuda", index)


def setup_device(spec: str, *, distributed: bool = False,
                 local_rank: int | None = None) -> torch.device:
    """:func:`resolve_device`, then make a CUDA device the current one."""
    device = resolve_device(spec, distributed=distributed, local_rank=local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device.index)
    return device

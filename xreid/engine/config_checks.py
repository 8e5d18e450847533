"""Field-by-field checks of :class:`xreid.engine.TrainConfig` (called by ``validate``).

Two layers: every field is checked against its type annotation (``int`` is not ``bool``,
``float`` must be finite, ``X | None``, tuples of ints), then against its range, so a value
that would silently train backwards (a negative ``max_grad_norm`` flips the gradient, a
``gamma`` above 1 raises the LR at each milestone) is refused with a message naming the option.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import types
import typing
from typing import Any

from xreid.engine.device import check_device_spec

__all__ = ["check_config", "check_field_types"]


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return False
        if Ellipsis in args:
            return all(_type_ok(v, args[0]) for v in value)
        return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args,
                                                                               strict=True))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in args
    return True  # an annotation this checker does not know: leave it to the range checks


def check_field_types(cfg: Any) -> None:
    """Raise ``ValueError`` for the first field whose value does not match its annotation."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        hint = hints.get(f.name)
        if hint is not None and not _type_ok(value, hint):
            shown = str(hint).replace("typing.", "")
            raise ValueError(f"{f.name}: expected {shown}" + (" (finite)" if "float" in shown
                             else "") + f", got {value!r} ({type(value).__name__})")


def _range(name: str, value: Any, lo: float | None = None, hi: float | None = None, *,
           lo_open: bool = False, hi_open: bool = False, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    bad = (lo is not None and (value <= lo if lo_open else value < lo)) or (
        hi is not None and (value >= hi if hi_open else value > hi))
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        span = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
        none = " or None" if allow_none else ""
        raise ValueError(f"{name}: expected a value in {span}{none}, got {value!r}")


def check_config(cfg: Any) -> None:
    """Types of every field, then the ranges not covered by ``TrainConfig.validate``."""
    check_field_types(cfg)
    check_device_spec(cfg.device)
    for name in ("flip_p", "erasing_p"):
        _range(name, getattr(cfg, name), 0.0, 1.0)
    _range("label_smoothing", cfg.label_smoothing, 0.0, 1.0, hi_open=True)
    for name in ("synthetic_seed", "seed", "pad", "num_workers", "warmup_epochs"):
        _range(name, getattr(cfg, name), 0)
    _range("min_len", cfg.min_len, 1, allow_none=True)  # None: the dataset's rule
    _range("val_ids", cfg.val_ids, 0, allow_none=True)  # None: the dataset's default
    for name in ("synthetic_train_ids", "synthetic_test_ids", "patch_size", "embed_dim",
                 "depth", "num_heads", "sii_depth"):
        _range(name, getattr(cfg, name), 1, allow_none=True)
    _range("lii_stride", cfg.lii_stride, 0, allow_none=True)
    _range("threads", cfg.threads, 1, allow_none=True)  # None: torch's default thread count
    _range("warmup_factor", cfg.warmup_factor, 0.0, 1.0, lo_open=True)
    _range("gamma", cfg.gamma, 0.0, 1.0, lo_open=True)
    _range("weight_decay", cfg.weight_decay, 0.0)
    for name in ("bias_lr_factor", "classifier_lr_factor", "head_lr_factor"):
        _range(name, getattr(cfg, name), 0.0)
    _range("max_grad_norm", cfg.max_grad_norm, 0.0, lo_open=True, allow_none=True)
    _range("memory_momentum", cfg.memory_momentum, 0.0, 1.0, hi_open=True, allow_none=True)
    _range("memory_temperature", cfg.memory_temperature, 0.0, lo_open=True, allow_none=True)
    if cfg.text_weights is not None and not cfg.text_weights:
        raise ValueError("text_weights: expected a file path or None, got ''")
    ms = tuple(cfg.milestones)
    if any(m < 1 for m in ms) or any(b <= a for a, b in itertools.pairwise(ms)):
        raise ValueError(f"milestones: expected strictly increasing epochs >= 1, got {list(ms)}")
    for name in ("backbone", "output_dir"):
        if not getattr(cfg, name):
            raise ValueError(f"{name}: expected a non-empty string, got {getattr(cfg, name)!r}")
    from xreid.backbones import list_backbones

    if cfg.backbone not in list_backbones():
        raise ValueError(f"backbone: expected one of {list(list_backbones())}, "
                         f"got {cfg.backbone!r}")
    if cfg.weights is not None and not cfg.weights:
        raise ValueError("weights: expected a file path or None, got ''")
    if cfg.root is not None and not cfg.root:
        raise ValueError("root: expected a folder path or None, got ''")

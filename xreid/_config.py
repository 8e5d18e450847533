"""Helpers shared by the configuration sections (``DataConfig``, ``ModelConfig``, ...).

Each section is a dataclass owned by the package it configures; this module holds what every
section needs: a field factory that marks the options a resumed run may change, a check of
each field's value against its annotation, range and choice checks, and building a section
from a (possibly partial) mapping with errors that name the section and field.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "RESUMABLE",
    "check_choice",
    "check_field_types",
    "check_range",
    "merge_nested",
    "option",
    "resumable_fields",
    "section_from_dict",
]

#: field metadata key: True for an option a resumed run may change (where and how fast it runs,
#: how it is evaluated and logged, how long it trains); any other option changes the
#: optimisation and is refused on resume
RESUMABLE = "resumable"


def option(default: Any = dataclasses.MISSING, *, resumable: bool = False,
           default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field; ``resumable=True`` marks an option a resumed run may change."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={RESUMABLE: resumable})


def resumable_fields(cls: type) -> frozenset[str]:
    """Names of the fields of dataclass ``cls`` marked ``resumable``."""
    return frozenset(f.name for f in dataclasses.fields(cls) if f.metadata.get(RESUMABLE))


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
    return True  # an annotation this checker does not know: left to the owner's checks


def check_field_types(obj: Any) -> None:
    """``ValueError`` for the first field of dataclass ``obj`` whose value does not match its
    annotation (``int`` is not ``bool``; ``float`` must be finite)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        hint = hints.get(f.name)
        if hint is not None and not _type_ok(value, hint):
            shown = str(hint).replace("typing.", "")
            raise ValueError(f"{f.name}: expected {shown}" + (" (finite)" if "float" in shown
                             else "") + f", got {value!r} ({type(value).__name__})")


def check_range(name: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False, allow_none: bool = False) -> None:
    """``ValueError`` naming ``name`` unless ``value`` lies in the interval."""
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


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {allowed}, got {value!r}")


def _coerce(value: Any, hint: Any) -> Any:
    """Lists from JSON/YAML become the tuples the annotation asks for."""
    if isinstance(value, list):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if typing.get_origin(hint) is tuple or any(typing.get_origin(a) is tuple for a in args):
            return tuple(value)
    return value


def section_from_dict(cls: type, values: Mapping[str, Any], name: str) -> Any:
    """``cls(**values)`` (the defaults fill what ``values`` omits); unknown keys and
    non-mapping input raise ``ValueError`` naming the section ``name``."""
    if isinstance(values, cls):
        return values
    if not isinstance(values, Mapping):
        raise ValueError(f"{name}: expected a mapping of options, got {values!r} "
                         f"({type(values).__name__})")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {unknown}; expected some of "
                         f"{sorted(fields)}")
    return cls(**{k: _coerce(v, hints.get(k)) for k, v in values.items()})


def merge_nested(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` written over it, one level of nested mappings deep (the
    sections); neither input is modified."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = {**out[k], **v}
        else:
            out[k] = dict(v) if isinstance(v, Mapping) else v
    return out

"""Input validation helpers shared by every public module.

Every error is a ``ValueError`` that names the argument, what was expected and what came,
e.g. ``tokens: expected a 4-D tensor (B, T, 1+N, D), got shape (2, 3, 4)``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch

from xreid._torch_utils import autocast_enabled

__all__ = [
    "check_finite",
    "check_floating",
    "check_int",
    "check_integer_dtype",
    "check_labels",
    "check_module_input",
    "check_positive_int",
    "check_real_finite",
    "check_same_length",
    "check_tensor",
    "load_error_reason",
    "shape_str",
]


def shape_str(x: torch.Tensor | Sequence[int]) -> str:
    shape = tuple(x.shape) if isinstance(x, torch.Tensor) else tuple(x)
    return "(" + ", ".join(str(s) for s in shape) + ")"


def check_int(value: object, name: str, *, minimum: int = 1, numpy: bool = False) -> int:
    """``value`` as an ``int`` if it is an integer (never a bool) ``>= minimum``, else
    ``ValueError`` (``name: expected an int >= 1, got 0``). ``numpy=True`` also accepts
    numpy integer scalars."""
    integral = numbers.Integral if numpy else int
    if isinstance(value, bool) or not isinstance(value, integral) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def check_positive_int(value: object, name: str, *, numpy: bool = False) -> int:
    """:func:`check_int` with ``minimum=1``."""
    return check_int(value, name, minimum=1, numpy=numpy)


def check_tensor(
    x: object,
    name: str,
    *,
    ndim: int | None = None,
    dims: dict[int, int] | None = None,
    layout: str = "",
) -> torch.Tensor:
    """Check that ``x`` is a tensor with ``ndim`` dims and fixed sizes ``dims`` {axis: size}.

    ``layout`` is a human description such as ``"(B, T, 1+N, D)"`` used in messages.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor {layout}".rstrip() +
                         f", got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(
            f"{name}: expected a {ndim}-D tensor {layout}".rstrip()
            + f", got shape {shape_str(x)}"
        )
    if dims:
        for axis, size in dims.items():
            if x.shape[axis] != size:
                raise ValueError(
                    f"{name}: expected size {size} at dim {axis} {layout}".rstrip()
                    + f", got shape {shape_str(x)}"
                )
    return x


def check_floating(x: torch.Tensor, name: str) -> torch.Tensor:
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    return x


def check_integer_dtype(x: torch.Tensor, name: str) -> torch.Tensor:
    """Raise unless ``x`` has an integer dtype (not bool, floating or complex)."""
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"{name}: expected an integer tensor, got dtype {x.dtype}")
    return x


def check_real_finite(t: torch.Tensor, name: str, what: str, *,
                      keep_float64: bool = False) -> torch.Tensor:
    """``t`` as float32 (float64 kept if ``keep_float64``) after checking that it is real
    (not bool or complex) and finite (one host synchronisation); ``what`` names the values
    in messages (``query: expected finite features, got NaN or inf``)."""
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name}: expected real {what}, got dtype {t.dtype}")
    if not (keep_float64 and t.dtype == torch.float64):
        t = t.float()
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: expected finite {what}, got NaN or inf")
    return t


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Raise if ``x`` holds NaN or inf (one host synchronisation)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return x


def check_labels(labels: object, name: str, num_classes: int, length: int | None = None
                 ) -> torch.Tensor:
    """Check an integer label vector with values in [0, num_classes)."""
    x = check_integer_dtype(check_tensor(labels, name, ndim=1, layout="(B,)"), name)
    if length is not None and x.shape[0] != length:
        raise ValueError(f"{name}: expected {length} entries, got {x.shape[0]}")
    if x.numel() and (bool((x < 0).any()) or bool((x >= num_classes).any())):
        lo, hi = int(x.min()), int(x.max())
        raise ValueError(
            f"{name}: expected values in [0, {num_classes}), got values in [{lo}, {hi}]"
        )
    return x


def check_same_length(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_b}: expected {a.shape[0]} entries to match {name_a}, got {b.shape[0]}"
        )


def load_error_reason(exc: BaseException) -> tuple[bool, str]:
    """``(blocked, reason)`` for an exception of ``torch.load(weights_only=True)``.

    ``blocked`` is True when the file asked for a Python object outside the allowed set
    (a pickled class or function: refused, nothing executed); ``reason`` is the informative
    line of torch's multi-line message (e.g. ``unsupported GLOBAL posix.system``).
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line:
            return True, line
    informative = [line for line in lines if not line.startswith(
        ("Weights only load failed", "Please file an issue", "Check the documentation"))]
    return False, (informative[0] if informative else (lines[0] if lines else
                                                       type(exc).__name__))


def check_module_input(x: torch.Tensor, name: str, module: torch.nn.Module) -> torch.Tensor:
    """``x`` must be floating point, on the device of ``module``'s parameters and, outside
    ``torch.autocast``, of their dtype. Metadata only: no host synchronisation."""
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    param = next(module.parameters(), None)
    if param is None:
        return x
    owner = type(module).__name__
    if x.device != param.device:
        raise ValueError(f"{name}: expected a tensor on {param.device} (where the parameters "
                         f"of {owner} are), got one on {x.device}")
    if x.dtype != param.dtype and not autocast_enabled(x.device.type):
        raise ValueError(f"{name}: expected dtype {param.dtype} (the parameters of {owner}; or "
                         f"run under torch.autocast), got {x.dtype}")
    return x

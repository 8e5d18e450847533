"""Temporal token shift (paper Eq. 5), out of place, with an exact hand-written adjoint.

For patch tokens ``x`` of shape ``(B, T, N, D)`` and ``f = D // fold_div``::

    out[:, t, :, 0:f]  = x[:, t - 1, :, 0:f]     # first fold: from the previous frame
    out[:, t, :, f:2f] = x[:, t + 1, :, f:2f]    # second fold: from the next frame
    out[:, t, :, 2f:]  = x[:, t, :, 2f:]         # the rest: the frame's own channels

A missing neighbour (``t - 1 < 0`` or ``t + 1 >= T``) takes the current frame
(``padding="replicate"``, what the paper describes: "we simply copy the current frame") or
zeros (``padding="zero"``, the TSM convention). With the default ``fold_div=4`` this is
exactly Eq. 5: ``[z_{t-1}(1:D/4); z_{t+1}(D/4+1:D/2); z_t(D/2+1:D)]``.

Why a custom :class:`torch.autograd.Function`: autograd through slice assignments or
``torch.cat`` of slices allocates a full-size gradient per slice (10-15x the cost of a
``clone``; ``docs/performance.md``, "Design notes"). The Function's forward allocates one
output and issues at most five slice copies; its backward is the exact adjoint, also one buffer
and a few slice copies. The adjoint is itself a Function whose backward is the shift, so the op is
differentiable any number of times (``gradgradcheck`` passes).

Unlike the official X-ReID code (an in-place copy between overlapping slices, which sends
frame 0's first fold to every frame on CPU and races on CUDA), the input is never modified.
"""

from __future__ import annotations

from typing import Any

import torch

from xreid._validation import check_tensor

__all__ = ["split_frame_tokens", "temporal_shift"]

_PADDINGS = ("replicate", "zero")


def _shift(
    x: torch.Tensor, fold: int, zero: bool, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Forward of Eq. 5 on (B, T, N, D) into ``out`` (a new buffer by default); slice copies
    only. ``fold == 0`` is a plain copy."""
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    f = fold
    if 2 * f < x.shape[-1]:
        out[..., 2 * f :].copy_(x[..., 2 * f :])
    if f == 0:
        return out
    # first fold: frame t takes frame t-1
    out[:, 1:, :, :f].copy_(x[:, :-1, :, :f])
    # second fold: frame t takes frame t+1
    out[:, :-1, :, f : 2 * f].copy_(x[:, 1:, :, f : 2 * f])
    if zero:
        out[:, 0, :, :f].zero_()
        out[:, -1, :, f : 2 * f].zero_()
    else:
        out[:, 0, :, :f].copy_(x[:, 0, :, :f])
        out[:, -1, :, f : 2 * f].copy_(x[:, -1, :, f : 2 * f])
    return out


def _shift_adjoint(
    g: torch.Tensor, fold: int, zero: bool, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Adjoint (transpose) of :func:`_shift`: the gradient with respect to its input,
    written into ``out`` (a new buffer by default).

    First fold: x[t] feeds out[t+1] (and out[0] too when t = 0 under replicate), so
    grad[t] = g[t+1] for t < T-1, grad[T-1] = 0, plus g[0] added at t = 0 under replicate.
    Second fold is the mirror image.
    """
    gi = torch.empty(g.shape, dtype=g.dtype, device=g.device) if out is None else out
    f = fold
    if 2 * f < g.shape[-1]:
        gi[..., 2 * f :].copy_(g[..., 2 * f :])
    if f == 0:
        return gi
    gi[:, :-1, :, :f].copy_(g[:, 1:, :, :f])
    gi[:, 1:, :, f : 2 * f].copy_(g[:, :-1, :, f : 2 * f])
    if zero:
        gi[:, -1, :, :f].zero_()
        gi[:, 0, :, f : 2 * f].zero_()
    elif g.shape[1] == 1:
        gi[:, 0, :, : 2 * f].copy_(g[:, 0, :, : 2 * f])
    else:
        # boundary accumulation: the edge frame is read twice under "replicate"
        gi[:, -1, :, :f].zero_()
        gi[:, 0, :, :f].add_(g[:, 0, :, :f])
        gi[:, 0, :, f : 2 * f].zero_()
        gi[:, -1, :, f : 2 * f].add_(g[:, -1, :, f : 2 * f])
    return gi


class _TemporalShift(torch.autograd.Function):
    @staticmethod
    def forward(x: torch.Tensor, fold: int, zero: bool) -> torch.Tensor:  # type: ignore[override]
        return _shift(x, fold, zero)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        _, ctx.fold, ctx.zero = inputs

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        return _TemporalShiftAdjoint.apply(grad, ctx.fold, ctx.zero), None, None


class _TemporalShiftAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(g: torch.Tensor, fold: int, zero: bool) -> torch.Tensor:  # type: ignore[override]
        return _shift_adjoint(g, fold, zero)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        _, ctx.fold, ctx.zero = inputs

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        return _TemporalShift.apply(grad, ctx.fold, ctx.zero), None, None


class _SplitTokens(torch.autograd.Function):
    """(B, T, 1+N, D) -> ([CLS] (B, T, D), shifted patches (B, T, N, D)), both new tensors.

    Its backward writes the whole token gradient into one buffer, instead of the two
    zero-filled full-size buffers plus a sum that autograd builds for ``tokens[:, :, 0]``
    and ``tokens[:, :, 1:]``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        tokens: torch.Tensor, fold: int, zero: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cls = tokens[:, :, 0].clone(memory_format=torch.contiguous_format)
        return cls, _shift(tokens[:, :, 1:], fold, zero)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        _, ctx.fold, ctx.zero = inputs

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_cls: torch.Tensor, grad_patches: torch.Tensor
    ) -> tuple[torch.Tensor, None, None]:
        return _MergeTokens.apply(grad_cls, grad_patches, ctx.fold, ctx.zero), None, None


class _MergeTokens(torch.autograd.Function):
    """Adjoint of :class:`_SplitTokens`: ``(g_cls, g_patches) -> (B, T, 1+N, D)``."""

    @staticmethod
    def forward(  # type: ignore[override]
        grad_cls: torch.Tensor, grad_patches: torch.Tensor, fold: int, zero: bool
    ) -> torch.Tensor:
        b, t, n, d = grad_patches.shape
        out = torch.empty((b, t, 1 + n, d), dtype=grad_patches.dtype,
                          device=grad_patches.device)
        out[:, :, 0].copy_(grad_cls)
        _shift_adjoint(grad_patches, fold, zero, out=out[:, :, 1:])
        return out

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        _, _, ctx.fold, ctx.zero = inputs

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        cls, patches = _SplitTokens.apply(grad, ctx.fold, ctx.zero)
        return cls, patches, None, None


def _check_args(fold_div: int, padding: str) -> None:
    if isinstance(fold_div, bool) or not isinstance(fold_div, int) or fold_div < 2:
        raise ValueError(f"fold_div: expected an int >= 2, got {fold_div!r}")
    if padding not in _PADDINGS:
        raise ValueError(f"padding: expected one of {_PADDINGS}, got {padding!r}")


def temporal_shift(
    x: torch.Tensor, fold_div: int = 4, padding: str = "replicate"
) -> torch.Tensor:
    """Exchange channel folds of patch tokens between adjacent frames (paper Eq. 5).

    Args:
        x: patch tokens ``(B, T, N, D)``; any dtype, any strides, any ``T >= 1``.
        fold_div: ``f = D // fold_div`` channels come from frame ``t-1`` (channels
            ``[0, f)``) and ``f`` from frame ``t+1`` (channels ``[f, 2f)``); must be >= 2.
        padding: ``"replicate"`` (a missing neighbour takes the current frame; the paper)
            or ``"zero"`` (a missing neighbour gives zeros; TSM).

    Returns:
        A new contiguous tensor ``(B, T, N, D)``; ``x`` is never modified. With
        ``padding="replicate"`` and ``T == 1`` it equals ``x``. With ``padding="zero"``
        and ``T == 1`` both neighbours are missing, so channels ``[0, 2f)`` are zero.
    """
    check_tensor(x, "x", ndim=4, layout="(B, T, N, D)")
    _check_args(fold_div, padding)
    return _TemporalShift.apply(x, x.shape[-1] // fold_div, padding == "zero")


def split_frame_tokens(
    tokens: torch.Tensor, fold_div: int | None = None, padding: str = "replicate"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ViT frame tokens into [CLS] and patch tokens, optionally shifting the patches.

    Args:
        tokens: ``(B, T, 1+N, D)``, token 0 of each frame is [CLS]; ``N >= 1``.
        fold_div: ``None`` (default) returns the patches unshifted; an int applies
            :func:`temporal_shift` (Eq. 5) with that ``fold_div`` and ``padding``.
        padding: ``"replicate"`` or ``"zero"``, as in :func:`temporal_shift`.

    Returns:
        ``(cls (B, T, D), patches (B, T, N, D))``, new contiguous tensors. Equal to
        ``(tokens[:, :, 0], temporal_shift(tokens[:, :, 1:], ...))``, but the backward
        writes the token gradient into a single buffer (one pass instead of about five).
    """
    check_tensor(tokens, "tokens", ndim=4, layout="(B, T, 1+N, D)")
    if tokens.shape[2] < 2:
        raise ValueError(
            "tokens: expected a [CLS] token plus N >= 1 patch tokens (B, T, 1+N, D), "
            f"got shape {tuple(tokens.shape)}"
        )
    fold = 0
    if fold_div is not None:
        _check_args(fold_div, padding)
        fold = tokens.shape[-1] // fold_div
    return _SplitTokens.apply(tokens, fold, padding == "zero")

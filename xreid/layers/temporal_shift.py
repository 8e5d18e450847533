"""Temporal token shift (paper Eq. 5), out of place, with an exact hand-written adjoint.

For patch tokens ``x`` of shape ``(B, T, N, D)``, ``f = D // fold_div`` and a time stride
``S >= 1`` (``stride``; Eq. 5 is S = 1, the paper's Fig. 4 tries S = 1..4)::

    out[:, t, :, 0:f]  = x[:, t - S, :, 0:f]     # first fold: from S frames earlier
    out[:, t, :, f:2f] = x[:, t + S, :, f:2f]    # second fold: from S frames later
    out[:, t, :, 2f:]  = x[:, t, :, 2f:]         # the rest: the frame's own channels

A missing neighbour (``t - S < 0`` or ``t + S >= T``) takes the current frame
(``padding="replicate"``, what the paper describes: "we simply copy the current frame") or
zeros (``padding="zero"``, the TSM convention). With the default ``fold_div=4`` this is
exactly Eq. 5: ``[z_{t-1}(1:D/4); z_{t+1}(D/4+1:D/2); z_t(D/2+1:D)]``. Edge frames: the
first S frames keep their own first fold and the last S frames their own second fold (with
``"replicate"``; zeros with ``"zero"``), so with S >= 2 several frames at each end of the
clip are not shifted in one fold (S = 2, T = 10: frames 0-1 and 8-9).

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

from xreid._validation import check_int, check_positive_int, check_tensor

__all__ = ["check_shift_args", "split_frame_tokens", "temporal_shift"]

_PADDINGS = ("replicate", "zero")


def _shift(
    x: torch.Tensor, fold: int, zero: bool, stride: int = 1, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Forward of Eq. 5 on (B, T, N, D) into ``out`` (a new buffer by default); slice copies
    only. ``fold == 0`` is a plain copy. ``stride`` s >= 1: frame t reads frames t -+ s."""
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    f, t, s = fold, x.shape[1], stride
    if 2 * f < x.shape[-1]:
        out[..., 2 * f :].copy_(x[..., 2 * f :])
    if f == 0:
        return out
    k = min(s, t)  # frames whose neighbour is missing, at each end
    if t > s:
        # first fold: frame t takes frame t - s; second fold: frame t takes frame t + s
        out[:, s:, :, :f].copy_(x[:, : t - s, :, :f])
        out[:, : t - s, :, f : 2 * f].copy_(x[:, s:, :, f : 2 * f])
    if zero:
        out[:, :k, :, :f].zero_()
        out[:, t - k :, :, f : 2 * f].zero_()
    else:
        out[:, :k, :, :f].copy_(x[:, :k, :, :f])
        out[:, t - k :, :, f : 2 * f].copy_(x[:, t - k :, :, f : 2 * f])
    return out


def _shift_adjoint(
    g: torch.Tensor, fold: int, zero: bool, stride: int = 1, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Adjoint (transpose) of :func:`_shift`: the gradient with respect to its input,
    written into ``out`` (a new buffer by default).

    First fold: x[t] feeds out[t + s] (and out[t] itself when t < s under replicate), so
    grad[t] = g[t + s] for t < T - s, 0 for the last s frames, plus g[t] added for t < s
    under replicate. The second fold is the mirror image.
    """
    gi = torch.empty(g.shape, dtype=g.dtype, device=g.device) if out is None else out
    f, t, s = fold, g.shape[1], stride
    if 2 * f < g.shape[-1]:
        gi[..., 2 * f :].copy_(g[..., 2 * f :])
    if f == 0:
        return gi
    k = min(s, t)
    if t > s:
        gi[:, : t - s, :, :f].copy_(g[:, s:, :, :f])
        gi[:, s:, :, f : 2 * f].copy_(g[:, : t - s, :, f : 2 * f])
    # frames that feed no shifted position
    gi[:, t - k :, :, :f].zero_()
    gi[:, :k, :, f : 2 * f].zero_()
    if not zero:
        # boundary accumulation: under "replicate" an edge frame is also read in place
        gi[:, :k, :, :f].add_(g[:, :k, :, :f])
        gi[:, t - k :, :, f : 2 * f].add_(g[:, t - k :, :, f : 2 * f])
    return gi


class _TemporalShift(torch.autograd.Function):
    @staticmethod
    def forward(x: torch.Tensor, fold: int, zero: bool, stride: int) -> torch.Tensor:  # type: ignore[override]
        return _shift(x, fold, zero, stride)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        _, ctx.fold, ctx.zero, ctx.stride = inputs

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:  # type: ignore[override]
        return _TemporalShiftAdjoint.apply(grad, ctx.fold, ctx.zero, ctx.stride), None, None, None


# Deliberate mirror of _TemporalShift: each one's backward is the other (the shift and its
# exact adjoint), which keeps double backward exact.
class _TemporalShiftAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(g: torch.Tensor, fold: int, zero: bool, stride: int) -> torch.Tensor:  # type: ignore[override]
        return _shift_adjoint(g, fold, zero, stride)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        _, ctx.fold, ctx.zero, ctx.stride = inputs

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:  # type: ignore[override]
        return _TemporalShift.apply(grad, ctx.fold, ctx.zero, ctx.stride), None, None, None


class _SplitTokens(torch.autograd.Function):
    """(B, T, 1+N, D) -> ([CLS] (B, T, D), shifted patches (B, T, N, D)), both new tensors.

    Its backward writes the whole token gradient into one buffer, instead of the two
    zero-filled full-size buffers plus a sum that autograd builds for ``tokens[:, :, 0]``
    and ``tokens[:, :, 1:]``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        tokens: torch.Tensor, fold: int, zero: bool, stride: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cls = tokens[:, :, 0].clone(memory_format=torch.contiguous_format)
        return cls, _shift(tokens[:, :, 1:], fold, zero, stride)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        _, ctx.fold, ctx.zero, ctx.stride = inputs

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_cls: torch.Tensor, grad_patches: torch.Tensor
    ) -> tuple[torch.Tensor, None, None, None]:
        merged = _MergeTokens.apply(grad_cls, grad_patches, ctx.fold, ctx.zero, ctx.stride)
        return merged, None, None, None


class _MergeTokens(torch.autograd.Function):
    """Adjoint of :class:`_SplitTokens`: ``(g_cls, g_patches) -> (B, T, 1+N, D)``."""

    @staticmethod
    def forward(  # type: ignore[override]
        grad_cls: torch.Tensor, grad_patches: torch.Tensor, fold: int, zero: bool, stride: int
    ) -> torch.Tensor:
        b, t, n, d = grad_patches.shape
        out = torch.empty((b, t, 1 + n, d), dtype=grad_patches.dtype,
                          device=grad_patches.device)
        out[:, :, 0].copy_(grad_cls)
        _shift_adjoint(grad_patches, fold, zero, stride, out=out[:, :, 1:])
        return out

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        _, _, ctx.fold, ctx.zero, ctx.stride = inputs

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None, None, None]:
        cls, patches = _SplitTokens.apply(grad, ctx.fold, ctx.zero, ctx.stride)
        return cls, patches, None, None, None


def check_shift_args(fold_div: object, padding: object, stride: object = 1) -> None:
    """Raise ``ValueError`` naming the first bad option of :func:`temporal_shift`."""
    check_int(fold_div, "fold_div", minimum=2)
    if padding not in _PADDINGS:
        raise ValueError(f"padding: expected one of {_PADDINGS}, got {padding!r}")
    check_positive_int(stride, "stride")


def check_shift_shape(x: torch.Tensor, name: str, fold_div: int, layout: str) -> None:
    """Refuse ``T == 0`` and ``D < fold_div`` (no channel would move: a silent no-op)."""
    if x.shape[1] < 1:
        raise ValueError(f"{name}: expected T >= 1 frames {layout}, got shape {tuple(x.shape)}")
    if x.shape[-1] < fold_div:
        raise ValueError(
            f"{name}: expected D >= fold_div={fold_div} channels {layout} (f = D // fold_div "
            f"channels move each way), got D={x.shape[-1]}: nothing would be shifted"
        )


def temporal_shift(
    x: torch.Tensor, fold_div: int = 4, padding: str = "replicate", stride: int = 1
) -> torch.Tensor:
    """Exchange channel folds of patch tokens between frames ``stride`` apart (paper Eq. 5).

    Args:
        x: patch tokens ``(B, T, N, D)``; any dtype, any strides, any ``T >= 1``.
        fold_div: ``f = D // fold_div`` channels come from frame ``t - stride`` (channels
            ``[0, f)``) and ``f`` from frame ``t + stride`` (channels ``[f, 2f)``); >= 2.
        padding: ``"replicate"`` (a missing neighbour takes the current frame; the paper)
            or ``"zero"`` (a missing neighbour gives zeros; TSM).
        stride: the time stride S >= 1 (Eq. 5 is S = 1; the paper's Fig. 4 varies it).
            ``T <= stride`` is allowed: then every neighbour is missing.

    Returns:
        A new contiguous tensor ``(B, T, N, D)``; ``x`` is never modified. With
        ``padding="replicate"`` and ``T <= stride`` it equals ``x``. With ``padding="zero"``
        and ``T <= stride`` both neighbours are missing, so channels ``[0, 2f)`` are zero.
    """
    check_tensor(x, "x", ndim=4, layout="(B, T, N, D)")
    check_shift_args(fold_div, padding, stride)
    check_shift_shape(x, "x", fold_div, "(B, T, N, D)")
    return _TemporalShift.apply(x, x.shape[-1] // fold_div, padding == "zero", stride)


def split_frame_tokens(
    tokens: torch.Tensor,
    fold_div: int | None = None,
    padding: str = "replicate",
    stride: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ViT frame tokens into [CLS] and patch tokens, optionally shifting the patches.

    Args:
        tokens: ``(B, T, 1+N, D)``, token 0 of each frame is [CLS]; ``N >= 1``.
        fold_div: ``None`` (default) returns the patches unshifted; an int applies
            :func:`temporal_shift` (Eq. 5) with that ``fold_div``, ``padding`` and ``stride``.
        padding: ``"replicate"`` or ``"zero"``, as in :func:`temporal_shift`.
        stride: time stride S >= 1, as in :func:`temporal_shift`.

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
        check_shift_args(fold_div, padding, stride)
        check_shift_shape(tokens, "tokens", fold_div, "(B, T, 1+N, D)")
        fold = tokens.shape[-1] // fold_div
    return _SplitTokens.apply(tokens, fold, padding == "zero", stride)

"""``build_backbone``: the frame-token encoder factory."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from xreid.backbones.base import FrameEncoder
from xreid.backbones.bundled import BUNDLED_WEIGHTS, bundled_weights_path

__all__ = ["build_backbone", "default_patch_size", "list_backbones"]


def _tiny(**kw: Any) -> FrameEncoder:
    from xreid.backbones.tiny import TinyViT

    return TinyViT(**kw)


def _timm(**kw: Any) -> FrameEncoder:
    from xreid.backbones.timm_vit import TimmCLIPViT

    return TimmCLIPViT(**kw)


def _openclip(**kw: Any) -> FrameEncoder:
    from xreid.backbones.openclip_vit import OpenCLIPViT

    return OpenCLIPViT(**kw)


_REGISTRY: dict[str, Callable[..., FrameEncoder]] = {
    "clip-vit-b16": _timm,
    "clip-vit-b16-openclip": _openclip,
    "tiny": _tiny,
}


def list_backbones() -> list[str]:
    """Names accepted by :func:`build_backbone`."""
    return sorted(_REGISTRY)


def _check_img_size(img_size: object) -> tuple[int, int]:
    if isinstance(img_size, int) and not isinstance(img_size, bool):
        img_size = (img_size, img_size)
    if (
        not isinstance(img_size, Sequence)
        or len(img_size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in img_size)
    ):
        raise ValueError(f"img_size: expected (H, W) positive integers, got {img_size!r}")
    return int(img_size[0]), int(img_size[1])


def build_backbone(
    name: str,
    *,
    img_size: int | tuple[int, int] = (288, 144),
    weights: str | os.PathLike[str] | Mapping[str, torch.Tensor] | None = None,
    num_cameras: int = 0,
    camera_coef: float = 1.0,
    freeze_patch_embed: bool = False,
    grad_checkpointing: bool = False,
    **kwargs: Any,
) -> FrameEncoder:
    """Build a frame-token encoder.

    ``forward(video (B, T, 3, H, W), cameras=None (B,) long) -> FrameTokens(tokens
    (B, T, 1+N, D), projected (B, T, d))``; ``tokens`` after the final LayerNorm (CLIP's
    ``ln_post``, index 0 = [CLS]), ``projected`` = [CLS] through CLIP's projection.

    Args:
        name: ``"clip-vit-b16"`` (OpenAI CLIP ViT-B/16 visual tower via timm
            ``vit_base_patch16_clip_quickgelu_224``; D=768, d=512),
            ``"clip-vit-b16-openclip"`` (the same via open_clip ``ViT-B-16-quickgelu``; same
            outputs for the same weights) or ``"tiny"`` (a small randomly initialised
            CLIP-style ViT in pure torch: D=96, 3 blocks, 4 heads, patch 8, d=32).
        img_size: (H, W) of the frames, multiples of the patch size; 288x144 with patch 16
            gives an 18x9 grid, N=162.
        weights: a local checkpoint file (OpenAI TorchScript ``ViT-B-16.pt``, an open_clip /
            timm / xreid state dict ``.pt/.pth/.bin``, or ``.safetensors``, e.g. written by
            ``xreid-convert``), an in-memory state dict, or the name of weights shipped with
            the package (``"synthetic-pretrained"`` for ``"tiny"``: see
            :mod:`xreid.backbones.bundled`; the name wins over a file of that name, and the
            file's SHA-256 is checked); ``None`` keeps the random init.
            The positional embedding is resampled to ``img_size`` (bilinear, no antialias,
            as the authors). Nothing is downloaded.
        num_cameras: size of the camera embedding (SIE); 0 disables it.
        camera_coef: factor of the camera embedding (the authors' ``SIE_COE``; 1.0 in the
            X-ReID config).
        freeze_patch_embed: set ``requires_grad=False`` on the patch projection (the
            authors freeze CLIP's ``conv1``).
        grad_checkpointing: recompute the blocks in backward (long clips).
        **kwargs: architecture options: ``embed_dim``, ``depth``, ``num_heads``,
            ``patch_size``, ``mlp_ratio``, ``proj_dim`` for every name; for the CLIP
            backbones also ``model_name`` and other timm ``create_model`` / open_clip
            ``vision_cfg`` arguments.

    Raises:
        ValueError: unknown name, bad ``img_size``/``num_cameras``, or a checkpoint that does
            not fit (the message lists the mismatched, missing and unexpected keys).
        ImportError: timm / open_clip missing for the CLIP backbones.
    """
    if name not in _REGISTRY:
        raise ValueError(f"name: expected one of {list_backbones()}, got {name!r}")
    size = _check_img_size(img_size)
    if isinstance(num_cameras, bool) or not isinstance(num_cameras, int) or num_cameras < 0:
        raise ValueError(f"num_cameras: expected an integer >= 0, got {num_cameras!r}")
    if name == "clip-vit-b16" and weights is not None:
        # every timm parameter is overwritten by the checkpoint: skip timm's slow re-init
        kwargs.setdefault("weight_init", "skip")
    model = _REGISTRY[name](
        img_size=size, num_cameras=num_cameras, camera_coef=float(camera_coef), **kwargs
    )
    ph, pw = model.patch_size
    if size[0] % ph or size[1] % pw:
        raise ValueError(
            f"img_size: expected multiples of the patch size ({ph}, {pw}), got {size}"
        )
    if isinstance(weights, str) and weights in BUNDLED_WEIGHTS:
        weights = bundled_weights_path(weights, name)
    if weights is not None:
        model.load_weights(weights)
    if freeze_patch_embed:
        model.patch_embed_module().requires_grad_(False)
    if grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model


def default_patch_size(name: str) -> int:
    """The patch size of backbone ``name`` when none is given (tiny 8, the CLIP ViTs 16)."""
    return 8 if name == "tiny" else 16

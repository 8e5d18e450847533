"""Frame-token backbones: ``build_backbone(name, ...) -> module``, ``forward(video (B,T,3,H,W),
cameras=None) -> FrameTokens(tokens (B,T,1+N,D), projected (B,T,d))``.

Importing this package imports torch only; timm / open_clip (and with them torchvision) are
imported when a ``"clip-vit-b16"`` / ``"clip-vit-b16-openclip"`` backbone is built.
See ``docs/backbones.md``.
"""

from __future__ import annotations

from xreid.backbones.base import FrameEncoder, FrameTokens
from xreid.backbones.bundled import BUNDLED_WEIGHTS, BundledWeights, bundled_weights_path
from xreid.backbones.factory import build_backbone, default_patch_size, list_backbones
from xreid.backbones.features import EncoderEmbedding
from xreid.backbones.openclip_vit import OpenCLIPViT
from xreid.backbones.timm_vit import TimmCLIPViT
from xreid.backbones.tiny import QuickGELU, TinyViT
from xreid.backbones.weights import (
    canonical_to_openai,
    load_into,
    openai_to_canonical,
    read_checkpoint,
    resample_pos_embed,
    to_canonical,
)

__all__ = [
    "BUNDLED_WEIGHTS",
    "BundledWeights",
    "EncoderEmbedding",
    "FrameEncoder",
    "FrameTokens",
    "OpenCLIPViT",
    "QuickGELU",
    "TimmCLIPViT",
    "TinyViT",
    "build_backbone",
    "bundled_weights_path",
    "canonical_to_openai",
    "default_patch_size",
    "list_backbones",
    "load_into",
    "openai_to_canonical",
    "read_checkpoint",
    "resample_pos_embed",
    "to_canonical",
]

"""Frame-token backbones: ``build_backbone(name, ...) -> module``, ``forward(video (B,T,3,H,W),
cameras=None) -> FrameTokens(tokens (B,T,1+N,D), projected (B,T,d))``.

Importing this package imports torch only; timm / open_clip (and with them torchvision) are
imported when a ``"clip-vit-b16"`` / ``"clip-vit-b16-openclip"`` backbone is built.
See ``docs/backbones.md``.
"""

from __future__ import annotations

from xreid.backbones.base import FrameEncoder, FrameTokens
from xreid.backbones.factory import build_backbone, list_backbones
from xreid.backbones.weights import read_checkpoint, resample_pos_embed, to_canonical

__all__ = [
    "FrameEncoder",
    "FrameTokens",
    "build_backbone",
    "list_backbones",
    "read_checkpoint",
    "resample_pos_embed",
    "to_canonical",
]

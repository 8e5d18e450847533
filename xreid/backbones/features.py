"""The encoder's own clip embedding, for rating a pre-trained encoder before any fine-tuning.

``EncoderEmbedding(backbone).embed(video (B, T, 3, H, W), cameras=None) -> (B, D + d)`` =
``cat(mean_t [CLS]_t, mean_t projected_t)``: the temporal average of the [CLS] token and of
its projection, with no head, BNNeck or interaction module. For a pre-trained encoder this is
the analogue of ranking with zero-shot CLIP features; it is the ``"pretrained"`` baseline of
:class:`xreid.engine.Trainer` runs that start from weights.
"""

from __future__ import annotations

import torch
from torch import nn

from xreid.backbones.base import FrameEncoder

__all__ = ["EncoderEmbedding"]


class EncoderEmbedding(nn.Module):
    """Wraps a :class:`FrameEncoder`; ``embed``/``forward`` give ``(B, D + d)`` features."""

    def __init__(self, backbone: FrameEncoder) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_cameras = backbone.num_cameras

    def embed(self, video: torch.Tensor, cameras: torch.Tensor | None = None) -> torch.Tensor:
        out = self.backbone(video, cameras)
        return torch.cat([out.tokens[:, :, 0].mean(dim=1), out.projected.mean(dim=1)], dim=1)

    def forward(self, video: torch.Tensor, cameras: torch.Tensor | None = None) -> torch.Tensor:
        return self.embed(video, cameras)

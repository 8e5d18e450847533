"""The frame-token encoder interface shared by every backbone.

A backbone maps a batch of clips ``video (B, T, 3, H, W)`` to :class:`FrameTokens`: the
per-frame token sequence ``tokens (B, T, 1+N, D)`` (index 0 of the token axis is [CLS],
after the final LayerNorm, CLIP's ``ln_post``) and ``projected (B, T, d)``, the [CLS] token
through CLIP's projection (``ln_post(x)[:, 0] @ proj``). Frames are flattened into the batch
(row ``b*T + t``) and encoded independently, so one clip's output never depends on the other
clips of the batch.

Forward pass (as the authors' code; ``docs/differences.md``, "Backbone and camera embedding")::

    x = [CLS; patch_embed(frame)] + pos_embed          (B*T, 1+N, D)
    x[:, 0] += camera_coef * camera_embed[camera]      SIE, [CLS] only (when cameras given)
    x = norm(blocks(norm_pre(x)))                      ln_pre, resblocks, ln_post
    tokens, projected = x, x[:, 0] @ proj

The authors add the camera embedding to [CLS] before the positional embedding; addition is
linear, so adding it after (as here) gives the same result.

Subclasses supply the modules (pure torch for ``"tiny"``, timm or open_clip for the CLIP
ViT-B/16) and the mapping between their parameter names and the canonical (timm-style) names
used by :mod:`xreid.backbones.weights`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from xreid._torch_utils import autocast_enabled, is_compiling
from xreid._validation import check_tensor, shape_str

__all__ = ["FrameEncoder", "FrameTokens"]


class FrameTokens(NamedTuple):
    """Output of a backbone.

    Attributes:
        tokens: (B, T, 1+N, D) every token of every frame after the final LayerNorm
            (``ln_post``); ``tokens[:, :, 0]`` is [CLS], ``tokens[:, :, 1:]`` the N patch tokens
            in row-major grid order.
        projected: (B, T, d) the [CLS] token through CLIP's projection,
            ``tokens[:, :, 0] @ proj`` (no bias).
    """

    tokens: torch.Tensor
    projected: torch.Tensor


class FrameEncoder(nn.Module):
    """Base class: video ``(B, T, 3, H, W)`` -> :class:`FrameTokens`.

    Attributes:
        embed_dim: D, the token width.
        proj_dim: d, the width of the projected [CLS] token.
        img_size: (H, W) expected frame size.
        patch_size: (ph, pw).
        grid_size: (H // ph, W // pw).
        num_patches: N = grid_size[0] * grid_size[1].
        num_cameras: size of the camera embedding (0: none).
        camera_coef: scale of the camera embedding (SIE coefficient).
        camera_embed: (num_cameras, D) parameter, or None when ``num_cameras == 0``.
        grad_checkpointing: recompute each block in backward (see
            :meth:`set_grad_checkpointing`).
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        proj_dim: int,
        img_size: tuple[int, int],
        patch_size: tuple[int, int],
        num_cameras: int = 0,
        camera_coef: float = 1.0,
    ) -> None:
        super().__init__()
        self.embed_dim = int(embed_dim)
        self.proj_dim = int(proj_dim)
        self.img_size = (int(img_size[0]), int(img_size[1]))
        self.patch_size = (int(patch_size[0]), int(patch_size[1]))
        self.grid_size = (
            self.img_size[0] // self.patch_size[0],
            self.img_size[1] // self.patch_size[1],
        )
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.num_cameras = int(num_cameras)
        self.camera_coef = float(camera_coef)
        self.grad_checkpointing = False
        if self.num_cameras > 0:
            self.camera_embed = nn.Parameter(torch.zeros(self.num_cameras, self.embed_dim))
            nn.init.trunc_normal_(self.camera_embed, std=0.02)
        else:
            self.register_parameter("camera_embed", None)

    # ------------------------------------------------------------ subclass hooks (per library)
    def _embed(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (M, 3, H, W) -> [CLS; patches] + pos_embed, (M, 1+N, D), before ``norm_pre``."""
        raise NotImplementedError

    def _norm_pre(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _blocks(self) -> Iterable[nn.Module]:
        raise NotImplementedError

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _project(self, cls: torch.Tensor) -> torch.Tensor:
        """(M, D) -> (M, d)."""
        raise NotImplementedError

    def patch_embed_module(self) -> nn.Module:
        """The patch projection (a stride-p convolution); frozen by ``freeze_patch_embed``."""
        raise NotImplementedError

    def state_to_canonical(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Own parameter names -> canonical (timm-style) names (a subclass with its own
        naming overrides this and :meth:`state_from_canonical`)."""
        return dict(state)

    def state_from_canonical(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Canonical (timm-style) names -> own parameter names (used by
        :func:`~xreid.backbones.weights.load_into`)."""
        return dict(state)

    def _weight_names(self) -> set[str]:
        """Own names of the parameters excluded from weight decay (besides camera_embed)."""
        return set()

    # --------------------------------------------------------------------------- public API
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute every transformer block during backward (saves activation memory for long
        clips). Outputs and gradients are unchanged; only active while autograd records."""
        self.grad_checkpointing = bool(enable)

    def no_weight_decay(self) -> set[str]:
        """Names (as in ``named_parameters``) that optimisers usually exclude from weight decay:
        the [CLS] token, the positional embedding and the camera embedding."""
        names = self._weight_names()
        if self.camera_embed is not None:
            names.add("camera_embed")
        return names

    def canonical_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict in canonical (timm-style) names; see :mod:`xreid.backbones.weights`."""
        return self.state_to_canonical(self.state_dict())

    def load_weights(
        self, weights: str | os.PathLike[str] | Mapping[str, torch.Tensor]
    ) -> None:
        """Load a local checkpoint (OpenAI TorchScript ``ViT-B-16.pt``, an open_clip / timm /
        xreid state dict in ``.pt/.pth/.bin``, or ``.safetensors``) or an in-memory state dict.

        The positional embedding is resampled to this backbone's grid (bilinear, no
        antialias, [CLS] position kept). A checkpoint of another architecture raises
        ``ValueError`` listing the mismatched, missing and unexpected keys. ``camera_embed``
        is optional in the checkpoint (kept at its initial value when absent).
        """
        from xreid.backbones.weights import load_into

        load_into(self, weights)

    def forward(self, video: torch.Tensor, cameras: torch.Tensor | None = None) -> FrameTokens:
        """Encode every frame of every clip.

        Args:
            video: (B, T, 3, H, W) floating-point frames, (H, W) == ``img_size``.
            cameras: optional (B,) integer camera index of each clip, in
                ``[0, num_cameras)``; all frames of a clip share it. Only allowed when the
                backbone has a camera embedding; ``None`` adds no camera term.

        Returns:
            FrameTokens(tokens (B, T, 1+N, D), projected (B, T, d)).
        """
        b, t = self._check_video(video)
        cam = self._camera_term(cameras, b)
        frames = video.reshape(b * t, *video.shape[2:])
        weight = self.patch_embed_module().weight
        if frames.dtype != weight.dtype and not autocast_enabled(frames.device.type):
            frames = frames.to(weight.dtype)
        x = self._embed(frames)
        if cam is not None:
            cam = cam.to(x.dtype).repeat_interleave(t, dim=0)
            x = torch.cat([x[:, :1] + cam[:, None], x[:, 1:]], dim=1)
        x = self._norm_pre(x)
        use_ckpt = self.grad_checkpointing and torch.is_grad_enabled()
        for block in self._blocks():
            x = checkpoint(block, x, use_reentrant=False) if use_ckpt else block(x)
        x = self._norm(x)
        projected = self._project(x[:, 0])
        return FrameTokens(
            x.reshape(b, t, *x.shape[1:]), projected.reshape(b, t, projected.shape[-1])
        )

    # --------------------------------------------------------------------------- validation
    def _check_video(self, video: object) -> tuple[int, int]:
        x = check_tensor(video, "video", ndim=5, dims={2: 3}, layout="(B, T, 3, H, W)")
        if not x.is_floating_point():
            raise ValueError(f"video: expected a floating-point tensor, got dtype {x.dtype}")
        weight = self.patch_embed_module().weight
        if x.device != weight.device:
            raise ValueError(f"video: expected a tensor on {weight.device} (where the backbone's "
                             f"parameters are), got one on {x.device}")
        if tuple(x.shape[-2:]) != self.img_size:
            h, w = self.img_size
            raise ValueError(
                f"video: expected frames of size (H, W) = ({h}, {w}) (the backbone's img_size), "
                f"got shape {shape_str(x)}"
            )
        return x.shape[0], x.shape[1]  # SymInts under torch.export: batch and T stay dynamic

    def _camera_term(self, cameras: object, batch: int) -> torch.Tensor | None:
        if cameras is None:
            return None
        if self.camera_embed is None:
            raise ValueError(
                "cameras: expected None because the backbone was built with num_cameras=0, "
                f"got {type(cameras).__name__}"
                + (f" of shape {shape_str(cameras)}" if isinstance(cameras, torch.Tensor) else "")
            )
        c = check_tensor(cameras, "cameras", ndim=1, layout="(B,)")
        if c.is_floating_point() or c.is_complex() or c.dtype == torch.bool:
            raise ValueError(f"cameras: expected an integer tensor, got dtype {c.dtype}")
        if c.shape[0] != batch:
            raise ValueError(f"cameras: expected {batch} entries (one per clip), got {c.shape[0]}")
        if not is_compiling() and c.numel():
            lo, hi = int(c.min()), int(c.max())
            if lo < 0 or hi >= self.num_cameras:
                raise ValueError(
                    f"cameras: expected values in [0, {self.num_cameras}), "
                    f"got values in [{lo}, {hi}]"
                )
        return self.camera_embed[c.to(self.camera_embed.device)] * self.camera_coef

    def extra_repr(self) -> str:
        return (
            f"img_size={self.img_size}, patch_size={self.patch_size}, embed_dim={self.embed_dim}, "
            f"proj_dim={self.proj_dim}, num_cameras={self.num_cameras}, "
            f"camera_coef={self.camera_coef}"
        )

"""``"tiny"``: a small CLIP-style ViT in pure torch, for tests and the offline demo.

The architecture is OpenAI CLIP's visual tower (pre-norm blocks, ``ln_pre``, QuickGELU,
packed qkv attention, bias-free projection of [CLS]) at a small size, with timm's parameter
names (``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``norm_pre``,
``blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``, ``head``), so its
``state_dict`` is the canonical format of :mod:`xreid.backbones.weights` and it loads
OpenAI / open_clip / timm checkpoints of the same size exactly as the big backbones do.
Randomly initialised (timm's ViT init); imports nothing beyond torch.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from xreid.backbones.base import FrameEncoder

__all__ = ["QuickGELU", "TinyViT"]


# Equal to timm.layers.QuickGELU (tests/test_timm_equivalence.py); kept so that the tiny
# backbone imports torch only.
class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, the activation OpenAI CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _PatchEmbed(nn.Module):
    """(M, 3, H, W) -> (M, N, D) with a stride-p convolution (no bias, as CLIP's ``conv1``)."""

    def __init__(self, patch_size: tuple[int, int], embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class _Attention(nn.Module):
    """Multi-head self-attention with packed qkv (same maths as ``nn.MultiheadAttention``)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(
                f"num_heads: expected a divisor of embed_dim={dim}, got {num_heads}"
            )
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, n, d = x.shape
        qkv = self.qkv(x).reshape(m, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (M, heads, N, d_head)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(m, n, d))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = QuickGELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(FrameEncoder):
    """A small CLIP-style ViT frame encoder (pure torch).

    ``forward(video (B, T, 3, H, W), cameras=None) -> FrameTokens(tokens (B, T, 1+N, D),
    projected (B, T, proj_dim))``; see :class:`~xreid.backbones.base.FrameEncoder`.

    Args:
        img_size: (H, W), multiples of ``patch_size``.
        patch_size: square patch side (or (ph, pw)).
        embed_dim: D. depth: number of blocks. num_heads: attention heads.
        mlp_ratio: MLP hidden width / D. proj_dim: d, width of the projected [CLS].
        num_cameras, camera_coef: camera embedding (SIE), see ``build_backbone``.
    """

    def __init__(
        self,
        img_size: tuple[int, int] = (288, 144),
        *,
        patch_size: int | tuple[int, int] = 8,
        embed_dim: int = 96,
        depth: int = 3,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        proj_dim: int = 32,
        num_cameras: int = 0,
        camera_coef: float = 1.0,
    ) -> None:
        patch = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
        super().__init__(
            embed_dim=embed_dim,
            proj_dim=proj_dim,
            img_size=img_size,
            patch_size=patch,  # type: ignore[arg-type]
            num_cameras=num_cameras,
            camera_coef=camera_coef,
        )
        self.patch_embed = _PatchEmbed(self.patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.num_patches, embed_dim))
        self.norm_pre = nn.LayerNorm(embed_dim)
        self.blocks = nn.Sequential(
            *[_Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, proj_dim, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _embed(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(frames)
        cls = self.cls_token.to(x.dtype).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + self.pos_embed.to(x.dtype)

    def _norm_pre(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_pre(x)

    def _blocks(self) -> Iterable[nn.Module]:
        return self.blocks

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)

    def _project(self, cls: torch.Tensor) -> torch.Tensor:
        return self.head(cls)

    def patch_embed_module(self) -> nn.Module:
        return self.patch_embed.proj

    def _weight_names(self) -> set[str]:
        return {"cls_token", "pos_embed"}

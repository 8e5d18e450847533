"""``"clip-vit-b16"``: OpenAI CLIP ViT-B/16 visual tower through timm.

timm's ``vit_base_patch16_clip_quickgelu_224`` (QuickGELU, as OpenAI CLIP; the GELU variant
``vit_base_patch16_clip_224`` differs by ~0.03 on CLIP weights) built with ``pretrained=False``
at the requested ``img_size`` and ``num_classes = proj_dim``; its head is replaced by a
bias-free ``Linear(D, d)`` holding CLIP's projection (``head.weight = proj.T``). The timm model
is kept whole as ``self.vit`` (parameter names ``vit.<timm name>``); the forward pass uses its
modules (``patch_embed``, ``cls_token``, ``pos_embed``, ``norm_pre``, ``blocks``, ``norm``,
``head``) so that the camera embedding can be added to [CLS] between the positional
embedding and ``norm_pre``. timm is imported when the backbone is built, not before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from xreid.backbones.base import FrameEncoder

__all__ = ["TimmCLIPViT"]

_PREFIX = "vit."


def _import_timm() -> Any:
    try:
        import timm
    except ImportError as e:  # pragma: no cover - timm is a dependency
        raise ImportError(
            "the 'clip-vit-b16' backbone needs timm: pip install 'timm>=1.0.15'"
        ) from e
    return timm


class TimmCLIPViT(FrameEncoder):
    """CLIP ViT frame encoder on top of a timm ``VisionTransformer``.

    Args:
        img_size: (H, W), multiples of the patch size.
        model_name: timm architecture name (default the QuickGELU CLIP ViT-B/16).
        proj_dim: d, width of CLIP's projection (512 for ViT-B/16).
        num_cameras, camera_coef: camera embedding (SIE).
        **kwargs: passed to ``timm.create_model`` (e.g. ``depth``, ``embed_dim``,
            ``num_heads``, ``patch_size``, ``drop_path_rate``).
    """

    def __init__(
        self,
        img_size: tuple[int, int] = (288, 144),
        *,
        model_name: str = "vit_base_patch16_clip_quickgelu_224",
        proj_dim: int = 512,
        num_cameras: int = 0,
        camera_coef: float = 1.0,
        **kwargs: Any,
    ) -> None:
        timm = _import_timm()
        for key in ("pretrained", "num_classes", "img_size"):
            if key in kwargs:
                raise TypeError(f"build_backbone() got an unsupported keyword argument {key!r}")
        vit = timm.create_model(
            model_name, pretrained=False, img_size=tuple(img_size), num_classes=proj_dim, **kwargs
        )
        unsupported = {
            "class token": getattr(vit, "cls_token", None) is None,
            "register tokens": getattr(vit, "reg_token", None) is not None,
            "no_embed_class": bool(getattr(vit, "no_embed_class", False)),
            "dynamic_img_size": bool(getattr(vit, "dynamic_img_size", False)),
            "absolute pos_embed": getattr(vit, "pos_embed", None) is None,
        }
        bad = [k for k, v in unsupported.items() if v]
        if bad:
            raise ValueError(
                f"model_name: expected a ViT with one class token and an absolute positional "
                f"embedding covering it, got {model_name!r} with unsupported {bad}"
            )
        patch = tuple(vit.patch_embed.patch_size)
        embed_dim = int(vit.embed_dim)
        super().__init__(
            embed_dim=embed_dim,
            proj_dim=proj_dim,
            img_size=img_size,
            patch_size=patch,  # type: ignore[arg-type]
            num_cameras=num_cameras,
            camera_coef=camera_coef,
        )
        vit.head = nn.Linear(embed_dim, proj_dim, bias=False)
        nn.init.normal_(vit.head.weight, std=embed_dim**-0.5)
        self.vit = vit
        self.model_name = model_name

    def _embed(self, frames: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        x = vit.patch_embed(frames)
        cls = vit.cls_token.to(x.dtype).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + vit.pos_embed.to(x.dtype)
        return vit.patch_drop(vit.pos_drop(x))

    def _norm_pre(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.norm_pre(x)

    def _blocks(self) -> Iterable[nn.Module]:
        return self.vit.blocks

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.norm(x)

    def _project(self, cls: torch.Tensor) -> torch.Tensor:
        return self.vit.head(cls)

    def patch_embed_module(self) -> nn.Module:
        return self.vit.patch_embed.proj

    def state_to_canonical(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k.removeprefix(_PREFIX): v for k, v in state.items()}

    def state_from_canonical(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k if k == "camera_embed" else _PREFIX + k: v for k, v in state.items()}

    def _weight_names(self) -> set[str]:
        return {_PREFIX + "cls_token", _PREFIX + "pos_embed"}

"""``"clip-vit-b16-openclip"``: OpenAI CLIP ViT-B/16 visual tower through open_clip.

The vision tower of open_clip's ``ViT-B-16-quickgelu`` config is built alone (no text tower,
no pretrained download) with ``image_size = img_size`` and kept as ``self.visual``, so the
parameter names are OpenAI's (``visual.conv1.weight``, ``visual.class_embedding``, ...). The
forward pass runs its modules (``conv1``, ``class_embedding``, ``positional_embedding``,
``ln_pre``, ``transformer.resblocks``, ``ln_post``, ``proj``) so that the camera embedding can
be added to [CLS] before ``ln_pre``; the result equals ``"clip-vit-b16"`` (timm) for the same
weights. open_clip is imported when the backbone is built, not before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from xreid.backbones.base import FrameEncoder
from xreid.backbones.weights import canonical_to_openai, openai_to_canonical

__all__ = ["OpenCLIPViT"]

_PREFIX = "visual."
# uniform xreid names -> open_clip vision_cfg names
_RENAMES = {"depth": "layers", "embed_dim": "width"}


# Same shape as timm_vit's _import_timm on purpose: each backbone names its own dependency.
def _import_open_clip() -> Any:
    try:
        import open_clip
    except ImportError as e:  # pragma: no cover - open_clip is a dependency
        raise ImportError(
            "the 'clip-vit-b16-openclip' backbone needs open_clip: "
            "pip install 'open_clip_torch>=3,<4'"
        ) from e
    return open_clip


class OpenCLIPViT(FrameEncoder):
    """CLIP ViT frame encoder on top of open_clip's ``VisionTransformer``.

    Args:
        img_size: (H, W), multiples of the patch size.
        model_name: open_clip model config (default ``"ViT-B-16-quickgelu"``).
        proj_dim: d (CLIP ``embed_dim``); default from the config (512).
        num_cameras, camera_coef: camera embedding (SIE).
        **kwargs: overrides of the config's ``vision_cfg``; ``embed_dim``, ``depth``,
            ``num_heads`` are accepted as aliases of ``width``, ``layers`` and
            ``width // head_width``.
    """

    def __init__(
        self,
        img_size: tuple[int, int] = (288, 144),
        *,
        model_name: str = "ViT-B-16-quickgelu",
        proj_dim: int | None = None,
        num_cameras: int = 0,
        camera_coef: float = 1.0,
        **kwargs: Any,
    ) -> None:
        open_clip = _import_open_clip()
        from open_clip.model import CLIPVisionCfg, _build_vision_tower
        from open_clip.transformer import VisionTransformer

        cfg = open_clip.get_model_config(model_name)
        if cfg is None:
            raise ValueError(f"model_name: expected an open_clip model config, got {model_name!r}")
        vision = dict(cfg["vision_cfg"])
        num_heads = kwargs.pop("num_heads", None)
        for key, value in kwargs.items():
            vision[_RENAMES.get(key, key)] = value
        if num_heads is not None:
            vision["head_width"] = int(vision["width"]) // int(num_heads)
        vision["image_size"] = tuple(img_size)
        proj = int(cfg["embed_dim"] if proj_dim is None else proj_dim)
        visual = _build_vision_tower(
            proj, CLIPVisionCfg(**vision), quick_gelu=bool(cfg.get("quick_gelu", False))
        )
        if not isinstance(visual, VisionTransformer) or (
            visual.attn_pool is not None or visual.pool_type != "tok" or visual.final_ln_after_pool
        ):
            raise ValueError(
                f"model_name: expected a plain ViT config (class-token pooling, ln_post on "
                f"every token), got {model_name!r} with {vision}"
            )
        super().__init__(
            embed_dim=int(visual.conv1.out_channels),
            proj_dim=proj,
            img_size=img_size,
            patch_size=tuple(visual.patch_size),  # type: ignore[arg-type]
            num_cameras=num_cameras,
            camera_coef=camera_coef,
        )
        self.visual = visual
        self.model_name = model_name

    def _embed(self, frames: torch.Tensor) -> torch.Tensor:
        v = self.visual
        x = v.conv1(frames).flatten(2).transpose(1, 2)  # (M, N, D)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        return v.patch_dropout(x)

    def _norm_pre(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual.ln_pre(x)

    def _blocks(self) -> Iterable[nn.Module]:
        return self.visual.transformer.resblocks

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual.ln_post(x)

    def _project(self, cls: torch.Tensor) -> torch.Tensor:
        return cls @ self.visual.proj

    def patch_embed_module(self) -> nn.Module:
        return self.visual.conv1

    def state_to_canonical(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return openai_to_canonical(state, prefix=_PREFIX)

    def state_from_canonical(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return canonical_to_openai(state, prefix=_PREFIX)

    def _weight_names(self) -> set[str]:
        return {_PREFIX + "class_embedding", _PREFIX + "positional_embedding"}

"""The ``model`` section of a training configuration: X-ReID's head options plus the backbone.

:class:`ModelConfig` is :class:`~xreid.models.XReIDConfig` (every X-ReID head and memory
option, validated by it) with the options of the encoder built by
:func:`xreid.build_backbone`. :meth:`ModelConfig.heads` is the plain ``XReIDConfig`` the model
is built from, :meth:`ModelConfig.backbone_overrides` the backbone's size keywords.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from xreid._config import check_field_types, check_range, option
from xreid.models.xreid import XReIDConfig

__all__ = ["ModelConfig"]


@dataclass(frozen=True)
class ModelConfig(XReIDConfig):
    """X-ReID's head options (:class:`~xreid.models.XReIDConfig`) and the backbone's.

    Attributes:
        backbone: encoder name: tiny | clip-vit-b16 | clip-vit-b16-openclip (see
            ``xreid.list_backbones()``).
        weights: local file with the backbone's pre-trained weights (CLIP backbones need it).
        random_init: allow a CLIP backbone without weights (smoke tests only).
        patch_size: backbone patch size (default: the backbone's).
        embed_dim: backbone width D (default: the backbone's; CLIP must match the weights).
        depth: backbone blocks (default: the backbone's).
        backbone_heads: backbone attention heads (default: the backbone's).
        freeze_patch_embed: freeze the backbone's patch projection.
        grad_checkpointing: recompute backbone blocks in backward (less activation memory).
        camera_coef: scale of the camera embedding added to the [CLS] token (SIE; used with
            ``data.use_cameras``).
    """

    backbone: str = "tiny"
    weights: str | None = option(None, resumable=True)
    random_init: bool = False
    patch_size: int | None = None
    embed_dim: int | None = None
    depth: int | None = None
    backbone_heads: int | None = None
    freeze_patch_embed: bool = False
    grad_checkpointing: bool = False
    camera_coef: float = 1.0

    def heads(self) -> XReIDConfig:
        """The X-ReID head options alone (the keywords of :class:`xreid.XReID`)."""
        names = [f.name for f in dataclasses.fields(XReIDConfig)]
        return XReIDConfig(**{k: getattr(self, k) for k in names})

    def backbone_overrides(self) -> dict[str, Any]:
        """The backbone size options that are set, as keywords of :func:`xreid.build_backbone`."""
        keys = {"patch_size": "patch_size", "embed_dim": "embed_dim", "depth": "depth",
                "backbone_heads": "num_heads"}
        return {v: getattr(self, k) for k, v in keys.items() if getattr(self, k) is not None}

    def check_cii_changes_something(self) -> None:
        """Refuse (``ValueError``, one line) a CII that cannot change the trained model.

        CII's only loss is CMCL and inference never runs CII, so CII changes the model only
        through CMCL's gradient into its inputs. With ``detach_mii`` (the ``official``
        preset) the backbone tokens are constant to CII; without an MII branch the anchor is
        the detached sequence feature, so CMCL reaches nothing but CII itself (Table 5 row 4
        on ``official``): the run would equal the one without CII up to random numbers. (A
        CMCL weight of 0 with CII built is allowed: it is the control of
        ``docs/modules.md``.)
        """
        if not self.use_cii or not self.detach_mii or self.use_sii or self.use_lii:
            return
        raise ValueError(
            "use_cii: with detach_mii true and no MII branch, CMCL reaches only CII, which "
            "inference does not use, so CII changes nothing; set detach_mii false or turn on "
            "use_sii/use_lii")

    def validate(self) -> None:
        """``ValueError`` naming the first invalid option (head options included)."""
        from xreid.backbones import list_backbones

        check_field_types(self)
        super().validate()
        if self.backbone not in list_backbones():
            raise ValueError(f"backbone: expected one of {list(list_backbones())}, "
                             f"got {self.backbone!r}")
        if self.weights is not None and not self.weights:
            raise ValueError("weights: expected a file path or None, got ''")
        check_range("camera_coef", self.camera_coef, 0.0)
        for name in ("patch_size", "embed_dim", "depth", "backbone_heads"):
            check_range(name, getattr(self, name), 1, allow_none=True)
        self.check_cii_changes_something()
        dim, heads = self.embed_dim, self.backbone_heads
        if dim is not None and heads is not None and dim % heads:
            raise ValueError(f"embed_dim: expected a multiple of backbone_heads ({heads}), "
                             f"got {dim}")

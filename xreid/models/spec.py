"""A trained model's spec: everything needed to rebuild it without the training code.

``model_spec`` records the backbone (name and the keywords of :func:`xreid.build_backbone`,
the input size included; the patch size and the patch grid (H/p, W/p) for reference), the head
options (:class:`XReIDConfig`), the
number of identities C and of cameras; :func:`build_from_spec` rebuilds the module (random
weights, or ``weights`` for the backbone; a checkpoint's state dict is loaded afterwards).
Training (:func:`xreid.engine.build_model`) and :func:`xreid.load_model` both build through
:func:`build_from_spec`, and every training checkpoint stores the spec (``"model_spec"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from xreid.backbones.factory import build_backbone, default_patch_size
from xreid.models.config import ModelConfig
from xreid.models.xreid import XReID, XReIDConfig

__all__ = ["MODEL_SPEC_VERSION", "build_from_spec", "model_spec"]

MODEL_SPEC_VERSION = 1
"""``"version"`` of the specs :func:`model_spec` writes."""


def model_spec(model: ModelConfig, *, img_size: tuple[int, int], num_identities: int,
               num_cameras: int, use_cameras: bool) -> dict[str, Any]:
    """The spec of the model ``model`` describes for ``img_size`` (H, W) frames, C =
    ``num_identities`` and ``num_cameras`` cameras (a camera embedding when ``use_cameras``)."""
    options = {"img_size": [int(img_size[0]), int(img_size[1])],
               "num_cameras": int(num_cameras) if use_cameras else 0,
               "freeze_patch_embed": model.freeze_patch_embed,
               "grad_checkpointing": model.grad_checkpointing,
               "camera_coef": model.camera_coef,
               **model.backbone_overrides()}
    patch = model.patch_size or default_patch_size(model.backbone)
    grid = [int(img_size[0]) // patch, int(img_size[1]) // patch]
    return {"version": MODEL_SPEC_VERSION, "backbone": model.backbone,
            "backbone_options": options, "patch_size": patch, "patch_grid": grid,
            "heads": dataclasses.asdict(model.heads()),
            "num_identities": int(num_identities), "num_cameras": int(num_cameras)}


def build_from_spec(spec: Mapping[str, Any], *, weights: str | None = None) -> nn.Module:
    """The :class:`~xreid.XReID` of ``spec`` (backbone weights from ``weights`` if given)."""
    if not isinstance(spec, Mapping) or spec.get("version") != MODEL_SPEC_VERSION:
        version = spec.get("version") if isinstance(spec, Mapping) else None
        raise ValueError(f"model_spec: expected version {MODEL_SPEC_VERSION}, got {version!r}")
    options = dict(spec["backbone_options"])
    options["img_size"] = tuple(options["img_size"])
    backbone = build_backbone(spec["backbone"], weights=weights, **options)
    heads = XReIDConfig(**spec["heads"])
    return XReID(backbone, int(spec["num_identities"]), **dataclasses.asdict(heads))

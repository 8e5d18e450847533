"""Converting a training checkpoint of an earlier version to this version's contents.

An earlier checkpoint holds a flat ``"config"`` and no ``"model_spec"`` / ``"preprocessing"``;
:func:`upgrade_checkpoint` reads its configuration through
:meth:`~xreid.engine.TrainConfig.from_dict` (the flat names converted by
``xreid.engine.sections.FLAT_OPTIONS``), stores the nested configuration, the model spec
(:func:`xreid.models.spec.model_spec`) and the evaluation preprocessing
(:func:`xreid.data.preprocessing.evaluation_preprocessing`) and writes a new file; the weights,
optimiser state, counters and RNG state are kept as they are. ``xreid-convert --upgrade``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from xreid.data.preprocessing import evaluation_preprocessing
from xreid.engine.checkpoint import atomic_save, load_checkpoint
from xreid.engine.config import TrainConfig
from xreid.models.spec import model_spec

__all__ = ["upgrade_checkpoint"]


def _sizes(state: dict[str, Any]) -> tuple[int, int]:
    sd = state["model"]
    ids = state.get("num_identities", sd["classifier_clip.weight"].shape[0])
    cams = state.get("num_cameras")
    if cams is None:
        embed = sd.get("backbone.camera_embed")
        cams = embed.shape[0] if isinstance(embed, torch.Tensor) else 0
    return int(ids), int(cams)


def upgrade_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Write ``src`` with this version's configuration, model spec and preprocessing to
    ``dst`` (a new file; ``ValueError`` if it is ``src`` or exists)."""
    src, dst = Path(src), Path(dst)
    if dst.exists() and (dst.resolve() == src.resolve() or os.path.samefile(src, dst)):
        raise ValueError(f"output: {dst} is the input checkpoint; name a new file")
    if dst.exists():
        raise ValueError(f"output: {dst} exists; name a new file")
    state = dict(load_checkpoint(src))
    if not isinstance(state.get("config"), dict) or not isinstance(state.get("model"), dict):
        raise ValueError(f"checkpoint: {src} is not an xreid training checkpoint (no config "
                         "and model)")
    cfg = TrainConfig.from_dict(state["config"])
    num_ids, num_cams = _sizes(state)
    state["config"] = cfg.to_dict()
    state["num_identities"], state["num_cameras"] = num_ids, num_cams
    state["model_spec"] = model_spec(cfg.model, img_size=cfg.data.img_size,
                                     num_identities=num_ids, num_cameras=num_cams,
                                     use_cameras=cfg.data.use_cameras)
    state["preprocessing"] = evaluation_preprocessing(cfg.data).to_dict()
    atomic_save(state, dst)
    return dst

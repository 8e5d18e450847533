"""Rebuild a trained model and its preprocessing from a training checkpoint alone.

A training checkpoint (written by :class:`xreid.engine.Trainer`) is a dict with
``"format": "xreid-train-checkpoint-v1"``, ``"config"`` (``TrainConfig.to_dict()``), ``"model"``
(the state dict), ``"model_spec"`` (:func:`xreid.models.spec.model_spec`: backbone, heads,
identities, cameras) and ``"preprocessing"`` (:class:`Preprocessing`). The model is rebuilt
from the spec alone (:func:`xreid.models.spec.build_from_spec`); this module imports nothing
from the training code. A checkpoint of an earlier version (no spec) is refused with the
command that converts it (``xreid-convert --upgrade``).

Loading uses ``torch.load(..., weights_only=True)``: nothing in the file is executed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xreid._torch_utils import model_device
from xreid._validation import load_error_reason
from xreid.checkpoint_digest import verify_digest
from xreid.data.preprocessing import Preprocessing
from xreid.models.spec import build_from_spec

__all__ = ["CHECKPOINT_FORMAT", "LoadedModel", "Preprocessing", "file_sha256",
           "load_model"]

CHECKPOINT_FORMAT = "xreid-train-checkpoint-v1"


@dataclass
class LoadedModel:
    """What :func:`load_model` returns.

    Attributes:
        model: the :class:`xreid.XReID` in eval mode on ``device``; ``model.embed(video
            (B, T, 3, H, W)) -> (B, E)``.
        preprocessing: the :class:`Preprocessing` the model was evaluated with.
        config: the training configuration as a plain dict (``TrainConfig.to_dict()``).
        num_identities: C, training identities (classifier size).
        num_cameras: size of the camera embedding (0 when the model has none).
        path: the checkpoint file.
    """

    model: nn.Module
    preprocessing: Preprocessing
    config: dict[str, Any]
    num_identities: int
    num_cameras: int
    path: Path

    @property
    def embedding_dim(self) -> int:
        """E, the size of ``model.embed``'s output."""
        return int(self.model.embedding_dim)

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    @property
    def sha256(self) -> str:
        """SHA-256 (hex) of the checkpoint file's bytes: names the exact weights behind an
        embeddings file, a search result or an exported model."""
        return file_sha256(self.path)


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _not_a_checkpoint(path: Path, why: str) -> ValueError:
    return ValueError(f"checkpoint: {path} is not an xreid training checkpoint ({why})")


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded with ``weights_only=True`` and its schema checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no such file {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # foreign pickle, corrupt zip, non-tensor objects
        blocked, reason = load_error_reason(exc)  # never torch's "weights_only=False" advice
        reason = re.sub(r"\x1b\[[0-9;]*m", "", reason)
        what = ("holds Python objects other than tensors and plain values; nothing in it was "
                "executed" if blocked else "cannot be read")
        raise _not_a_checkpoint(path, f"{what}: {reason}") from exc
    if not isinstance(state, dict):
        raise _not_a_checkpoint(path, f"expected a dict, got {type(state).__name__}")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise _not_a_checkpoint(
            path, f"expected format {CHECKPOINT_FORMAT!r}, got {state.get('format')!r}")
    for key, kind in (("config", dict), ("model", dict)):
        if not isinstance(state.get(key), kind):
            raise _not_a_checkpoint(path, f"no {key!r} dict")
    verify_digest(state, path)
    return state


def infer_sizes(state_dict: dict[str, torch.Tensor]) -> tuple[int, int]:
    """``(num_identities, num_cameras)`` from the shapes of an :class:`xreid.XReID` state dict."""
    weight = state_dict.get("classifier_clip.weight")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError("model: expected a 'classifier_clip.weight' (C, D + d) entry to infer "
                         "the number of identities, got none")
    cams = state_dict.get("backbone.camera_embed")
    num_cameras = int(cams.shape[0]) if isinstance(cams, torch.Tensor) else 0
    return int(weight.shape[0]), num_cameras


def load_model(path: str | Path, device: str | torch.device | None = None) -> LoadedModel:
    """Rebuild the trained model and its preprocessing from a training checkpoint.

    Args:
        path: a ``checkpoint.pt`` written by :class:`xreid.engine.Trainer`.
        device: where the model goes (``None``: CUDA if available, else CPU).

    Returns:
        :class:`LoadedModel` with the model in eval mode.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an xreid training checkpoint, or its weights do not fit
            the model its configuration describes.
    """
    path = Path(path)
    state = read_training_checkpoint(path)
    if not isinstance(state.get("model_spec"), dict) or not isinstance(
            state.get("preprocessing"), dict):
        raise ValueError(
            f"checkpoint: {path} was written by an earlier xreid version (no model_spec); "
            f"convert it once with `xreid-convert --upgrade {path} NEW.pt` and load NEW.pt")
    try:
        pre = Preprocessing.from_dict(state["preprocessing"])
        model = build_from_spec(state["model_spec"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _not_a_checkpoint(path, f"bad model_spec/preprocessing: {exc}") from exc
    sd = state["model"]
    num_ids = int(state["model_spec"]["num_identities"])
    num_cams = int(state["model_spec"]["num_cameras"])
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = " ".join(str(exc).split())[:300]
        raise ValueError(f"checkpoint: {path} does not match the model its config describes: "
                         f"{detail}") from exc
    if missing or unexpected:
        raise ValueError(
            f"checkpoint: {path} does not match the model its config describes; missing keys "
            f"{list(missing)[:5]}, unexpected keys {list(unexpected)[:5]}"
        )
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device).eval()
    return LoadedModel(model, pre, dict(state["config"]), num_ids, num_cams, path)

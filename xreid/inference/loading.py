"""Rebuild a trained model and its preprocessing from a training checkpoint alone.

A training checkpoint (written by :class:`xreid.engine.Trainer`) is a dict with
``"format": "xreid-train-checkpoint-v1"``, ``"config"`` (``TrainConfig.to_dict()``), ``"model"``
(the state dict) and, in newer files, ``"num_identities"`` / ``"num_cameras"``. Older files
without the two integers are handled by reading them off the state-dict shapes
(``classifier_clip.weight`` is ``(C, D + d)``, ``backbone.camera_embed`` is ``(cameras, D)``).

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

__all__ = ["CHECKPOINT_FORMAT", "LoadedModel", "Preprocessing", "file_sha256",
           "load_model"]

CHECKPOINT_FORMAT = "xreid-train-checkpoint-v1"


@dataclass(frozen=True)
class Preprocessing:
    """How clips must be prepared for a trained model (what evaluation did during training).

    Attributes:
        img_size: (height, width) every frame is resized to.
        mean, std: per-channel normalisation of ``[0, 1]`` RGB values.
        num_frames: T, frames per clip.
        sampling: frame sampling mode of :func:`xreid.data.sample_frame_indices` used at test
            time (``"chunk_first"`` unless the run chose otherwise).
        normalization: the name of the normalisation (``"imagenet"`` or ``"clip"``).
    """

    img_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_frames: int
    sampling: str
    normalization: str

    def transform(self) -> Any:
        """The evaluation :class:`xreid.data.ClipTransform` (resize + normalise)."""
        from xreid.data.transforms import ClipTransform

        return ClipTransform(self.img_size, train=False, normalization=(self.mean, self.std))

    def to_dict(self) -> dict[str, Any]:
        return {"img_size": list(self.img_size), "mean": list(self.mean), "std": list(self.std),
                "num_frames": self.num_frames, "sampling": self.sampling,
                "normalization": self.normalization}


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
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise _not_a_checkpoint(path, f"cannot be read with weights_only=True: {first}") \
            from exc
    if not isinstance(state, dict):
        raise _not_a_checkpoint(path, f"expected a dict, got {type(state).__name__}")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise _not_a_checkpoint(
            path, f"expected format {CHECKPOINT_FORMAT!r}, got {state.get('format')!r}")
    for key, kind in (("config", dict), ("model", dict)):
        if not isinstance(state.get(key), kind):
            raise _not_a_checkpoint(path, f"no {key!r} dict")
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
    from xreid.data.transforms import resolve_normalization
    from xreid.engine.config import TrainConfig
    from xreid.engine.trainer import build_model

    path = Path(path)
    state = read_training_checkpoint(path)
    values = dict(state["config"])
    values["weights"] = None  # the pre-trained file is not needed: the state dict has it all
    try:
        cfg = TrainConfig.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise _not_a_checkpoint(path, f"bad config: {exc}") from exc
    sd = state["model"]
    inferred = infer_sizes(sd)
    num_ids = int(state.get("num_identities", inferred[0]))
    num_cams = int(state.get("num_cameras", inferred[1]))
    model = build_model(cfg, num_ids, num_cams)
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
    mean, std = resolve_normalization(cfg.normalization)
    pre = Preprocessing(
        img_size=(int(cfg.img_size[0]), int(cfg.img_size[1])),
        mean=tuple(float(m) for m in mean),  # type: ignore[arg-type]
        std=tuple(float(s) for s in std),  # type: ignore[arg-type]
        num_frames=int(cfg.num_frames),
        sampling=cfg.eval_sampling,
        normalization=cfg.normalization,
    )
    return LoadedModel(model, pre, cfg.to_dict(), num_ids, num_cams, path)

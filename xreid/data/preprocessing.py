"""How a trained model's clips are prepared at evaluation and inference time.

:class:`Preprocessing` (frame size, normalisation mean/std, T frames, the test sampling mode)
is built by :func:`evaluation_preprocessing` from a run's :class:`DataConfig`; training
evaluates with it, every training checkpoint stores it (``"preprocessing"``), and
:func:`xreid.load_model`, ``xreid embed``, ``xreid export`` and the pictures read it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xreid.data.config import DataConfig
from xreid.data.transforms import ClipTransform, resolve_normalization

__all__ = ["Preprocessing", "evaluation_preprocessing"]


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

    def transform(self) -> ClipTransform:
        """The evaluation :class:`xreid.data.ClipTransform` (resize + normalise)."""
        return ClipTransform(self.img_size, train=False, normalization=(self.mean, self.std))

    def to_dict(self) -> dict[str, Any]:
        return {"img_size": list(self.img_size), "mean": list(self.mean), "std": list(self.std),
                "num_frames": self.num_frames, "sampling": self.sampling,
                "normalization": self.normalization}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Preprocessing:
        """The inverse of :meth:`to_dict`."""
        return cls(img_size=(int(values["img_size"][0]), int(values["img_size"][1])),
                   mean=tuple(float(m) for m in values["mean"]),  # type: ignore[arg-type]
                   std=tuple(float(s) for s in values["std"]),  # type: ignore[arg-type]
                   num_frames=int(values["num_frames"]), sampling=str(values["sampling"]),
                   normalization=str(values["normalization"]))


def evaluation_preprocessing(data: DataConfig) -> Preprocessing:
    """The evaluation preprocessing of a run's ``data`` section."""
    mean, std = resolve_normalization(data.normalization)
    return Preprocessing(
        img_size=(int(data.img_size[0]), int(data.img_size[1])),
        mean=tuple(float(m) for m in mean),  # type: ignore[arg-type]
        std=tuple(float(s) for s in std),  # type: ignore[arg-type]
        num_frames=int(data.num_frames),
        sampling=data.eval_sampling,
        normalization=data.normalization,
    )

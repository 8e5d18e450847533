"""The :class:`Tracklet` record shared by every reader, and the data error types.

Error convention for the whole of :mod:`xreid.data`:

* :class:`DataError` (a ``ValueError``) for anything malformed: a bad line (the message names
  the file and the 1-based line number), an identity missing a modality (the identity is
  named), an image that cannot be decoded (the file is named), a bad argument.
* :class:`DataFileNotFoundError` (a ``DataError`` *and* a ``FileNotFoundError``) for a
  missing root folder, metadata file or frame; the message names the path.

Catching ``ValueError`` therefore catches every data error, and catching
``FileNotFoundError``/``OSError`` catches the missing-path ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from xreid.constants import INFRARED, VISIBLE

__all__ = ["DataError", "DataFileNotFoundError", "Tracklet", "modality_name"]


class DataError(ValueError):
    """A dataset file, line, identity or image is malformed (the message says where)."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A dataset root, metadata file or frame image does not exist (the path is named)."""


def modality_name(modality: int) -> str:
    """``"visible"`` for :data:`xreid.VISIBLE`, ``"infrared"`` for :data:`xreid.INFRARED`."""
    if modality == VISIBLE:
        return "visible"
    if modality == INFRARED:
        return "infrared"
    raise ValueError(f"modality: expected {VISIBLE} (visible) or {INFRARED} (infrared), "
                     f"got {modality!r}")


@dataclass(frozen=True)
class Tracklet:
    """One tracklet: an ordered sequence of frame images of one person in one camera.

    Attributes:
        frames: image paths in temporal order (at least one).
        pid: the person id exactly as written in the dataset files.
        camera: 0-based camera index (HITSZ-VCM ``D3`` -> 2; BUPTCampus ``G25`` -> 1).
        modality: :data:`xreid.VISIBLE` (0) or :data:`xreid.INFRARED` (1).
        label: training class index in ``0..C-1`` (ascending pid order) for training
            tracklets, ``-1`` for query/gallery tracklets.
    """

    frames: tuple[str, ...]
    pid: int
    camera: int
    modality: int
    label: int = -1

    def __post_init__(self) -> None:
        if not isinstance(self.frames, tuple):
            object.__setattr__(self, "frames", tuple(self.frames))
        if len(self.frames) == 0:
            raise DataError(f"Tracklet(pid={self.pid}): frames: expected at least one frame, "
                            "got none")
        if self.modality not in (VISIBLE, INFRARED):
            raise DataError(f"Tracklet(pid={self.pid}): modality: expected {VISIBLE} or "
                            f"{INFRARED}, got {self.modality!r}")
        if self.camera < 0:
            raise DataError(f"Tracklet(pid={self.pid}): camera: expected a 0-based index, "
                            f"got {self.camera}")
        if self.label < -1:
            raise DataError(f"Tracklet(pid={self.pid}): label: expected -1 or a class index, "
                            f"got {self.label}")

    @property
    def num_frames(self) -> int:
        """Number of frames in the tracklet."""
        return len(self.frames)

    @property
    def is_train(self) -> bool:
        """True for a training tracklet (``label >= 0``)."""
        return self.label >= 0

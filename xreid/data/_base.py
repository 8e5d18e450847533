"""Behaviour shared by the dataset readers: direction checks and the public accessors."""

from __future__ import annotations

from typing import ClassVar

from xreid.constants import DIRECTIONS
from xreid.data.tracklet import Tracklet

__all__ = ["DIRECTIONS", "VVIDataset", "check_direction"]



def check_direction(direction: object) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")
    return str(direction)


class VVIDataset:
    """Base of the readers: training tracklets plus a query/gallery split per direction.

    Subclasses fill ``_train``, ``_query`` and ``_gallery`` (the latter two keyed by
    direction) and set ``num_cameras``.
    """

    name: ClassVar[str] = ""
    eval_remove_same_camera: ClassVar[bool] = True
    """Whether the dataset's official protocol removes same-pid-same-camera gallery entries."""

    num_cameras: int
    _train: list[Tracklet]
    _query: dict[str, list[Tracklet]]
    _gallery: dict[str, list[Tracklet]]

    @property
    def train(self) -> list[Tracklet]:
        """Training tracklets of both modalities (a new list on every access)."""
        return list(self._train)

    def query(self, direction: str) -> list[Tracklet]:
        """Query tracklets for ``direction`` (``"i2v"`` or ``"v2i"``)."""
        return list(self._query[check_direction(direction)])

    def gallery(self, direction: str) -> list[Tracklet]:
        """Gallery tracklets for ``direction`` (``"i2v"`` or ``"v2i"``)."""
        return list(self._gallery[check_direction(direction)])

    @property
    def num_train_identities(self) -> int:
        """Number C of training identities (labels are ``0..C-1``)."""
        return len({t.label for t in self._train})

    @property
    def num_train_tracklets(self) -> int:
        return len(self._train)

    def summary(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.summary()})"

"""Hold training identities out as a validation split shaped like the test protocol.

``hold_out_identities(reader, num_ids, seed) -> (train_reader, val_reader)``:

* ``num_ids`` identities are drawn (``numpy.random.default_rng(seed)``, without replacement)
  among the training identities that have both modalities and at least one infrared/visible
  pair of tracklets in *different* cameras (so every validation query can have a match);
* ``train_reader`` keeps every other training tracklet, relabelled ``0..C'-1`` in ascending
  pid order, and the reader's own test query/gallery (untouched);
* ``val_reader``'s query/gallery per direction are the held-out tracklets:
  I2V query = their infrared tracklets, gallery = their visible ones; V2I the reverse.
  The same-identity same-camera gallery entries of a query are always removed
  (``eval_remove_same_camera = True``): HITSZ-VCM's rule, and for BUPTCampus-style aligned
  pairs it removes the query's own pixel-aligned counterpart, as BUPTCampus' test lists do.

Both readers share the original reader's ``num_cameras`` and are plain
:class:`~xreid.data._base.VVIDataset` objects, so every function that takes a reader
(:func:`xreid.metrics.evaluate_model`, :func:`xreid.metrics.pixel_baseline`, the trainer)
takes them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from xreid._validation import check_int
from xreid.constants import INFRARED, VISIBLE
from xreid.data._base import VVIDataset
from xreid.data.tracklet import DataError, Tracklet

__all__ = ["HeldOutSplit", "hold_out_identities"]


class HeldOutSplit(VVIDataset):
    """A reader view: training tracklets and a query/gallery per direction (see module)."""

    name = "held-out"

    def __init__(self, train: list[Tracklet], query: dict[str, list[Tracklet]],
                 gallery: dict[str, list[Tracklet]], num_cameras: int, *,
                 remove_same_camera: bool, description: str) -> None:
        self._train = train
        self._query = query
        self._gallery = gallery
        self.num_cameras = num_cameras
        self.eval_remove_same_camera = remove_same_camera  # type: ignore[misc]
        self.description = description

    def summary(self) -> str:
        n = {d: (len(self._query[d]), len(self._gallery[d])) for d in self._query}
        return (f"{self.description}: {self.num_train_identities} training identities, "
                + ", ".join(f"{d} {q} queries x {g} gallery" for d, (q, g) in n.items()))


def _eligible(tracklets: list[Tracklet]) -> bool:
    ir = {t.camera for t in tracklets if t.modality == INFRARED}
    vis = {t.camera for t in tracklets if t.modality == VISIBLE}
    return bool(ir and vis) and any(a != b for a in ir for b in vis)


def hold_out_identities(reader: Any, num_ids: int, seed: int = 0
                        ) -> tuple[HeldOutSplit, HeldOutSplit]:
    """Split ``reader``'s training identities into training and validation (see module).

    Raises:
        ValueError: ``num_ids`` is not a positive integer, or fewer than ``num_ids`` + 2
            training identities are eligible (both modalities, two cameras), or holding them
            out would leave fewer than 2 training identities.
    """
    check_int(num_ids, "val_ids", minimum=1)
    by_pid: dict[int, list[Tracklet]] = {}
    for t in reader.train:
        by_pid.setdefault(t.pid, []).append(t)
    eligible = sorted(p for p, ts in by_pid.items() if _eligible(ts))
    if len(eligible) < num_ids or len(by_pid) - num_ids < 2:
        raise DataError(
            f"val_ids: expected at most {min(len(eligible), len(by_pid) - 2)} (the training "
            f"identities with both modalities in two cameras, leaving two to train on), "
            f"got {num_ids}")
    rng = np.random.default_rng(seed)
    held = {int(p) for p in rng.choice(np.array(eligible), num_ids, replace=False)}
    kept = sorted(p for p in by_pid if p not in held)
    label = {p: i for i, p in enumerate(kept)}
    train = [dataclasses.replace(t, label=label[t.pid]) for t in reader.train
             if t.pid not in held]
    val = [dataclasses.replace(t, label=-1) for t in reader.train if t.pid in held]
    ir = [t for t in val if t.modality == INFRARED]
    vis = [t for t in val if t.modality == VISIBLE]
    train_view = HeldOutSplit(
        train, {d: reader.query(d) for d in ("i2v", "v2i")},
        {d: reader.gallery(d) for d in ("i2v", "v2i")}, reader.num_cameras,
        remove_same_camera=reader.eval_remove_same_camera,
        description=f"{type(reader).__name__} minus {num_ids} validation identities")
    val_view = HeldOutSplit(
        train, {"i2v": ir, "v2i": vis}, {"i2v": vis, "v2i": ir}, reader.num_cameras,
        remove_same_camera=True,
        description=f"validation split of {type(reader).__name__} ({num_ids} identities, "
                    f"seed {seed})")
    return train_view, val_view

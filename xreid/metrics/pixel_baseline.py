"""A trivial baseline: rank tracklets by their raw greyscale pixels.

Every trained model should beat this ranking; the demo and the study runner report it next to
the untrained model (``metrics.json["baselines"]["pixels"]``) so that a user sees at once
whether training learned more than "the same colours in the same place".

Feature of one tracklet (shape ``(h * w,)``): up to ``num_frames`` frames, evenly spaced over
the tracklet (all frames when it has fewer, or when ``num_frames=None``), each converted to
greyscale (PIL ``"L"``: ITU-R 601 luma), resized to ``size = (h, w)`` with bilinear
filtering, scaled to ``[0, 1]``, then averaged over the frames. Tracklets are ranked by cosine
distance with exactly the protocol of :func:`xreid.metrics.evaluate_model` (the reader's
``eval_remove_same_camera``, the same CMC / mAP / mINP), so the numbers are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from xreid._validation import check_positive_int
from xreid.metrics.distance import compute_distance
from xreid.metrics.runner import (
    DirectionMetrics,
    EvaluationResult,
    check_directions,
    gather_splits,
    rank_direction,
)

__all__ = ["pixel_baseline", "pixel_features"]


def _frame_positions(length: int, num_frames: int | None) -> list[int]:
    if num_frames is None or length <= num_frames:
        return list(range(length))
    # evenly spaced, first and last frame included when num_frames > 1
    return np.linspace(0, length - 1, num_frames).round().astype(int).tolist()


def pixel_features(
    tracklets: Sequence[Any],
    *,
    size: tuple[int, int] = (32, 16),
    num_frames: int | None = 8,
) -> torch.Tensor:
    """Mean greyscale frame of each tracklet, flattened: ``(len(tracklets), h * w)`` float64.

    Args:
        tracklets: objects with a ``frames`` sequence of image paths (:class:`xreid.data.
            Tracklet`).
        size: (height, width) each frame is resized to.
        num_frames: frames averaged per tracklet, evenly spaced; ``None`` for all.
    """
    from PIL import Image  # imported here: keeps ``xreid.metrics`` light

    if (len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                              for v in size)):
        raise ValueError(f"size: expected (height, width) of positive ints, got {size!r}")
    if num_frames is not None:
        check_positive_int(num_frames, "num_frames")
    h, w = size
    out = np.zeros((len(tracklets), h * w), dtype=np.float64)
    for row, tracklet in enumerate(tracklets):
        frames = list(tracklet.frames)
        if not frames:
            raise ValueError(f"tracklets[{row}]: expected at least one frame, got none")
        acc = np.zeros(h * w, dtype=np.float64)
        positions = _frame_positions(len(frames), num_frames)
        for i in positions:
            path = frames[i]
            try:
                with Image.open(path) as img:
                    grey = img.convert("L").resize((w, h), Image.BILINEAR)
            except (OSError, ValueError) as exc:
                raise ValueError(f"pixel_baseline: cannot read image {path}: {exc}") from exc
            acc += np.asarray(grey, dtype=np.float64).reshape(-1) / 255.0
        out[row] = acc / len(positions)
    return torch.from_numpy(out)


def pixel_baseline(
    reader: Any,
    directions: Sequence[str] | str = ("i2v", "v2i"),
    *,
    size: tuple[int, int] = (32, 16),
    num_frames: int | None = 8,
    remove_same_camera: bool | None = None,
    max_rank: int = 20,
) -> EvaluationResult:
    """Rank the test tracklets of ``reader`` by raw pixels (cosine of mean greyscale frames).

    Args:
        reader: a dataset reader with ``query(direction)`` / ``gallery(direction)`` (as for
            :func:`xreid.metrics.evaluate_model`).
        directions: any of ``"i2v"``, ``"v2i"``.
        size, num_frames: see :func:`pixel_features`.
        remove_same_camera: None = the reader's protocol (``eval_remove_same_camera``).
        max_rank: length of the reported CMC.

    Returns:
        :class:`EvaluationResult` with ``protocol["method"] == "pixels"``.
    """
    dirs = check_directions(directions)
    check_positive_int(max_rank, "max_rank")
    splits, row_of = gather_splits(reader, dirs, "reader")
    if remove_same_camera is None:
        remove_same_camera = bool(getattr(reader, "eval_remove_same_camera", True))
    feats = pixel_features(list(row_of), size=size, num_frames=num_frames)
    results: dict[str, DirectionMetrics] = {}
    for d, (q, g) in splits.items():
        qf = feats[torch.tensor([row_of[t] for t in q], dtype=torch.long)]
        gf = feats[torch.tensor([row_of[t] for t in g], dtype=torch.long)]
        results[d] = rank_direction(compute_distance(qf, gf, "cosine", normalize=True), q, g,
                                    remove_same_camera=remove_same_camera, max_rank=max_rank)
    protocol = {
        "method": "pixels", "dataset": type(reader).__name__, "size": list(size),
        "num_frames": num_frames, "metric": "cosine", "remove_same_camera": remove_same_camera,
        "max_rank": max_rank,
    }
    return EvaluationResult(results, protocol)

"""Small file helpers shared by the readers: existence checks, line reading, frame checks."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from xreid.constants import INFRARED, VISIBLE
from xreid.data.tracklet import DataError, DataFileNotFoundError, Tracklet

__all__ = ["check_both_modalities", "check_frames", "read_lines", "relabel", "require_dir",
           "require_file", "split_stats"]


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        kind = "is not a folder" if path.exists() else "does not exist"
        raise DataFileNotFoundError(f"{what}: {path} {kind}")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataFileNotFoundError(f"{what}: file {path} does not exist")
    return path


def read_lines(path: Path, *, allow_blank: bool = False) -> list[str]:
    """Return the lines of a text file without line endings; trailing blank lines dropped.

    Unless ``allow_blank``, a blank line before the last non-blank one is an error (it would
    shift the 1-based line numbers that other files refer to).
    """
    require_file(path, "metadata")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err})") from err
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for i, line in enumerate(lines):
        if not allow_blank and not line.strip():
            raise DataError(f"{path}:{i + 1}: blank line inside the file")
    return lines


def check_frames(tracklets: Iterable[Tracklet], *, verify_files: bool) -> None:
    """Check that frames exist: the first frame of every tracklet, or every frame.

    Raises :class:`DataFileNotFoundError` naming the first missing path (in tracklet order).
    """
    for t in tracklets:
        frames: Sequence[str] = t.frames if verify_files else t.frames[:1]
        for f in frames:
            if not os.path.isfile(f):
                raise DataFileNotFoundError(
                    f"frame file {f} does not exist (pid {t.pid}, camera {t.camera}, "
                    f"{'infrared' if t.modality == INFRARED else 'visible'} tracklet)"
                )


def split_stats(tracklets: Sequence[Tracklet]) -> str:
    """``"<ids> ids, <n> tracklets (<v> vis/<i> ir), <f> frames"``."""
    ids = len({t.pid for t in tracklets})
    vis = sum(t.modality == VISIBLE for t in tracklets)
    frames = sum(len(t.frames) for t in tracklets)
    return (f"{ids} ids, {len(tracklets)} tracklets ({vis} vis/{len(tracklets) - vis} ir), "
            f"{frames} frames")


def check_both_modalities(train: Sequence[Tracklet], dataset: str) -> None:
    """Raise naming the first training identity that lacks a visible or infrared tracklet."""
    seen: dict[int, set[int]] = {}
    for t in train:
        seen.setdefault(t.pid, set()).add(t.modality)
    for pid in sorted(seen):
        if len(seen[pid]) < 2:
            missing = "infrared" if VISIBLE in seen[pid] else "visible"
            raise DataError(
                f"{dataset}: training identity pid {pid} has no {missing} tracklet (after "
                "filtering); every training identity needs both modalities"
            )


def relabel(train: list[Tracklet]) -> tuple[list[Tracklet], dict[int, int]]:
    """Assign labels 0..C-1 in ascending numeric pid order; returns (tracklets, pid->label)."""
    pid2label = {pid: i for i, pid in enumerate(sorted({t.pid for t in train}))}
    out = [Tracklet(t.frames, t.pid, t.camera, t.modality, pid2label[t.pid]) for t in train]
    return out, pid2label

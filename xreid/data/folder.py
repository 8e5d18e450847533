"""Your own tracklets: a folder of frame folders or video files, with optional labels.

Layouts under ``ROOT`` (both may be mixed):

* ``ROOT/<tracklet>/*.jpg|*.jpeg|*.png``: one folder per tracklet; frames in natural order
  (``frame2`` before ``frame10``).
* ``ROOT/<tracklet>.mp4|.avi|.mkv``: one video file per tracklet, decoded with PyAV (the
  ``xreid[video]`` extra).

An optional ``ROOT/labels.csv`` with the header ``tracklet,pid,camera,modality`` (any subset
after ``tracklet``, plus an optional ``split`` column) gives identities, 0-based cameras and
modalities (``visible``/``infrared``, also ``rgb``/``ir``/``0``/``1``); an empty cell means
unknown. Tracklets not listed have unknown pid and camera.

:class:`TrackletFolder` indexes the folder, :class:`TrackletClipDataset` turns its entries
into clips ``(T, 3, H, W)`` exactly as the evaluation does, and :class:`FolderVVI` is a
training reader over labelled frame folders (``split`` column) usable as
``--dataset folder --root ROOT`` in ``examples/train_vvi.py``.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from xreid.constants import INFRARED, VISIBLE
from xreid.data._base import DIRECTIONS, VVIDataset
from xreid.data._io import check_both_modalities, relabel, split_stats
from xreid.data.dataset import VideoClipDataset
from xreid.data.sampling import SAMPLING_MODES, sample_frame_indices
from xreid.data.tracklet import DataError, DataFileNotFoundError, Tracklet

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "FolderTracklet",
    "FolderVVI",
    "TrackletClipDataset",
    "TrackletFolder",
    "collate_clips",
    "count_video_frames",
    "natural_key",
    "parse_modality",
    "read_video_frames",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mkv")
LABEL_COLUMNS: tuple[str, ...] = ("tracklet", "pid", "camera", "modality", "split")
SPLITS: tuple[str, ...] = ("train", "test", "query", "gallery")
_MODALITY_NAMES = {"visible": VISIBLE, "rgb": VISIBLE, "vis": VISIBLE, "0": VISIBLE,
                   "infrared": INFRARED, "ir": INFRARED, "thermal": INFRARED, "1": INFRARED}


def natural_key(name: str) -> list[Any]:
    """Sort key that orders digit runs numerically: ``frame2`` < ``frame10``."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def parse_modality(value: object, what: str = "modality") -> int:
    """``"visible"``/``"rgb"``/``0`` -> :data:`xreid.VISIBLE`; ``"infrared"``/``"ir"``/``1``
    -> :data:`xreid.INFRARED`."""
    key = str(value).strip().lower()
    if key not in _MODALITY_NAMES:
        raise DataError(f"{what}: expected visible or infrared, got {value!r}")
    return _MODALITY_NAMES[key]


def _require_av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise ImportError("reading video files needs PyAV: pip install 'xreid[video]'") from exc
    return av


def count_video_frames(path: str | Path) -> int:
    """Number of decodable video frames of ``path`` (decodes the stream once)."""
    return len(read_video_frames(path, count_only=True))


def read_video_frames(path: str | Path, indices: Sequence[int] | None = None, *,
                      count_only: bool = False) -> list[np.ndarray]:
    """Decode a video file into RGB uint8 frames ``(H, W, 3)``.

    Args:
        path: the video file.
        indices: keep only these frame indices (any order, repeats allowed; the result
            follows ``indices``); ``None`` keeps every frame.
        count_only: return a list of placeholders (one per frame) without converting frames.

    Raises:
        ImportError: PyAV is missing (names the ``xreid[video]`` extra).
        DataFileNotFoundError: no such file.
        DataError: the file cannot be decoded or has no video frame (file named).
    """
    av = _require_av()
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFoundError(f"video file {path} does not exist")
    wanted = None if indices is None else set(indices)
    kept: dict[int, np.ndarray] = {}
    n = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"cannot decode video {path}: no video stream")
            for frame in container.decode(video=0):
                if count_only:
                    kept[n] = np.empty(0)
                elif wanted is None or n in wanted:
                    kept[n] = frame.to_ndarray(format="rgb24")
                n += 1
    except DataError:
        raise
    except Exception as exc:  # av.error.* (InvalidDataError, ...) and friends
        raise DataError(f"cannot decode video {path}: {exc}") from exc
    if n == 0:
        raise DataError(f"cannot decode video {path}: no video frame")
    if indices is None:
        return [kept[i] for i in range(n)]
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise DataError(f"video {path}: frame indices {bad[:5]} out of range for {n} frames")
    return [kept[i] for i in indices]


@dataclass(frozen=True)
class FolderTracklet:
    """One entry of a :class:`TrackletFolder`.

    Attributes:
        name: the folder or file name (without the video extension).
        source: the frame folder or the video file.
        kind: ``"frames"`` or ``"video"``.
        frames: frame image paths in natural order (empty for videos).
        pid: identity from ``labels.csv``, ``-1`` when unknown.
        camera: 0-based camera from ``labels.csv``, ``-1`` when unknown.
        modality: :data:`xreid.VISIBLE` or :data:`xreid.INFRARED`.
        split: the ``split`` column (``""`` when absent).
    """

    name: str
    source: str
    kind: str
    frames: tuple[str, ...]
    pid: int
    camera: int
    modality: int
    split: str = ""


def _warn_or_raise(message: str, skip_bad: bool) -> None:
    if not skip_bad:
        raise DataError(message)
    warnings.warn(f"skipped: {message}", RuntimeWarning, stacklevel=3)


def _read_labels(path: Path) -> dict[str, dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from exc
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise DataError(f"{path}: empty file; expected the header tracklet,pid,camera,modality")
    header = [h.strip().lower() for h in rows[0]]
    if not header or header[0] != "tracklet":
        raise DataError(f"{path}:1: expected a header starting with 'tracklet' "
                        f"(tracklet,pid,camera,modality), got {rows[0]}")
    unknown = [h for h in header if h not in LABEL_COLUMNS]
    if unknown:
        raise DataError(f"{path}:1: unknown column(s) {unknown}; expected {list(LABEL_COLUMNS)}")
    out: dict[str, dict[str, str]] = {}
    for i, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}:{i}: expected {len(header)} fields, got {len(row)}")
        rec = {h: c.strip() for h, c in zip(header, row)}
        name = rec["tracklet"]
        if name in out:
            raise DataError(f"{path}:{i}: tracklet {name!r} listed twice")
        for key in ("pid", "camera"):
            if rec.get(key):
                try:
                    value = int(rec[key])
                except ValueError:
                    raise DataError(f"{path}:{i}: {key}: expected an integer, got "
                                    f"{rec[key]!r}") from None
                if value < 0:
                    raise DataError(f"{path}:{i}: {key}: expected >= 0, got {value}")
        if rec.get("modality"):
            parse_modality(rec["modality"], f"{path}:{i}: modality")
        if rec.get("split") and rec["split"].lower() not in SPLITS:
            raise DataError(f"{path}:{i}: split: expected one of {list(SPLITS)}, got "
                            f"{rec['split']!r}")
        out[name] = rec
    return out


class TrackletFolder:
    """Index of a folder of tracklets (frame folders and/or video files); see the module.

    Args:
        root: the folder.
        modality: ``"visible"``/``"infrared"`` (or 0/1) for tracklets whose modality
            ``labels.csv`` does not give; ``None`` requires it from ``labels.csv``.
        skip_bad: skip (with a ``RuntimeWarning``) empty frame folders, unreadable videos and
            labels of missing tracklets instead of raising :class:`xreid.data.DataError`.
        probe_videos: open every video once while indexing, so an unreadable file is reported
            here rather than when it is embedded.
        labelled_only: index only the tracklets listed in ``labels.csv``.

    ``len(folder)``, ``folder[i]`` (a :class:`FolderTracklet`), ``folder.tracklets``.
    """

    def __init__(self, root: str | Path, modality: str | int | None = None, *,
                 skip_bad: bool = False, probe_videos: bool = True,
                 labelled_only: bool = False) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            kind = "is not a folder" if self.root.exists() else "does not exist"
            raise DataFileNotFoundError(f"root: {self.root} {kind}")
        default = None if modality is None else parse_modality(modality)
        labels_path = self.root / "labels.csv"
        labels = _read_labels(labels_path) if labels_path.is_file() else {}
        entries: list[FolderTracklet] = []
        for child in sorted(self.root.iterdir(), key=lambda p: natural_key(p.name)):
            if child.name.startswith(".") or child.name == "labels.csv":
                continue
            if labelled_only and (child.stem if child.is_file() else child.name) not in labels:
                continue
            if child.is_dir():
                frames = sorted((p for p in child.iterdir()
                                 if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                                key=lambda p: natural_key(p.name))
                if not frames:
                    _warn_or_raise(f"tracklet folder {child} has no .jpg/.png frame", skip_bad)
                    continue
                name, kind, frame_paths = child.name, "frames", tuple(str(p) for p in frames)
            elif child.suffix.lower() in VIDEO_EXTENSIONS:
                if probe_videos:
                    try:
                        _probe_video(child)
                    except DataError as exc:
                        _warn_or_raise(str(exc), skip_bad)
                        continue
                name, kind, frame_paths = child.stem, "video", ()
            else:
                what = ("a loose image (frames must be inside a tracklet folder)"
                        if child.suffix.lower() in IMAGE_EXTENSIONS else
                        "not a tracklet folder or a "
                        f"{'/'.join(VIDEO_EXTENSIONS)} video")
                warnings.warn(f"ignored {child}: {what}", RuntimeWarning, stacklevel=2)
                continue
            rec = labels.get(name, {})
            if rec.get("modality"):
                mod = parse_modality(rec["modality"])
            elif default is not None:
                mod = default
            else:
                raise DataError(f"tracklet {name!r}: modality unknown; pass modality= "
                                "(--modality visible|infrared) or add a modality column to "
                                f"{labels_path}")
            entries.append(FolderTracklet(
                name, str(child), kind, frame_paths,
                int(rec["pid"]) if rec.get("pid") else -1,
                int(rec["camera"]) if rec.get("camera") else -1,
                mod, rec.get("split", "").lower(),
            ))
        names = [e.name for e in entries]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise DataError(f"root: {self.root}: tracklet name(s) {dup} used by both a folder "
                            "and a video file")
        missing = sorted(set(labels) - set(names))
        if missing:
            _warn_or_raise(f"{labels_path}: tracklet(s) {missing[:5]} not found under "
                           f"{self.root}", skip_bad)
        if not entries:
            raise DataError(f"root: {self.root} has no tracklet (expected sub-folders of "
                            f".jpg/.png frames or {'/'.join(VIDEO_EXTENSIONS)} files)")
        self.tracklets: list[FolderTracklet] = entries

    def __len__(self) -> int:
        return len(self.tracklets)

    def __getitem__(self, index: int) -> FolderTracklet:
        return self.tracklets[index]

    def __repr__(self) -> str:
        videos = sum(t.kind == "video" for t in self.tracklets)
        return (f"TrackletFolder({str(self.root)!r}, {len(self)} tracklets, "
                f"{len(self) - videos} frame folders, {videos} videos)")


def _probe_video(path: Path) -> None:
    av = _require_av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"cannot decode video {path}: no video stream")
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot decode video {path}: {exc}") from exc


class TrackletClipDataset(torch.utils.data.Dataset):
    """Clips of a :class:`TrackletFolder`'s tracklets, prepared like the evaluation's.

    Args:
        tracklets: a :class:`TrackletFolder` or a list of :class:`FolderTracklet`.
        num_frames: T.
        sampling: a deterministic test mode of :data:`xreid.data.SAMPLING_MODES`
            (``"chunk_first"``, ``"uniform"`` or ``"dense"``).
        transform: e.g. ``Preprocessing.transform()``; called as ``transform(uint8 clip)``.
        skip_bad: an undecodable tracklet yields ``{"error": message, "index": i}`` instead of
            raising (use with :func:`collate_clips`, which drops it and keeps the message).

    ``dataset[i]``: ``{"video": (T, 3, H, W)`` (``(n_clips, T, 3, H, W)`` for ``"dense"``),
    ``"pid"``, ``"camera"``, ``"modality"``, ``"index"``, ``"frame_indices"}``.
    """

    def __init__(self, tracklets: TrackletFolder | Sequence[FolderTracklet], *,
                 num_frames: int, sampling: str = "chunk_first", transform: Any,
                 skip_bad: bool = False) -> None:
        if sampling not in SAMPLING_MODES or sampling == "restricted_random":
            raise ValueError(f"sampling: expected a test mode of {SAMPLING_MODES[1:]}, got "
                             f"{sampling!r}")
        self.tracklets = list(tracklets.tracklets if isinstance(tracklets, TrackletFolder)
                              else tracklets)
        self.num_frames = int(num_frames)
        self.sampling = sampling
        self.transform = transform
        self.skip_bad = skip_bad
        self._frames = VideoClipDataset([], num_frames=self.num_frames, sampling=sampling,
                                        transform=transform)

    def __len__(self) -> int:
        return len(self.tracklets)

    def frame_indices(self, num_frames_in_tracklet: int) -> list[int]:
        return sample_frame_indices(num_frames_in_tracklet, self.num_frames, self.sampling)

    def load_uint8(self, index: int) -> tuple[torch.Tensor, list[int]]:
        """The sampled frames of tracklet ``index`` as uint8 ``(k, 3, H, W)`` and their indices."""
        t = self.tracklets[index]
        if t.kind == "video":
            n = count_video_frames(t.source)
            idx = self.frame_indices(n)
            arr = np.stack(read_video_frames(t.source, idx))
            return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous(), idx
        idx = self.frame_indices(len(t.frames))
        proxy = Tracklet(t.frames, t.pid, max(t.camera, 0), t.modality)
        return self._frames.load_clip(proxy, idx), idx

    def __getitem__(self, index: int) -> dict[str, Any]:
        t = self.tracklets[index]
        try:
            video, idx = self.load_uint8(index)
        except DataError as exc:
            if not self.skip_bad:
                raise
            return {"error": str(exc), "index": index}
        T = self.num_frames
        if self.sampling == "dense":
            n_clips = len(idx) // T
            out = torch.stack([self.transform(video[c * T:(c + 1) * T]) for c in range(n_clips)])
            frame_idx = torch.tensor(idx, dtype=torch.int64).view(n_clips, T)
        else:
            out = self.transform(video)
            frame_idx = torch.tensor(idx, dtype=torch.int64)
        return {"video": out, "pid": t.pid, "camera": t.camera, "modality": t.modality,
                "index": index, "frame_indices": frame_idx}


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate :class:`TrackletClipDataset` items; failed ones go to ``"errors"``
    (``[(index, message)]``) instead of the batch."""
    good = [it for it in items if "error" not in it]
    errors = [(int(it["index"]), str(it["error"])) for it in items if "error" in it]
    batch: dict[str, Any] = {"errors": errors}
    if good:
        batch["video"] = torch.stack([it["video"] for it in good])
        for key in ("pid", "camera", "modality", "index"):
            batch[key] = torch.tensor([it[key] for it in good], dtype=torch.int64)
    return batch


class FolderVVI(VVIDataset):
    """Training reader over a labelled :class:`TrackletFolder` of frame folders.

    ``ROOT/labels.csv`` must give ``pid``, ``camera``, ``modality`` and ``split`` for every
    tracklet used. ``split``: ``train`` (training; every training pid needs both modalities),
    ``test`` (query *and* gallery: infrared ones are the I2V queries and the V2I gallery,
    visible ones the V2I queries and the I2V gallery), or ``query`` / ``gallery`` to fix the
    role (the modality still decides the direction). Tracklets without a split, or not listed,
    are ignored.
    Video files cannot be trained on: extract their frames into folders first.
    """

    name: ClassVar[str] = "folder"

    def __init__(self, root: str | Path) -> None:
        folder = TrackletFolder(root, probe_videos=False, labelled_only=True)
        used = [t for t in folder.tracklets if t.split]
        for t in used:
            if t.kind != "frames":
                raise DataError(f"{t.source}: training and evaluation readers need frame "
                                "folders, got a video file; extract its frames into "
                                f"{Path(t.source).with_suffix('')}/ first")
            if t.pid < 0 or t.camera < 0:
                raise DataError(f"{folder.root / 'labels.csv'}: tracklet {t.name!r} (split "
                                f"{t.split}) needs a pid and a camera")

        def as_tracklet(t: FolderTracklet) -> Tracklet:
            return Tracklet(t.frames, t.pid, t.camera, t.modality)

        train = [as_tracklet(t) for t in used if t.split == "train"]
        if not train:
            raise DataError(f"{folder.root / 'labels.csv'}: no tracklet with split 'train'")
        check_both_modalities(train, f"folder {folder.root}")
        self._train, _ = relabel(train)
        self._query, self._gallery = {}, {}
        for direction in DIRECTIONS:
            qmod = INFRARED if direction == "i2v" else VISIBLE
            self._query[direction] = [as_tracklet(t) for t in used if t.modality == qmod
                                      and t.split in ("test", "query")]
            self._gallery[direction] = [as_tracklet(t) for t in used if t.modality != qmod
                                        and t.split in ("test", "gallery")]
        cams = [t.camera for t in used]
        self.num_cameras = max(cams) + 1
        self.root = folder.root

    def summary(self) -> str:
        return (f"train: {split_stats(self._train)}; i2v query "
                f"{len(self._query['i2v'])}, gallery {len(self._gallery['i2v'])}; v2i query "
                f"{len(self._query['v2i'])}, gallery {len(self._gallery['v2i'])}")

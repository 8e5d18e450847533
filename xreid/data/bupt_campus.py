"""Reader of the BUPTCampus video visible-infrared benchmark (AuxNet, TIFS 2023/24).

On-disk layout (``docs/datasets.md``, "BUPTCampus")::

    <root>/DATA/<pid>/<IR|RGB|FakeIR>/<cam>/<pid>_<MOD>_<cam>_<tid>_<frame>.jpg
    <root>/data_paths.json   pid -> "IR"|"RGB" -> camera -> tracklet id -> [path rel. to DATA/]
    <root>/train.txt         "pid RGB/IR cam tid"   (an aligned IR/RGB pair per line)
    <root>/train_auxiliary.txt  same format (read only with include_auxiliary=True)
    <root>/query.txt         "pid IR|RGB cam tid"
    <root>/gallery.txt       "pid IR|RGB cam tid"

``root`` may also be the ``DATA`` folder itself (as AuxNet's ``--data_root``); the metadata is
then read from its parent.

Protocol (AuxNet, the dataset authors'): I2V = the IR rows of ``query.txt`` against the RGB
rows of ``gallery.txt``; V2I = the RGB rows of ``query.txt`` against the IR rows of
``gallery.txt``; **no** same-camera removal (:attr:`BUPTCampus.eval_remove_same_camera` is
False); no AuxNet "drop RGB rows mod 64" quirk. Training labels follow ascending *numeric* pid
order (AuxNet sorts pid strings, X-ReID iterates a hash set; both avoided here). The six
cameras ``LS3, G25, CQ1, W4, TSG1, TSG2`` map to 0..5 and are shared by both modalities.
"""

from __future__ import annotations

import json
import os
from os import PathLike
from pathlib import Path
from typing import Any, ClassVar

from xreid.constants import INFRARED, VISIBLE
from xreid.data._base import VVIDataset
from xreid.data._io import (
    check_both_modalities,
    check_frames,
    read_lines,
    relabel,
    require_dir,
    require_file,
    split_stats,
)
from xreid.data.tracklet import DataError, Tracklet

__all__ = ["BUPT_CAMERAS", "BUPTCampus"]

BUPT_CAMERAS: tuple[str, ...] = ("LS3", "G25", "CQ1", "W4", "TSG1", "TSG2")
"""BUPTCampus camera names; the 0-based camera index is the position in this tuple."""
_CAM_INDEX = {c: i for i, c in enumerate(BUPT_CAMERAS)}
_MODALITY = {"IR": INFRARED, "RGB": VISIBLE}


class BUPTCampus(VVIDataset):
    """BUPTCampus reader: ``train``, ``query(direction)``, ``gallery(direction)``.

    Args:
        root: dataset root holding ``DATA/``, ``data_paths.json`` and the list files (or the
            ``DATA`` folder itself).
        include_auxiliary: also add the ``train_auxiliary.txt`` pairs (one camera per
            identity) to the training set; they get labels like the others.
        min_len: tracklets (training pairs: either side) with fewer frames are dropped.
            Default 1 keeps everything (AuxNet); 2 reproduces X-ReID's single-frame filter.
        verify_files: check every frame file (default: the first frame of each tracklet).

    :attr:`train` alternates the two halves of each aligned pair (visible, then infrared);
    :attr:`train_pairs` lists their ``(visible_index, infrared_index)`` positions.
    """

    name: ClassVar[str] = "bupt-campus"
    eval_remove_same_camera: ClassVar[bool] = False

    def __init__(self, root: str | PathLike[str], *, include_auxiliary: bool = False,
                 min_len: int = 1, verify_files: bool = False) -> None:
        if not isinstance(min_len, int) or min_len < 1:
            raise ValueError(f"min_len: expected an integer >= 1, got {min_len!r}")
        root = Path(root).expanduser()
        require_dir(root, "BUPTCampus root")
        if (not (root / "data_paths.json").exists() and root.name == "DATA"
                and (root.parent / "data_paths.json").is_file()):
            root = root.parent
        self.root = root
        self.min_len = min_len
        self.include_auxiliary = include_auxiliary
        self.data_dir = require_dir(root / "DATA", "BUPTCampus image folder")
        self._paths = self._load_json(root / "data_paths.json")
        self.num_cameras = len(BUPT_CAMERAS)
        self.num_dropped: dict[str, int] = {"train": 0, "query": 0, "gallery": 0}
        """Tracklets dropped by ``min_len`` per split (train counts tracklets, 2 per pair)."""

        lists = ["train.txt"] + (["train_auxiliary.txt"] if include_auxiliary else [])
        train: list[Tracklet] = []
        for fname in lists:
            train.extend(self._read_pairs(root / fname))
        query = self._read_test(root / "query.txt", "query")
        gallery = self._read_test(root / "gallery.txt", "gallery")
        del self._paths  # the json can be large; keep only the tracklets

        if not train:
            why = (f"all {self.num_dropped['train']} are shorter than min_len={min_len}"
                   if self.num_dropped["train"] else "the file lists none")
            raise DataError(f"{root / lists[0]}: expected training tracklets, got none ({why})")
        for split, rows in (("query", query), ("gallery", gallery)):
            if not rows:
                why = (f"all {self.num_dropped[split]} are shorter than min_len={min_len}"
                       if self.num_dropped[split] else "the file lists none")
                raise DataError(f"{root / (split + '.txt')}: expected {split} tracklets, got "
                                f"none ({why})")
        check_both_modalities(train, f"BUPTCampus({root})")
        for split, rows in (("query", query), ("gallery", gallery)):
            for code, mod in (("IR", INFRARED), ("RGB", VISIBLE)):
                direction = "I2V" if (split == "query") == (mod == INFRARED) else "V2I"
                if not any(t.modality == mod for t in rows):
                    raise DataError(f"{root / (split + '.txt')}: expected {code} {split} "
                                    f"tracklets (for {direction}), got none")
        self._train, self.pid2label = relabel(train)
        self.train_pairs: list[tuple[int, int]] = [(i, i + 1) for i in range(0, len(train), 2)]
        self._query = {"i2v": [t for t in query if t.modality == INFRARED],
                       "v2i": [t for t in query if t.modality == VISIBLE]}
        self._gallery = {"i2v": [t for t in gallery if t.modality == VISIBLE],
                         "v2i": [t for t in gallery if t.modality == INFRARED]}
        self._all_query, self._all_gallery = query, gallery
        check_frames(self._train + query + gallery, verify_files=verify_files)

    @property
    def test_query(self) -> list[Tracklet]:
        """Every ``query.txt`` tracklet, both modalities (for RGB->RGB, all-modal, ...)."""
        return list(self._all_query)

    @property
    def test_gallery(self) -> list[Tracklet]:
        """Every ``gallery.txt`` tracklet, both modalities."""
        return list(self._all_gallery)

    # ------------------------------------------------------------------ parsing
    @staticmethod
    def _load_json(path: Path) -> dict[str, Any]:
        require_file(path, "BUPTCampus metadata")
        try:
            with open(path, encoding="utf-8-sig") as fh:
                data = json.load(fh)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: malformed JSON ({err.msg}, column "
                            f"{err.colno})") from err
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a JSON object pid -> modality -> camera -> "
                            f"tracklet id -> [paths], got {type(data).__name__}")
        return data

    def _parse_line(self, path: Path, lineno: int, line: str, modalities: tuple[str, ...]
                    ) -> tuple[str, int, str, str, str]:
        tokens = line.split()
        try:
            if len(tokens) != 4:
                raise ValueError(f"expected 4 fields 'pid modality camera tracklet_id', got "
                                 f"{len(tokens)}")
            pid_s, mod, cam, tid = tokens
            pid = int(pid_s)
            if mod not in modalities:
                raise ValueError(f"modality must be {' or '.join(modalities)}, got {mod!r}")
            if cam not in _CAM_INDEX:
                raise ValueError(f"unknown camera {cam!r}; expected one of {BUPT_CAMERAS}")
        except ValueError as err:
            raise DataError(f"{path}:{lineno}: malformed line {line!r}: {err}") from err
        return pid_s, pid, mod, cam, tid

    def _lookup(self, path: Path, lineno: int, pid_s: str, mod: str, cam: str, tid: str
                ) -> tuple[str, ...]:
        node: Any = self._paths
        keys = (pid_s if pid_s in node else str(int(pid_s)), mod, cam, tid)
        for depth, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                where = "".join(f"[{k!r}]" for k in keys[: depth + 1])
                raise DataError(f"{path}:{lineno}: data_paths.json has no entry {where}")
            node = node[key]
        if (not isinstance(node, list) or not node
                or not all(isinstance(p, str) for p in node)):
            raise DataError(f"{path}:{lineno}: data_paths.json[{keys[0]!r}][{mod!r}][{cam!r}]"
                            f"[{tid!r}] must be a non-empty list of paths")
        base = str(self.data_dir)
        return tuple(os.path.join(base, p) for p in node)

    def _read_pairs(self, path: Path) -> list[Tracklet]:
        require_file(path, "BUPTCampus metadata")
        out: list[Tracklet] = []
        for lineno, line in enumerate(read_lines(path), start=1):
            pid_s, pid, _mod, cam, tid = self._parse_line(path, lineno, line, ("RGB/IR",))
            ir = self._lookup(path, lineno, pid_s, "IR", cam, tid)
            rgb = self._lookup(path, lineno, pid_s, "RGB", cam, tid)
            if len(ir) != len(rgb):
                raise DataError(f"{path}:{lineno}: aligned pair has {len(ir)} IR frames but "
                                f"{len(rgb)} RGB frames")
            if len(ir) < self.min_len:
                self.num_dropped["train"] += 2
                continue
            c = _CAM_INDEX[cam]
            out.append(Tracklet(rgb, pid, c, VISIBLE))
            out.append(Tracklet(ir, pid, c, INFRARED))
        return out

    def _read_test(self, path: Path, split: str) -> list[Tracklet]:
        require_file(path, "BUPTCampus metadata")
        out: list[Tracklet] = []
        seen: dict[tuple[str, str, str, str], int] = {}
        for lineno, line in enumerate(read_lines(path), start=1):
            pid_s, pid, mod, cam, tid = self._parse_line(path, lineno, line, ("IR", "RGB"))
            key = (pid_s, mod, cam, str(tid))
            if key in seen:
                raise DataError(f"{path}:{lineno}: the tracklet of line {seen[key]} is listed "
                                "again; each would count twice in the evaluation")
            seen[key] = lineno
            frames = self._lookup(path, lineno, pid_s, mod, cam, tid)
            if len(frames) < self.min_len:
                self.num_dropped[split] += 1
                continue
            out.append(Tracklet(frames, pid, _CAM_INDEX[cam], _MODALITY[mod]))
        return out

    # ------------------------------------------------------------------ reporting
    def summary(self) -> str:
        """One line: identities/tracklets/frames per split."""
        aux = " (with auxiliary)" if self.include_auxiliary else ""
        return (f"{self.name} ({self.root}): train{aux} {split_stats(self._train)}, "
                f"{len(self.train_pairs)} aligned pairs, {self.num_train_identities} labels | "
                f"query {split_stats(self._all_query)} | gallery "
                f"{split_stats(self._all_gallery)} | {self.num_cameras} cameras | dropped "
                f"{sum(self.num_dropped.values())} tracklets < {self.min_len} frames")

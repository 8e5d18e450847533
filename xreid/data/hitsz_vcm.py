"""Reader of the HITSZ-VCM video visible-infrared benchmark (MITML, CVPR 2022).

On-disk layout (``docs/datasets.md``, "HITSZ-VCM"; the three variants are all accepted)::

    <root>/info/{train_name,track_train_info,test_name,track_test_info,query_IDX}.txt
    <root>/Train/<pid4>/<ir|rgb>/D<cam>/<frame>.jpg      (training rows)
    <root>/Test/<pid4>/<ir|rgb>/D<cam>/<frame>.jpg       (test rows)

The metadata may sit in ``<root>/info/`` or directly in ``<root>/``; the images under
``Train/``+``Test/`` or directly under ``<root>`` (the official MITML loader).

* ``*_name.txt``: one frame name per line, ``<pid4>M<m>D<cam>T<track>F<frame>.jpg`` with
  ``m`` = 1 (infrared, folder ``ir``) or 2 (visible, folder ``rgb``); the path is
  ``<pid4>/<ir|rgb>/D<cam>/<frame>.jpg`` (the ``T`` field is not part of it).
* ``track_*_info.txt``: one tracklet per line, ``m start end pid cam`` with ``start``/``end``
  1-based and inclusive line numbers in the name list, ``cam`` in 1..12.
* ``query_IDX.txt``: 1-based row numbers into ``track_test_info.txt`` (the infrared test
  rows); any whitespace and any number of lines are accepted (the official parser keeps only
  the last line).

Protocol: I2V = the ``query_IDX`` rows against all other test rows, V2I = the swap; rows
shorter than ``min_len`` frames are dropped *after* the split (so ``query_IDX`` indexes the
unfiltered rows); training labels follow ascending pid; cameras are stored 0-based;
same-pid-same-camera gallery entries are removed at evaluation
(:attr:`HITSZVCM.eval_remove_same_camera`).
"""

from __future__ import annotations

import os
import re
import warnings
from os import PathLike
from pathlib import Path
from typing import ClassVar

from xreid.constants import INFRARED, VISIBLE
from xreid.data._base import VVIDataset
from xreid.data._io import (
    check_both_modalities,
    check_frames,
    read_lines,
    relabel,
    require_dir,
    split_stats,
)
from xreid.data.tracklet import DataError, DataFileNotFoundError, Tracklet

__all__ = ["HITSZVCM", "decode_vcm_name"]

_NAME_RE = re.compile(r"(\d{4})M([12])D(\d+)T(\d+)F([^/\\\s]+)")
_METADATA = ("train_name.txt", "track_train_info.txt", "test_name.txt",
             "track_test_info.txt", "query_IDX.txt")


def decode_vcm_name(name: str) -> tuple[str, int, int, str]:
    """Decode a HITSZ-VCM frame name into ``(pid4, modality, camera_1based, relative_path)``.

    ``"0001M2D3T1F17.jpg"`` -> ``("0001", VISIBLE, 3, "0001/rgb/D3/17.jpg")``.
    Raises ``ValueError`` if the name does not follow the pattern.
    """
    m = _NAME_RE.fullmatch(name)
    if m is None:
        raise ValueError(f"malformed frame name {name!r}: expected "
                         "<pid:4 digits>M<1|2>D<cam>T<track>F<frame>.jpg")
    pid4, mod, cam, _track, file = m.groups()
    folder = "ir" if mod == "1" else "rgb"
    return pid4, INFRARED if mod == "1" else VISIBLE, int(cam), f"{pid4}/{folder}/D{cam}/{file}"


class HITSZVCM(VVIDataset):
    """HITSZ-VCM reader: ``train``, ``query(direction)``, ``gallery(direction)``.

    Args:
        root: dataset root (see the module docstring for the accepted layouts).
        min_len: tracklets with fewer frames are dropped from every split (12 in every
            published loader). The counts dropped are in :attr:`num_dropped`.
        verify_files: check that every frame file exists (default: the first frame of each
            kept tracklet only, which is cheap).

    Raises:
        DataFileNotFoundError: missing root, metadata file or frame (the path is named).
        DataError: a malformed line (file and line number named), an out-of-range row or
            query index, or a training identity without one of the two modalities.
    """

    name: ClassVar[str] = "hitsz-vcm"
    eval_remove_same_camera: ClassVar[bool] = True

    def __init__(self, root: str | PathLike[str], *, min_len: int = 12,
                 verify_files: bool = False) -> None:
        if not isinstance(min_len, int) or min_len < 1:
            raise ValueError(f"min_len: expected an integer >= 1, got {min_len!r}")
        self.root = Path(root).expanduser()
        self.min_len = min_len
        require_dir(self.root, "HITSZVCM root")
        self.info_dir = self._find_info_dir()
        self.train_dir = self.root / "Train" if (self.root / "Train").is_dir() else self.root
        self.test_dir = self.root / "Test" if (self.root / "Test").is_dir() else self.root

        train_rows = self._read_rows("train", self.train_dir)
        test_rows = self._read_rows("test", self.test_dir)
        query_idx = self._read_query_idx(len(test_rows))
        visible_queries = sorted(i + 1 for i in query_idx if test_rows[i].modality != INFRARED)
        if visible_queries:
            shown = ", ".join(map(str, visible_queries[:5]))
            raise DataError(
                f"{self.info_dir / 'query_IDX.txt'}: lists {len(visible_queries)} visible rows "
                f"of track_test_info.txt (rows {shown}{', ...' if len(visible_queries) > 5 else ''}"
                "); the I2V queries must be infrared rows (modality 1)")

        every = train_rows + test_rows
        self.num_cameras = 1 + max((t.camera for t in every), default=-1)

        keep = self._keep
        train = [t for t in train_rows if keep(t)]
        q_rows = [t for i, t in enumerate(test_rows) if i in query_idx]
        o_rows = [t for i, t in enumerate(test_rows) if i not in query_idx]
        q_kept = [t for t in q_rows if keep(t)]
        o_kept = [t for t in o_rows if keep(t)]
        self.num_dropped: dict[str, int] = {
            "train": len(train_rows) - len(train),
            "query_idx": len(q_rows) - len(q_kept),
            "other_test": len(o_rows) - len(o_kept),
        }
        """Tracklets dropped by ``min_len`` per split (train / query_IDX rows / other rows)."""

        if not train:
            rows_file = self.info_dir / "track_train_info.txt"
            why = (f"all {len(train_rows)} are shorter than min_len={min_len}" if train_rows
                   else "the file lists none")
            raise DataError(f"{rows_file}: expected training tracklets, got none ({why})")
        check_both_modalities(train, f"HITSZVCM({self.root})")
        for split, rows, kept, where in (
                ("query", q_rows, q_kept, "the query_IDX.txt rows"),
                ("gallery", o_rows, o_kept, "the track_test_info.txt rows not in query_IDX.txt")):
            if not kept:
                why = (f"all {len(rows)} are shorter than min_len={min_len}" if rows
                       else "there are none")
                raise DataError(f"{self.info_dir / 'track_test_info.txt'}: expected {split} "
                                f"tracklets ({where}), got none ({why})")
        self._train, self.pid2label = relabel(train)
        self._query = {"i2v": q_kept, "v2i": o_kept}
        self._gallery = {"i2v": o_kept, "v2i": q_kept}
        check_frames(self._train + q_kept + o_kept, verify_files=verify_files)

    # ------------------------------------------------------------------ parsing
    def _keep(self, t: Tracklet) -> bool:
        return len(t.frames) >= self.min_len

    def _find_info_dir(self) -> Path:
        for cand in (self.root / "info", self.root):
            if (cand / "train_name.txt").is_file():
                for f in _METADATA:
                    if not (cand / f).is_file():
                        raise DataFileNotFoundError(
                            f"HITSZVCM: metadata file {cand / f} does not exist")
                return cand
        raise DataFileNotFoundError(
            f"HITSZVCM: metadata file train_name.txt not found in {self.root / 'info'} "
            f"or {self.root}")

    def _read_rows(self, split: str, image_dir: Path) -> list[Tracklet]:
        names_file = self.info_dir / f"{split}_name.txt"
        rows_file = self.info_dir / f"track_{split}_info.txt"
        names = [n.strip() for n in read_lines(names_file)]
        base = str(image_dir)
        decoded: list[tuple[str, int, int, str] | None] = [None] * len(names)
        mismatches = 0
        first_mismatch = ""
        out: list[Tracklet] = []
        for lineno, line in enumerate(read_lines(rows_file), start=1):
            tokens = line.split()
            try:
                if len(tokens) != 5:
                    raise ValueError(f"expected 5 integers 'modality start end pid camera', "
                                     f"got {len(tokens)} fields")
                mod, start, end, pid, cam = (int(x) for x in tokens)
                if mod not in (1, 2):
                    raise ValueError(f"modality must be 1 (IR) or 2 (RGB), got {mod}")
                if cam < 1:
                    raise ValueError(f"camera must be >= 1 (1-based), got {cam}")
                if not 1 <= start <= end <= len(names):
                    raise ValueError(f"frame range {start}..{end} is not within 1.."
                                     f"{len(names)} (the lines of {names_file.name})")
            except ValueError as err:
                raise DataError(f"{rows_file}:{lineno}: malformed row {line!r}: {err}") from err
            modality = INFRARED if mod == 1 else VISIBLE
            frames = []
            for k in range(start - 1, end):
                d = decoded[k]
                if d is None:
                    try:
                        d = decode_vcm_name(names[k])
                    except ValueError as err:
                        raise DataError(f"{names_file}:{k + 1}: {err}") from err
                    decoded[k] = d
                if (int(d[0]) != pid or d[1] != modality or d[2] != cam):
                    mismatches += 1
                    if not first_mismatch:
                        first_mismatch = (f"{rows_file}:{lineno} (pid {pid}, modality {mod}, "
                                          f"camera {cam}) vs {names_file}:{k + 1} {names[k]!r}")
                frames.append(os.path.join(base, d[3]))
            out.append(Tracklet(tuple(frames), pid, cam - 1, modality))
        if mismatches:
            warnings.warn(f"HITSZVCM: {mismatches} frame names disagree with their track row "
                          f"(pid/modality/camera); first: {first_mismatch}. The row wins.",
                          stacklevel=3)
        return out

    def _read_query_idx(self, num_rows: int) -> set[int]:
        path = self.info_dir / "query_IDX.txt"
        seen: set[int] = set()
        for lineno, line in enumerate(read_lines(path, allow_blank=True), start=1):
            for tok in line.split():
                try:
                    v = int(tok)
                except ValueError as err:
                    raise DataError(f"{path}:{lineno}: malformed index {tok!r}: expected an "
                                    "integer") from err
                if not 1 <= v <= num_rows:
                    raise DataError(f"{path}:{lineno}: index {v} is not within 1..{num_rows} "
                                    "(the rows of track_test_info.txt)")
                if v - 1 in seen:
                    raise DataError(f"{path}:{lineno}: index {v} listed twice")
                seen.add(v - 1)
        if not seen:
            raise DataError(f"{path}: no query indices")
        return seen

    # ------------------------------------------------------------------ reporting
    def summary(self) -> str:
        """One line: identities/tracklets/frames per split and the ``min_len`` drops."""
        d = self.num_dropped
        return (f"{self.name} ({self.root}): train {split_stats(self._train)}, "
                f"{self.num_train_identities} labels | query_IDX rows (I2V query, V2I gallery) "
                f"{split_stats(self._query['i2v'])} | other test rows (I2V gallery, V2I query) "
                f"{split_stats(self._query['v2i'])} | {self.num_cameras} cameras | dropped "
                f"{sum(d.values())} tracklets < {self.min_len} frames (train {d['train']}, "
                f"query_IDX {d['query_idx']}, other {d['other_test']})")

"""Synthetic datasets written in exactly the real HITSZ-VCM and BUPTCampus layouts.

The frames come from the procedural renderer in :mod:`xreid.data._render`: identity cues
(body shape, clothing colours and patterns, hair/hat, bags, gait) rendered as visible colour
images and as infrared images through a non-linear, identity-consistent thermal mapping, with
per-camera illumination, background and sensor noise, motion across frames, occluders and
JPEG compression. Every number is drawn from ``numpy.random.default_rng([seed, ...])``, so a
dataset is a pure function of its arguments.

Both generators write a hidden ``.xreid-synthetic.json`` with their arguments (the readers
ignore it); ``overwrite=True`` only ever deletes a folder that carries this marker.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from xreid._validation import check_int
from xreid.data._render import (
    Camera,
    Identity,
    render_background,
    render_frame,
    sample_camera,
    sample_identity,
    sample_scene,
)
from xreid.data.bupt_campus import BUPT_CAMERAS

__all__ = ["GENERATOR_VERSION", "make_synthetic_bupt_campus", "make_synthetic_hitsz_vcm"]

# Bump whenever a change to the generators or the renderer changes the files written for the
# same arguments: caches keyed by it (``xreid.data.build.build_reader``) are regenerated.
GENERATOR_VERSION = 1

_MARKER = ".xreid-synthetic.json"
_VCM_LAYOUTS = ("default", "mitml", "flat")

# stream ids for default_rng([seed, stream, ...])
_S_IDENTITY, _S_CAMERA, _S_PLAN, _S_SCENE, _S_NOISE = 1, 2, 3, 4, 5


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed & ((1 << 64) - 1), *keys])


def _check_frames(frames: Sequence[int]) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in frames)
    except (TypeError, ValueError) as err:
        raise ValueError(f"frames: expected (min, max) frames per tracklet, got {frames!r}"
                         ) from err
    if not 1 <= lo <= hi:
        raise ValueError(f"frames: expected 1 <= min <= max, got {frames!r}")
    return lo, hi


def _check_unit(name: str, v: object, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= hi:
        raise ValueError(f"{name}: expected a number in [0, {hi}], got {v!r}")
    return float(v)


def _check_size(img_size: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in img_size)
    except (TypeError, ValueError) as err:
        raise ValueError(f"img_size: expected (height, width), got {img_size!r}") from err
    if h < 16 or w < 8:
        raise ValueError(f"img_size: expected at least (16, 8), got {img_size!r}")
    return h, w


def _prepare_root(root: str | PathLike[str], overwrite: bool, params: dict[str, Any]) -> Path:
    path = Path(root).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FileExistsError(f"root: {path} exists and is not a folder")
        if any(path.iterdir()):
            if not overwrite:
                raise FileExistsError(f"root: {path} is not empty; pass overwrite=True to "
                                      "replace a synthetic dataset written there before")
            if not (path / _MARKER).is_file():
                raise FileExistsError(f"root: {path} is not empty and holds no {_MARKER} "
                                      "marker, so it is not replaced even with overwrite=True")
            shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    params = {**params, "generator_version": GENERATOR_VERSION}
    (path / _MARKER).write_text(json.dumps(params, indent=1, sort_keys=True) + "\n")
    return path


def _renderer_param(renderer: Callable[..., Any] | None) -> dict[str, str]:
    """The marker's record of a non-default renderer (absent for the default one, so the
    markers of existing datasets are unchanged)."""
    if renderer is None:
        return {}
    return {"renderer": f"{renderer.__module__}.{renderer.__qualname__}"}


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8", newline="\n")


class _Renderer:
    """Renders and writes the frames of tracklets for one dataset."""

    def __init__(self, seed: int, size: tuple[int, int], num_cameras: int,
                 occlusion_p: float, difficulty: float, quality: int) -> None:
        self.seed, self.size, self.occlusion_p, self.quality = seed, size, occlusion_p, quality
        self.difficulty = difficulty
        self.cameras: list[Camera] = [sample_camera(_rng(seed, _S_CAMERA, c), difficulty)
                                      for c in range(num_cameras)]
        self._identities: dict[int, Identity] = {}
        self._made_dirs: set[Path] = set()

    def identity(self, pid: int) -> Identity:
        ident = self._identities.get(pid)
        if ident is None:
            ident = self._identities[pid] = sample_identity(_rng(self.seed, _S_IDENTITY, pid))
        return ident

    def write(self, pid: int, camera: int, key: int, n: int,
              rgb_paths: Sequence[Path] | None, ir_paths: Sequence[Path] | None) -> None:
        """Render an ``n``-frame tracklet (``key`` makes it unique) into the given files."""
        ident, cam = self.identity(pid), self.cameras[camera]
        scene = sample_scene(_rng(self.seed, _S_SCENE, pid, key), n, self.occlusion_p,
                             self.difficulty)
        noise = _rng(self.seed, _S_NOISE, pid, key)
        background = render_background(cam, scene, self.size)
        want = (rgb_paths is not None, ir_paths is not None)
        for t in range(n):
            rgb, ir = render_frame(ident, cam, scene, t, self.size, noise, want, background)
            if rgb_paths is not None and rgb is not None:
                self._save(Image.fromarray(rgb, "RGB"), rgb_paths[t])
            if ir_paths is not None and ir is not None:
                self._save(Image.fromarray(ir, "L"), ir_paths[t])

    def _save(self, image: Image.Image, path: Path) -> None:
        parent = path.parent
        if parent not in self._made_dirs:
            parent.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(parent)
        image.save(path, format="JPEG", quality=self.quality)


# --------------------------------------------------------------------------- HITSZ-VCM
def make_synthetic_hitsz_vcm(
    root: str | PathLike[str],
    *,
    num_train_ids: int = 64,
    num_test_ids: int = 20,
    tracklets_per_id: int = 2,
    test_tracklets_per_id: int = 2,
    frames: Sequence[int] = (12, 16),
    num_short: int = 3,
    num_cameras: int = 6,
    img_size: Sequence[int] = (64, 32),
    occlusion_p: float = 0.15,
    difficulty: float = 0.6,
    seed: int = 0,
    layout: str = "default",
    jpeg_quality: int = 90,
    overwrite: bool = False,
    renderer: Callable[..., Any] | None = None,
) -> Path:
    """Write a synthetic dataset in the HITSZ-VCM layout and return its root.

    Args:
        root: target folder (created; must be empty unless ``overwrite``).
        num_train_ids: training identities, pids ``0001..``.
        num_test_ids: test identities, the pids after the training ones.
        tracklets_per_id: training tracklets per identity *per modality*.
        test_tracklets_per_id: test tracklets per identity per modality (>= 2): the infrared
            ones span >= 2 cameras, the visible ones too, and one visible tracklet shares a
            camera with an infrared one, so the same-camera removal is exercised and every
            query keeps a cross-camera match in the other modality.
        frames: ``(min, max)`` frames of a regular tracklet (HITSZ-VCM rows hold <= 24).
        num_short: extra tracklets *per split* with fewer than ``frames[0]`` frames (so the
            reader's ``min_len=frames[0]`` filter drops exactly ``2 * num_short`` rows);
            they never carry an identity's only tracklet of a modality.
        num_cameras: cameras ``D1..D<num_cameras>`` (2..12), shared by both modalities.
        img_size: frame ``(height, width)``.
        occlusion_p: probability that a tracklet has an occluder.
        difficulty: scales the spread of every camera and viewing nuisance (illumination,
            colour cast, background clutter, noise, blur, scale/position jitter): 0 gives
            neutral grey cameras, 1 strong nuisances, up to 2; identity cues are unaffected.
        seed: the dataset is a deterministic function of the arguments.
        layout: ``"default"`` (``info/`` + ``Train/`` + ``Test/``, as X-ReID reads it),
            ``"mitml"`` (``info/`` + images directly under the root) or ``"flat"``
            (metadata and images directly under the root, as the data README draws it).
        jpeg_quality: JPEG quality of the frames.
        overwrite: replace a synthetic dataset previously written to ``root``.
        renderer: the frame renderer's class, called as ``renderer(seed, (h, w),
            num_cameras, occlusion_p, difficulty, jpeg_quality)``, whose ``write(pid,
            camera, key, n, rgb_paths, ir_paths)`` renders a tracklet into files; None is
            this module's procedural renderer (:mod:`xreid.data.mannequin` passes another).

    Layout written: ``info/{train,test}_name.txt`` (``<pid4>M<1|2>D<cam>T<t>F<f>.jpg`` per
    line), ``info/track_{train,test}_info.txt`` (``m start end pid cam``, 1-based inclusive),
    ``info/query_IDX.txt`` (the 1-based numbers of all infrared test rows on one line), and
    ``Train|Test/<pid4>/<ir|rgb>/D<cam>/<f>.jpg`` (infrared frames are 1-channel JPEGs).
    """
    check_int(num_train_ids, "num_train_ids", minimum=1)
    check_int(num_test_ids, "num_test_ids", minimum=1)
    check_int(tracklets_per_id, "tracklets_per_id", minimum=1)
    check_int(test_tracklets_per_id, "test_tracklets_per_id", minimum=2)
    check_int(num_short, "num_short", minimum=0)
    check_int(num_cameras, "num_cameras", minimum=2)
    check_int(jpeg_quality, "jpeg_quality", minimum=1)
    if num_cameras > 12:
        raise ValueError(f"num_cameras: HITSZ-VCM has at most 12 cameras, got {num_cameras}")
    if num_train_ids + num_test_ids > 9999:
        raise ValueError("num_train_ids + num_test_ids: pids have 4 digits, so at most 9999 "
                         f"identities, got {num_train_ids + num_test_ids}")
    _check_unit("occlusion_p", occlusion_p, 1.0)
    _check_unit("difficulty", difficulty, 2.0)
    lo, hi = _check_frames(frames)
    if num_short and lo < 2:
        raise ValueError(f"frames: short tracklets need frames[0] >= 2, got {frames!r}")
    size = _check_size(img_size)
    if layout not in _VCM_LAYOUTS:
        raise ValueError(f"layout: expected one of {_VCM_LAYOUTS}, got {layout!r}")
    params = {"generator": "make_synthetic_hitsz_vcm", "num_train_ids": num_train_ids,
              "num_test_ids": num_test_ids, "tracklets_per_id": tracklets_per_id,
              "test_tracklets_per_id": test_tracklets_per_id, "frames": [lo, hi],
              "num_short": num_short, "num_cameras": num_cameras, "img_size": list(size),
              "occlusion_p": occlusion_p, "difficulty": difficulty, "seed": seed,
              "layout": layout,
              "jpeg_quality": jpeg_quality, **_renderer_param(renderer)}
    out = _prepare_root(root, overwrite, params)
    info = out if layout == "flat" else out / "info"
    info.mkdir(exist_ok=True)
    split_dirs = ({"train": out / "Train", "test": out / "Test"} if layout == "default"
                  else {"train": out, "test": out})
    frames_of = (renderer or _Renderer)(seed, size, num_cameras, occlusion_p, difficulty,
                                        jpeg_quality)
    plan_rng = _rng(seed, _S_PLAN)
    train_pids = list(range(1, num_train_ids + 1))
    test_pids = list(range(num_train_ids + 1, num_train_ids + num_test_ids + 1))

    def cams_for(n: int, must: Sequence[int] = ()) -> list[int]:
        """n 1-based cameras: ``must`` first, then random, at least 2 distinct when n >= 2."""
        cams = list(must)
        while len(cams) < n:
            cams.append(int(plan_rng.integers(1, num_cameras + 1)))
        if n >= 2 and len(set(cams)) < 2:
            cams[-1] = cams[0] % num_cameras + 1
        return cams[:n]

    def plan(split: str) -> list[tuple[int, int, int, int]]:
        """Tracklets as (pid, modality 1|2, camera 1-based, length), grouped by pid."""
        pids = train_pids if split == "train" else test_pids
        per: dict[int, list[tuple[int, int, int, int]]] = {p: [] for p in pids}
        for pid in pids:
            if split == "train":
                ir_cams = cams_for(tracklets_per_id)
                rgb_cams = cams_for(tracklets_per_id)
            else:
                a = int(plan_rng.integers(1, num_cameras + 1))
                others = [x for x in range(1, num_cameras + 1) if x != a]
                b, c = (int(x) for x in plan_rng.choice(others, 2))
                ir_cams = cams_for(test_tracklets_per_id, [a, b])
                rgb_cams = cams_for(test_tracklets_per_id, [a, c])
            for m, cams in ((1, ir_cams), (2, rgb_cams)):
                for cam in cams:
                    per[pid].append((pid, m, cam, int(plan_rng.integers(lo, hi + 1))))
        for _ in range(num_short):
            pid = int(plan_rng.choice(pids))
            m = int(plan_rng.integers(1, 3))
            cam = int(plan_rng.integers(1, num_cameras + 1))
            per[pid].append((pid, m, cam, int(plan_rng.integers(max(1, lo // 3), lo))))
        rows: list[tuple[int, int, int, int]] = []
        for pid in pids:
            order = plan_rng.permutation(len(per[pid]))
            rows.extend(per[pid][i] for i in order)
        return rows

    query_idx: list[int] = []
    for split in ("train", "test"):
        names: list[str] = []
        track_lines: list[str] = []
        frame_counter: dict[tuple[int, int, int], int] = {}
        track_counter: dict[tuple[int, int, int], int] = {}
        for row, (pid, m, cam, n) in enumerate(plan(split)):
            key = (pid, m, cam)
            tno = track_counter[key] = track_counter.get(key, 0) + 1
            first = frame_counter.get(key, 0) + 1 + int(plan_rng.integers(0, 6))
            frame_counter[key] = first + n - 1
            pid4 = f"{pid:04d}"
            folder = split_dirs[split] / pid4 / ("ir" if m == 1 else "rgb") / f"D{cam}"
            paths = [folder / f"{f}.jpg" for f in range(first, first + n)]
            start = len(names) + 1
            names.extend(f"{pid4}M{m}D{cam}T{tno}F{f}.jpg" for f in range(first, first + n))
            track_lines.append(f"{m} {start} {start + n - 1} {pid} {cam}")
            if split == "test" and m == 1:
                query_idx.append(row + 1)
            frames_of.write(pid, cam - 1, 2 * row + (split == "test"), n,
                           paths if m == 2 else None, paths if m == 1 else None)
        _write_lines(info / f"{split}_name.txt", names)
        _write_lines(info / f"track_{split}_info.txt", track_lines)
    _write_lines(info / "query_IDX.txt", [" ".join(str(i) for i in query_idx)])
    return out


# --------------------------------------------------------------------------- BUPTCampus
def make_synthetic_bupt_campus(
    root: str | PathLike[str],
    *,
    num_train_ids: int = 64,
    num_aux_ids: int = 4,
    num_test_ids: int = 20,
    pairs_per_id: int = 2,
    test_pairs_per_id: int = 3,
    frames: Sequence[int] = (6, 16),
    num_single_frame: int = 1,
    img_size: Sequence[int] = (64, 32),
    occlusion_p: float = 0.15,
    difficulty: float = 0.6,
    seed: int = 0,
    fake_ir: bool = False,
    jpeg_quality: int = 90,
    overwrite: bool = False,
    renderer: Callable[..., Any] | None = None,
) -> Path:
    """Write a synthetic dataset in the BUPTCampus layout and return its root.

    Args:
        root: target folder (created; must be empty unless ``overwrite``).
        num_train_ids, num_aux_ids, num_test_ids: identities per split. Pids are distinct
            unpadded integers drawn from ``1..3*total`` and interleaved across the splits
            (so numeric and string label orders differ, as in the real data).
        pairs_per_id: aligned IR/RGB pairs per training identity, in distinct cameras where
            possible. Auxiliary identities get one pair in one camera.
        test_pairs_per_id: pairs per test identity (>= 2; the first two in different
            cameras). The first pair is the query: *one* line in ``query.txt`` (IR for even
            test identities, RGB for odd), its counterpart left out; every other pair goes to
            ``gallery.txt`` as two lines, so each query has a cross-camera match in the other
            modality.
        frames: ``(min, max)`` frames per tracklet.
        num_single_frame: extra 1-frame training pairs (X-ReID's ``min_len=2`` drops them).
        img_size, occlusion_p, difficulty, seed, jpeg_quality, overwrite, renderer: as
            :func:`make_synthetic_hitsz_vcm`.
        fake_ir: also write ``DATA/<pid>/FakeIR/<cam>/<pid>_RGB_...jpg`` (the grayscale of the
            RGB frame; AuxNet's PairGAN output stand-in).

    Frames of a pair are pixel-aligned renders of one scene in the two modalities, with the
    same frame numbers: ``DATA/<pid>/<IR|RGB>/<cam>/<pid>_<IR|RGB>_<cam>_<tid>_<frame>.jpg``.
    """
    for name, v, low in (("num_train_ids", num_train_ids, 1), ("num_aux_ids", num_aux_ids, 0),
                         ("num_test_ids", num_test_ids, 1), ("pairs_per_id", pairs_per_id, 1),
                         ("test_pairs_per_id", test_pairs_per_id, 2),
                         ("num_single_frame", num_single_frame, 0),
                         ("jpeg_quality", jpeg_quality, 1)):
        check_int(v, name, minimum=low)
    _check_unit("occlusion_p", occlusion_p, 1.0)
    _check_unit("difficulty", difficulty, 2.0)
    lo, hi = _check_frames(frames)
    size = _check_size(img_size)
    params = {"generator": "make_synthetic_bupt_campus", "num_train_ids": num_train_ids,
              "num_aux_ids": num_aux_ids, "num_test_ids": num_test_ids,
              "pairs_per_id": pairs_per_id, "test_pairs_per_id": test_pairs_per_id,
              "frames": [lo, hi], "num_single_frame": num_single_frame,
              "img_size": list(size), "occlusion_p": occlusion_p,
              "difficulty": difficulty, "seed": seed,
              "fake_ir": fake_ir, "jpeg_quality": jpeg_quality, **_renderer_param(renderer)}
    out = _prepare_root(root, overwrite, params)
    data = out / "DATA"
    frames_of = (renderer or _Renderer)(seed, size, len(BUPT_CAMERAS), occlusion_p,
                                        difficulty, jpeg_quality)
    plan_rng = _rng(seed, _S_PLAN)
    total = num_train_ids + num_aux_ids + num_test_ids
    pids = [int(p) for p in plan_rng.choice(np.arange(1, 3 * total + 1), total, replace=False)]
    train_pids = pids[:num_train_ids]
    aux_pids = pids[num_train_ids:num_train_ids + num_aux_ids]
    test_pids = pids[num_train_ids + num_aux_ids:]
    paths_json: dict[str, dict[str, dict[str, dict[str, list[str]]]]] = {}
    tid_counter: dict[tuple[int, str], int] = {}
    key_counter = [0]

    def distinct_cams(n: int) -> list[int]:
        perm = [int(c) for c in plan_rng.permutation(len(BUPT_CAMERAS))]
        return [perm[i % len(perm)] for i in range(n)]

    def make_pair(pid: int, cam: int, n: int) -> str:
        cname = BUPT_CAMERAS[cam]
        tid = tid_counter[(pid, cname)] = tid_counter.get((pid, cname), 0) + 1
        first = int(plan_rng.integers(100, 20000))
        rel: dict[str, list[str]] = {}
        for mod in ("IR", "RGB"):
            rel[mod] = [f"{pid}/{mod}/{cname}/{pid}_{mod}_{cname}_{tid}_{f}.jpg"
                        for f in range(first, first + n)]
            entry = paths_json.setdefault(str(pid), {}).setdefault(mod, {})
            entry.setdefault(cname, {})[str(tid)] = rel[mod]
        key_counter[0] += 1
        rgb_files = [data / p for p in rel["RGB"]]
        frames_of.write(pid, cam, key_counter[0], n, rgb_files, [data / p for p in rel["IR"]])
        if fake_ir:
            for p in rel["RGB"]:
                fake = data / p.replace("/RGB/", "/FakeIR/", 1)
                fake.parent.mkdir(parents=True, exist_ok=True)
                with Image.open(data / p) as im:
                    im.convert("L").save(fake, format="JPEG", quality=jpeg_quality)
        return f"{cname} {tid}"

    def length() -> int:
        return int(plan_rng.integers(lo, hi + 1))

    train_lines = [f"{pid} RGB/IR {make_pair(pid, cam, length())}"
                   for pid in train_pids for cam in distinct_cams(pairs_per_id)]
    for k in range(num_single_frame):
        pid = train_pids[k % len(train_pids)]
        train_lines.append(f"{pid} RGB/IR {make_pair(pid, distinct_cams(1)[0], 1)}")
    aux_lines = [f"{pid} RGB/IR {make_pair(pid, distinct_cams(1)[0], length())}"
                 for pid in aux_pids]
    query_lines: list[str] = []
    gallery_lines: list[str] = []
    for k, pid in enumerate(test_pids):
        cams = distinct_cams(test_pairs_per_id)
        q = make_pair(pid, cams[0], length())
        query_lines.append(f"{pid} {'IR' if k % 2 == 0 else 'RGB'} {q}")
        for cam in cams[1:]:
            g = make_pair(pid, cam, length())
            gallery_lines.extend((f"{pid} IR {g}", f"{pid} RGB {g}"))
    _write_lines(out / "train.txt", train_lines)
    _write_lines(out / "train_auxiliary.txt", aux_lines)
    _write_lines(out / "query.txt", query_lines)
    _write_lines(out / "gallery.txt", gallery_lines)
    with open(out / "data_paths.json", "w", encoding="utf-8", newline="\n") as fh:
        json.dump(paths_json, fh)
    return out

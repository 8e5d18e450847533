"""pixel_baseline: raw greyscale ranking, checked against a slow reference written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xreid.constants import INFRARED, VISIBLE
from xreid.data import Tracklet
from xreid.metrics import pixel_baseline, pixel_features


def _tracklet(root: Path, name: str, pid: int, cam: int, modality: int, rng, n: int) -> Tracklet:
    paths = []
    for k in range(n):
        arr = rng.integers(0, 256, size=(12, 6, 3)).astype(np.int64)
        arr[..., 0] = (arr[..., 0] // 4 + 40 * pid) % 256  # an identity cue
        p = root / f"{name}_{k}.png"
        Image.fromarray(arr.astype(np.uint8)).save(p)
        paths.append(str(p))
    return Tracklet(frames=tuple(paths), pid=pid, camera=cam, modality=modality)


class Reader:
    eval_remove_same_camera = True

    def __init__(self, ir, vis):
        self.ir, self.vis = ir, vis

    def query(self, d):
        return list(self.ir if d == "i2v" else self.vis)

    def gallery(self, d):
        return list(self.vis if d == "i2v" else self.ir)


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    root = tmp_path_factory.mktemp("pix")
    rng = np.random.default_rng(0)
    ir, vis = [], []
    for pid in range(4):
        for j in range(2):
            ir.append(_tracklet(root, f"ir{pid}{j}", pid, 1 + j, INFRARED, rng, 3 + j))
            vis.append(_tracklet(root, f"v{pid}{j}", pid, 3 + j, VISIBLE, rng, 11 + j))
    return Reader(ir, vis)


def _reference(reader, direction, size=(32, 16), num_frames=8):
    """Per-tracklet loop: PIL grey + bilinear resize, mean, cosine, per-query AP loop."""
    def feat(t):
        n = len(t.frames)
        idx = range(n) if n <= num_frames else np.linspace(0, n - 1, num_frames).round()
        imgs = [np.asarray(Image.open(t.frames[int(i)]).convert("L")
                           .resize((size[1], size[0]), Image.BILINEAR), dtype=np.float64) / 255
                for i in idx]
        return np.mean(imgs, axis=0).ravel()

    q, g = reader.query(direction), reader.gallery(direction)
    aps, r1 = [], []
    for qt in q:
        f = feat(qt)
        entries = []
        for gi, gt in enumerate(g):
            if gt.pid == qt.pid and gt.camera == qt.camera:
                continue  # junk
            h = feat(gt)
            cos = f @ h / np.linalg.norm(f) / np.linalg.norm(h)
            entries.append((1 - cos, gi, gt.pid == qt.pid))
        entries.sort()
        matches = [k for k, e in enumerate(entries) if e[2]]
        if not matches:
            continue
        r1.append(float(matches[0] == 0))
        aps.append(np.mean([(i + 1) / (m + 1) for i, m in enumerate(matches)]))
    return float(np.mean(r1)), float(np.mean(aps))


def test_matches_slow_reference(reader):
    res = pixel_baseline(reader)
    assert res.protocol["method"] == "pixels"
    for d in ("i2v", "v2i"):
        r1, ap = _reference(reader, d)
        assert res[d].rank1 == pytest.approx(r1, abs=1e-12)
        assert res[d].mAP == pytest.approx(ap, abs=1e-12)


def test_features_mean_of_evenly_spaced_frames(reader):
    t = reader.vis[0]  # 11 frames, 8 used: 0, 1, 3, 4, 6, 7, 9, 10
    f = pixel_features([t], size=(6, 3), num_frames=8)
    picked = np.linspace(0, 10, 8).round().astype(int)
    ref = np.mean([np.asarray(Image.open(t.frames[i]).convert("L").resize((3, 6), Image.BILINEAR),
                              dtype=np.float64).ravel() / 255 for i in picked], axis=0)
    assert f.shape == (1, 18) and f.dtype == torch.float64
    np.testing.assert_allclose(f[0].numpy(), ref, atol=1e-12)
    every = pixel_features([t], size=(6, 3), num_frames=None)
    assert not torch.equal(every, f)


def test_one_direction_and_protocol_switch(reader):
    res = pixel_baseline(reader, "v2i", remove_same_camera=False)
    assert tuple(res) == ("v2i",) and res.protocol["remove_same_camera"] is False


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"directions": ("x2y",)}, "directions"),
    ({"size": (0, 4)}, "size"),
    ({"num_frames": 0}, "num_frames"),
    ({"max_rank": 0}, "max_rank"),
])
def test_bad_arguments(reader, kwargs, name):
    with pytest.raises(ValueError, match=name):
        pixel_baseline(reader, **kwargs)


def test_bad_reader_and_unreadable_image(tmp_path):
    with pytest.raises(ValueError, match="reader"):
        pixel_baseline(object())
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    t = Tracklet(frames=(str(bad),), pid=0, camera=1, modality=VISIBLE)
    with pytest.raises(ValueError, match="bad.jpg"):
        pixel_features([t])

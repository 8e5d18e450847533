"""VideoClipDataset: item contents, sampling modes, reproducibility, decode errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tolerance import rounding_tol

from xreid import INFRARED, VISIBLE
from xreid.data import (
    HITSZVCM,
    ClipTransform,
    DataError,
    DataFileNotFoundError,
    Tracklet,
    VideoClipDataset,
    item_seed,
    load_frame,
    make_synthetic_hitsz_vcm,
    sample_frame_indices,
)
from xreid.data.transforms import NORMALIZATIONS


@pytest.fixture(scope="module")
def vcm(tmp_path_factory: pytest.TempPathFactory) -> HITSZVCM:
    root = make_synthetic_hitsz_vcm(
        tmp_path_factory.mktemp("vcm") / "VCM", num_train_ids=3, num_test_ids=2,
        tracklets_per_id=2, test_tracklets_per_id=2, frames=(12, 24), num_short=1,
        num_cameras=3, img_size=(32, 16), seed=1)
    return HITSZVCM(root)


# PIL's and torch's bilinear resizing round to uint8 differently: up to two grey levels, then
# divided by the smallest normalisation std
_PIXEL_TOL = {"atol": 2 / 255 / min(min(v[1]) for v in NORMALIZATIONS.values()), "rtol": 0.0}


def _expected_clip(t: Tracklet, idx: list[int], size: tuple[int, int],
                   norm: str = "imagenet") -> torch.Tensor:
    """Slow reference: PIL open -> RGB -> bilinear resize -> /255 -> normalise (the
    dataset resizes with torch's uint8 antialiased bilinear, within one or two levels)."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATIONS[norm])
    frames = []
    for i in idx:
        with Image.open(t.frames[i]) as im:
            im = im.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR)
            frames.append(torch.from_numpy(np.array(im)).permute(2, 0, 1))
    return (torch.stack(frames).float() / 255.0 - mean) / std


def test_item_contents_match_reference(vcm: HITSZVCM) -> None:
    tr = vcm.train
    ds = VideoClipDataset(tr, num_frames=6, sampling="chunk_first",
                          transform=ClipTransform((64, 32)))
    assert len(ds) == len(tr)
    for i in (0, len(tr) - 1):
        item = ds[i]
        t = tr[i]
        assert set(item) == {"video", "pid", "label", "camera", "modality", "index",
                             "frame_indices"}
        assert (item["pid"], item["label"], item["camera"], item["modality"], item["index"]) \
            == (t.pid, t.label, t.camera, t.modality, i)
        idx = sample_frame_indices(len(t.frames), 6, "chunk_first")
        assert item["frame_indices"].tolist() == idx
        assert item["video"].dtype == torch.float32 and item["video"].shape == (6, 3, 64, 32)
        torch.testing.assert_close(item["video"], _expected_clip(t, idx, (64, 32)), **_PIXEL_TOL)
    assert ds[-1]["index"] == len(tr) - 1
    with pytest.raises(IndexError):
        ds[len(tr)]


def test_default_transform_is_eval_288x144_imagenet(vcm: HITSZVCM) -> None:
    q = vcm.query("i2v")
    ds = VideoClipDataset(q[:1], num_frames=4, sampling="uniform")
    item = ds[0]
    assert item["video"].shape == (4, 3, 288, 144)
    assert item["label"] == -1 and item["modality"] == INFRARED
    idx = sample_frame_indices(len(q[0].frames), 4, "uniform")
    torch.testing.assert_close(item["video"], _expected_clip(q[0], idx, (288, 144)), **_PIXEL_TOL)
    # infrared JPEGs are 1-channel on disk and come out as 3 equal channels
    raw = item["video"] * torch.tensor(NORMALIZATIONS["imagenet"][1]).view(1, 3, 1, 1) \
        + torch.tensor(NORMALIZATIONS["imagenet"][0]).view(1, 3, 1, 1)
    # each channel: normalised (two roundings) and back (two more), terms up to 1 / min(std)
    std = min(NORMALIZATIONS["imagenet"][1])
    tol = rounding_tol(torch.float32, 4, scale=1 / std)
    torch.testing.assert_close(raw[:, 0], raw[:, 1], **tol)


def test_dense_clips(vcm: HITSZVCM) -> None:
    t = max(vcm.train, key=lambda t: len(t.frames))
    n = len(t.frames)
    ds = VideoClipDataset([t], num_frames=5, sampling="dense",
                          transform=ClipTransform((32, 16)))
    item = ds[0]
    n_clips = -(-n // 5)
    assert item["video"].shape == (n_clips, 5, 3, 32, 16)
    assert item["frame_indices"].shape == (n_clips, 5)
    flat = item["frame_indices"].flatten().tolist()
    assert flat[:n] == list(range(n))
    assert flat == sample_frame_indices(n, 5, "dense")
    torch.testing.assert_close(item["video"].flatten(0, 1), _expected_clip(t, flat, (32, 16)),
                               **_PIXEL_TOL)


def test_train_sampling_is_reproducible_and_redrawn_per_epoch(vcm: HITSZVCM) -> None:
    tr = vcm.train
    tf = ClipTransform((32, 16), train=True)
    ds = VideoClipDataset(tr, num_frames=4, sampling="restricted_random", transform=tf, seed=7)
    a = [ds[i] for i in range(3)]
    b = [ds[i] for i in range(3)]
    for x, y in zip(a, b):
        assert torch.equal(x["video"], y["video"])
        assert torch.equal(x["frame_indices"], y["frame_indices"])
    ds.set_epoch(1)
    c = [ds[i] for i in range(3)]
    assert any(not torch.equal(x["video"], y["video"]) for x, y in zip(a, c))
    other = VideoClipDataset(tr, num_frames=4, sampling="restricted_random", transform=tf,
                             seed=8)
    assert any(not torch.equal(x["video"], other[i]["video"]) for i, x in enumerate(a))
    assert item_seed(7, 0, 1) != item_seed(7, 1, 0) != item_seed(7, 0, 0)
    assert 0 <= item_seed(2**70, -1, 5) < 2**63


def test_worker_processes_give_identical_items(vcm: HITSZVCM) -> None:
    tr = vcm.train[:6]
    ds = VideoClipDataset(tr, num_frames=3, sampling="restricted_random",
                          transform=ClipTransform((32, 16), train=True), seed=3)
    ds.set_epoch(2)
    main = torch.stack([ds[i]["video"] for i in range(len(ds))])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2,
                                         multiprocessing_context="fork")
    batches = list(loader)
    torch.testing.assert_close(torch.cat([b["video"] for b in batches]), main, rtol=0, atol=0)
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(len(ds)))
    assert batches[0]["label"].dtype == torch.int64


def test_custom_transform_without_generator(vcm: HITSZVCM) -> None:
    calls = []

    def tf(video: torch.Tensor) -> torch.Tensor:
        calls.append(video.shape)
        return video.float()

    ds = VideoClipDataset(vcm.train[:1], num_frames=2, transform=tf)
    out = ds[0]["video"]
    assert out.shape == (2, 3, 32, 16) and calls == [(2, 3, 32, 16)]


def test_decode_errors_name_the_file(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    Image.fromarray(np.zeros((8, 4, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    trunc = tmp_path / "trunc.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 32, 3), dtype=np.uint8)
                    ).save(trunc)
    trunc.write_bytes(trunc.read_bytes()[:300])
    missing = tmp_path / "missing.jpg"
    for path, err in ((bad, DataError), (trunc, DataError), (missing, DataFileNotFoundError)):
        ds = VideoClipDataset([Tracklet((str(good), str(path)), 1, 0, VISIBLE)], num_frames=2,
                              sampling="uniform", transform=ClipTransform((8, 4)))
        with pytest.raises(err, match=str(path)):
            ds[0]
    assert isinstance(DataFileNotFoundError("x"), FileNotFoundError)
    assert isinstance(DataError("x"), ValueError)


def test_load_frame_draft_and_sizes(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    arr = np.zeros((512, 256, 3), dtype=np.uint8)
    arr[:, 128:] = 255
    Image.fromarray(arr).save(big, quality=95)
    for draft in (True, False):
        out = load_frame(str(big), (64, 32), draft=draft)
        assert out.shape == (64, 32, 3) and out.dtype == np.uint8
        assert out[:, :14].max() < 30 and out[:, 18:].min() > 225
    assert load_frame(str(big)).shape == (512, 256, 3)
    gray = tmp_path / "gray.jpg"
    Image.fromarray(np.full((10, 6), 77, dtype=np.uint8), "L").save(gray)
    g = load_frame(str(gray))
    assert g.shape == (10, 6, 3) and abs(int(g.mean()) - 77) <= 1


def test_mixed_frame_sizes_need_a_resizing_transform(tmp_path: Path) -> None:
    paths = []
    for i, size in enumerate(((8, 4), (10, 6))):
        p = tmp_path / f"{i}.jpg"
        Image.fromarray(np.zeros((*size, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    t = Tracklet(tuple(paths), 1, 0, VISIBLE)
    assert VideoClipDataset([t], num_frames=2, sampling="uniform",
                            transform=ClipTransform((8, 4)))[0]["video"].shape == (2, 3, 8, 4)
    with pytest.raises(DataError, match="differ in size"):
        VideoClipDataset([t], num_frames=2, sampling="uniform", transform=lambda v: v)[0]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"num_frames": 0}, "num_frames"),
    ({"sampling": "random"}, "sampling"),
])
def test_argument_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        VideoClipDataset([Tracklet(("a.jpg",), 1, 0, VISIBLE)], **kwargs)
    with pytest.raises(ValueError, match=r"tracklets\[0\]"):
        VideoClipDataset(["a.jpg"])  # type: ignore[list-item]


def test_import_needs_no_vision_libraries() -> None:
    import subprocess
    import sys

    code = ("import sys, xreid.data; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('torchvision', 'timm', 'open_clip')]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr

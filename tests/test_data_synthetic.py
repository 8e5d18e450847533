"""Synthetic datasets: determinism, the layout invariants, protocol guarantees, learnability."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xreid import INFRARED, VISIBLE
from xreid.data import (
    HITSZVCM,
    BUPTCampus,
    load_frame,
    make_synthetic_bupt_campus,
    make_synthetic_hitsz_vcm,
)
from xreid.data._render import _BOTTOMS, _TOPS, thermal

SMALL_VCM = dict(num_train_ids=3, num_test_ids=3, tracklets_per_id=1, test_tracklets_per_id=3,
                 frames=(12, 13), num_short=1, num_cameras=3, img_size=(16, 8))
SMALL_BUPT = dict(num_train_ids=3, num_aux_ids=1, num_test_ids=4, pairs_per_id=2,
                  test_pairs_per_id=2, frames=(2, 4), num_single_frame=1, img_size=(16, 8))


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def learn_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_hitsz_vcm(
        tmp_path_factory.mktemp("learn") / "v", num_train_ids=12, num_test_ids=8,
        tracklets_per_id=3, test_tracklets_per_id=2, frames=(12, 12), num_short=0,
        img_size=(32, 16), seed=0)


def test_deterministic_from_seed(tmp_path: Path) -> None:
    a = make_synthetic_hitsz_vcm(tmp_path / "a", seed=4, **SMALL_VCM)
    b = make_synthetic_hitsz_vcm(tmp_path / "b", seed=4, **SMALL_VCM)
    c = make_synthetic_hitsz_vcm(tmp_path / "c", seed=5, **SMALL_VCM)
    assert _digest(a) == _digest(b) != _digest(c)
    d = make_synthetic_bupt_campus(tmp_path / "d", seed=4, **SMALL_BUPT)
    e = make_synthetic_bupt_campus(tmp_path / "e", seed=4, **SMALL_BUPT)
    assert _digest(d) == _digest(e)


def test_vcm_layout_and_metadata_format(tmp_path: Path) -> None:
    root = make_synthetic_hitsz_vcm(tmp_path / "v", seed=1, **SMALL_VCM)
    info = root / "info"
    assert sorted(p.name for p in info.iterdir()) == sorted(
        ["train_name.txt", "track_train_info.txt", "test_name.txt", "track_test_info.txt",
         "query_IDX.txt"])
    for p in info.iterdir():
        raw = p.read_bytes()
        assert raw.endswith(b"\n") and b"\r" not in raw and b"\n\n" not in raw
        assert b"  " not in raw and b"\t" not in raw
    assert len((info / "query_IDX.txt").read_text().splitlines()) == 1
    for split, folder in (("train", "Train"), ("test", "Test")):
        names = (info / f"{split}_name.txt").read_text().split("\n")[:-1]
        rows = [list(map(int, x.split(" ")))
                for x in (info / f"track_{split}_info.txt").read_text().split("\n")[:-1]]
        assert rows[0][1] == 1 and rows[-1][2] == len(names)  # rows tile the name list
        for (m, s, e, pid, cam), nxt in zip(rows, [*rows[1:], None]):
            assert nxt is None or nxt[1] == e + 1
            assert e - s + 1 <= 24
            for name in names[s - 1:e]:  # row columns agree with every name in the range
                assert name.startswith(f"{pid:04d}M{m}D{cam}T")
                frame = name.split("F")[1]
                mod = "ir" if m == 1 else "rgb"
                assert (root / folder / f"{pid:04d}" / mod / f"D{cam}" / frame).is_file()
        frames_per_folder: dict[tuple, list[str]] = {}
        for n in names:
            key = (n[:4], n[5], n[n.index("D"):n.index("T")])
            frames_per_folder.setdefault(key, []).append(n.split("F")[1])
        for frames in frames_per_folder.values():
            assert len(frames) == len(set(frames))  # F unique per (pid, modality, camera)
    with Image.open(next((root / "Test").rglob("ir/*/*.jpg"))) as im:
        assert im.size == (8, 16) and im.format == "JPEG"
    marker = json.loads((root / ".xreid-synthetic.json").read_text())
    assert marker["seed"] == 1 and marker["generator"] == "make_synthetic_hitsz_vcm"


def test_vcm_protocol_guarantees(tmp_path: Path) -> None:
    root = make_synthetic_hitsz_vcm(tmp_path / "v", seed=2, **SMALL_VCM)
    ds = HITSZVCM(root)
    q_rows = (root / "info/query_IDX.txt").read_text().split()
    rows = (root / "info/track_test_info.txt").read_text().split("\n")[:-1]
    assert [int(i) for i in q_rows] == [k + 1 for k, r in enumerate(rows) if r[0] == "1"]
    assert {t.pid for t in ds.train}.isdisjoint({t.pid for t in ds.query("i2v")})
    same_cam_pairs = 0
    for direction in ("i2v", "v2i"):
        gallery = ds.gallery(direction)
        for q in ds.query(direction):
            matches = [g for g in gallery if g.pid == q.pid]
            assert all(g.modality != q.modality for g in matches)
            assert any(g.camera != q.camera for g in matches)  # survives same-camera removal
            same_cam_pairs += any(g.camera == q.camera for g in matches)
    assert same_cam_pairs > 0  # the same-pid-same-camera removal has something to remove
    assert ds.num_dropped["train"] + ds.num_dropped["query_idx"] \
        + ds.num_dropped["other_test"] == 2 * SMALL_VCM["num_short"]


def test_bupt_layout_and_protocol(tmp_path: Path) -> None:
    root = make_synthetic_bupt_campus(tmp_path / "b", seed=3, fake_ir=True, **SMALL_BUPT)
    for name in ("train.txt", "train_auxiliary.txt", "query.txt", "gallery.txt"):
        raw = (root / name).read_bytes()
        assert raw.endswith(b"\n") and b"\n\n" not in raw and b"\r" not in raw
        assert all(len(line.split(b" ")) == 4 for line in raw.split(b"\n")[:-1])
    paths = json.loads((root / "data_paths.json").read_text())
    for pid, mods in paths.items():
        assert str(int(pid)) == pid and set(mods) == {"IR", "RGB"}
        for cam, tracks in mods["IR"].items():
            for tid, files in tracks.items():
                rgb = mods["RGB"][cam][tid]
                assert [f.replace("_IR_", "_RGB_").replace("/IR/", "/RGB/") for f in files] \
                    == rgb
                assert files[0].startswith(f"{pid}/IR/{cam}/{pid}_IR_{cam}_{tid}_")
                for f in rgb:
                    assert (root / "DATA" / f.replace("/RGB/", "/FakeIR/")).is_file()
    aux = (root / "train_auxiliary.txt").read_text().split("\n")[:-1]
    assert len(aux) == SMALL_BUPT["num_aux_ids"]
    ds = BUPTCampus(root)
    splits = [{t.pid for t in ds.train}, {int(x.split()[0]) for x in aux},
              {t.pid for t in ds.test_query}]
    assert all(a.isdisjoint(b) for i, a in enumerate(splits) for b in splits[i + 1:])
    assert len(ds.test_query) == SMALL_BUPT["num_test_ids"]  # one query tracklet per identity
    for direction in ("i2v", "v2i"):
        for q in ds.query(direction):
            matches = [g for g in ds.gallery(direction) if g.pid == q.pid]
            assert matches and any(g.camera != q.camera for g in matches)
    for pid in {t.pid for t in ds.train}:
        assert len({t.camera for t in ds.train if t.pid == pid}) >= 2


def test_infrared_is_not_grayscale() -> None:
    colours = np.concatenate([_TOPS, _BOTTOMS])
    lum = colours @ np.array([0.299, 0.587, 0.114])
    ir = thermal(colours)
    assert ir.min() >= 0.12 and ir.max() <= 0.88
    assert abs(np.corrcoef(lum, ir)[0, 1]) < 0.7
    # the luminance order of some colour pairs is reversed in infrared
    flips = (np.sign(lum[:, None] - lum[None]) * np.sign(ir[:, None] - ir[None]) < 0).sum() / 2
    assert flips > len(colours)


def test_aligned_pair_frames_differ_by_more_than_a_gray_mapping(tmp_path: Path) -> None:
    root = make_synthetic_bupt_campus(tmp_path / "b", seed=0, **{**SMALL_BUPT,
                                                                 "img_size": (64, 32)})
    ds = BUPTCampus(root)
    r2 = []
    for v, i in ds.train_pairs[:4]:
        rgb = load_frame(ds.train[v].frames[0]).astype(np.float64)
        ir = load_frame(ds.train[i].frames[0])[..., 0].astype(np.float64)
        gray = rgb @ np.array([0.299, 0.587, 0.114])
        r2.append(np.corrcoef(gray.ravel(), ir.ravel())[0, 1] ** 2)
    assert np.mean(r2) < 0.6


def _band_features(path_list: tuple[str, ...]) -> np.ndarray:
    """Mean colour of 4 horizontal body bands in the central columns, averaged over frames."""
    x = np.stack([load_frame(f) for f in path_list[::3]]).astype(np.float64) / 255.0
    H, W = x.shape[1:3]
    c = x[:, :, W // 4: 3 * W // 4]
    bands = ((0.1, 0.3), (0.3, 0.5), (0.5, 0.75), (0.75, 0.95))
    return np.concatenate([c[:, int(H * a):int(H * b)].mean((0, 1, 2)) for a, b in bands])


def test_identities_separable_within_each_modality(learn_root: Path) -> None:
    ds = HITSZVCM(learn_root)
    C = ds.num_train_identities
    for modality in (VISIBLE, INFRARED):
        ts = [t for t in ds.train if t.modality == modality]
        X = np.stack([_band_features(t.frames) for t in ts])
        y = np.array([t.label for t in ts])
        d = ((X[:, None] - X[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        acc = (y[d.argmin(1)] == y).mean()  # leave-one-out 1-NN
        assert acc > 3.0 / C, (modality, acc)


def test_cross_modal_link_is_learnable_but_not_given(learn_root: Path) -> None:
    ds = HITSZVCM(learn_root)
    tv = [t for t in ds.train if t.modality == VISIBLE]
    ti = [t for t in ds.train if t.modality == INFRARED]
    V = np.stack([_band_features(t.frames) for t in tv])
    I_ = np.stack([_band_features(t.frames)[::3] for t in ti])
    yv, yi = np.array([t.label for t in tv]), np.array([t.label for t in ti])
    target = np.stack([I_[yi == c].mean(0) for c in range(ds.num_train_identities)])[yv]
    A = np.c_[V, np.ones(len(V))]
    W = np.linalg.solve(A.T @ A + 0.05 * np.eye(A.shape[1]), A.T @ target)  # tiny linear map

    q, g = ds.query("i2v"), ds.gallery("i2v")
    Q = np.stack([_band_features(t.frames)[::3] for t in q])
    G = np.stack([_band_features(t.frames) for t in g])
    qp, gp = np.array([t.pid for t in q]), np.array([t.pid for t in g])

    def auc(G_: np.ndarray) -> float:
        d = ((Q[:, None] - G_[None]) ** 2).sum(-1)
        return float(np.mean([(d[k][gp == qp[k]][:, None] < d[k][gp != qp[k]][None]).mean()
                              for k in range(len(Q))]))

    learned = auc(np.c_[G, np.ones(len(G))] @ W)
    gray = auc(G.reshape(len(G), 4, 3) @ np.array([0.299, 0.587, 0.114]))
    assert learned > 0.6 and learned > gray + 0.03, (learned, gray)


def test_overwrite_rules(tmp_path: Path) -> None:
    root = make_synthetic_hitsz_vcm(tmp_path / "v", seed=0, **SMALL_VCM)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_synthetic_hitsz_vcm(root, seed=0, **SMALL_VCM)
    before = _digest(root)
    make_synthetic_hitsz_vcm(root, seed=0, overwrite=True, **SMALL_VCM)
    assert _digest(root) == before
    user = tmp_path / "user"
    user.mkdir()
    (user / "precious.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="marker"):
        make_synthetic_bupt_campus(user, overwrite=True, **SMALL_BUPT)
    assert (user / "precious.txt").read_text() == "keep"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"num_train_ids": 0}, "num_train_ids"),
    ({"test_tracklets_per_id": 1}, "test_tracklets_per_id"),
    ({"num_cameras": 13}, "num_cameras"),
    ({"num_cameras": 1}, "num_cameras"),
    ({"frames": (10, 5)}, "frames"),
    ({"img_size": (8, 4)}, "img_size"),
    ({"layout": "weird"}, "layout"),
])
def test_vcm_argument_errors(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_synthetic_hitsz_vcm(tmp_path / "x", **{**SMALL_VCM, **kwargs})
    assert not (tmp_path / "x").exists()

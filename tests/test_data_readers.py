"""Readers of the real layouts (HITSZ-VCM, BUPTCampus) on synthetic datasets written to disk."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from xreid import INFRARED, VISIBLE
from xreid.data import (
    BUPT_CAMERAS,
    HITSZVCM,
    BUPTCampus,
    DataError,
    DataFileNotFoundError,
    Tracklet,
    make_synthetic_bupt_campus,
    make_synthetic_hitsz_vcm,
)

VCM_KW = dict(num_train_ids=4, num_test_ids=3, tracklets_per_id=2, test_tracklets_per_id=2,
              frames=(12, 15), num_short=2, num_cameras=4, img_size=(16, 8), seed=3)
BUPT_KW = dict(num_train_ids=5, num_aux_ids=2, num_test_ids=3, pairs_per_id=2,
               test_pairs_per_id=3, frames=(2, 5), num_single_frame=1, img_size=(16, 8), seed=5)


@pytest.fixture(scope="module")
def vcm_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_hitsz_vcm(tmp_path_factory.mktemp("vcm") / "VCM", **VCM_KW)


@pytest.fixture(scope="module")
def bupt_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_bupt_campus(tmp_path_factory.mktemp("bupt") / "BUPT", **BUPT_KW)


def _clone(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit(path: Path, fn) -> None:
    lines = path.read_text().splitlines()
    path.write_text("".join(f"{line}\n" for line in fn(lines)))


def _reference_vcm(root: Path, split: str) -> list[tuple[int, int, int, int, list[str]]]:
    """Slow, obvious parse: (modality code, pid, camera, n, frame names) per track row."""
    names = (root / "info" / f"{split}_name.txt").read_text().split("\n")
    rows = []
    for line in (root / "info" / f"track_{split}_info.txt").read_text().strip().split("\n"):
        m, s, e, pid, cam = map(int, line.split(" "))
        rows.append((m, pid, cam, e - s + 1, names[s - 1:e]))
    return rows


def _rel(path: str, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()


# --------------------------------------------------------------------------- HITSZ-VCM
class TestHITSZVCM:
    def test_train_matches_reference_parse(self, vcm_root: Path) -> None:
        ds = HITSZVCM(vcm_root)
        ref = [r for r in _reference_vcm(vcm_root, "train") if r[3] >= 12]
        assert len(ds.train) == len(ref)
        pids = sorted({r[1] for r in ref})
        for t, (m, pid, cam, n, names) in zip(ds.train, ref):
            assert t.pid == pid and t.camera == cam - 1 and len(t.frames) == n
            assert t.modality == (INFRARED if m == 1 else VISIBLE)
            assert t.label == pids.index(pid)  # ascending pid order
            # decoded path: Train/<pid4>/<ir|rgb>/D<cam>/<F>.jpg, T not in the path
            for path, name in zip(t.frames, names):
                pid4, rest = name[:4], name[4:]
                frame = rest.split("F", 1)[1]
                cam_s = rest[rest.index("D"):rest.index("T")]
                folder = "ir" if rest[1] == "1" else "rgb"
                assert _rel(path, vcm_root) == f"Train/{pid4}/{folder}/{cam_s}/{frame}"
                assert os.path.isfile(path)
        assert ds.num_train_identities == len(pids) == VCM_KW["num_train_ids"]
        assert {t.label for t in ds.train} == set(range(len(pids)))
        assert all(isinstance(t, Tracklet) for t in ds.train)

    def test_directions_follow_query_idx(self, vcm_root: Path) -> None:
        ds = HITSZVCM(vcm_root)
        rows = _reference_vcm(vcm_root, "test")
        q = {int(x) - 1 for x in (vcm_root / "info/query_IDX.txt").read_text().split()}
        exp_q = [r for i, r in enumerate(rows) if i in q and r[3] >= 12]
        exp_g = [r for i, r in enumerate(rows) if i not in q and r[3] >= 12]
        i2v_q, i2v_g = ds.query("i2v"), ds.gallery("i2v")
        assert [(t.pid, t.camera + 1, len(t.frames)) for t in i2v_q] == [
            (r[1], r[2], r[3]) for r in exp_q]
        assert [(t.pid, t.camera + 1, len(t.frames)) for t in i2v_g] == [
            (r[1], r[2], r[3]) for r in exp_g]
        assert ds.query("v2i") == i2v_g and ds.gallery("v2i") == i2v_q
        assert all(t.modality == INFRARED for t in i2v_q)
        assert all(t.modality == VISIBLE for t in i2v_g)
        assert all(t.label == -1 for t in i2v_q + i2v_g)
        assert {t.pid for t in i2v_q}.isdisjoint({t.pid for t in ds.train})
        assert HITSZVCM.eval_remove_same_camera is True and HITSZVCM.name == "hitsz-vcm"

    def test_query_idx_any_whitespace_and_lines_and_a_visible_row_is_refused(
            self, vcm_root: Path, tmp_path: Path) -> None:
        root = _clone(vcm_root, tmp_path / "r")
        idx = (root / "info/query_IDX.txt").read_text().split()
        half = len(idx) // 2
        (root / "info/query_IDX.txt").write_text(
            "\t".join(idx[:half]) + "\n\n  " + "  ".join(idx[half:]) + "\n")
        base = HITSZVCM(vcm_root)
        assert HITSZVCM(root).query("i2v") == [
            Tracklet(tuple(f.replace(str(vcm_root), str(root)) for f in t.frames), t.pid,
                     t.camera, t.modality) for t in base.query("i2v")]
        # a visible row in the index would make a visible I2V query: refused, naming the row
        rows = _reference_vcm(root, "test")
        rgb_row = next(i for i, r in enumerate(rows) if r[0] == 2 and r[3] >= 12)
        (root / "info/query_IDX.txt").write_text(" ".join([*idx, str(rgb_row + 1)]) + "\n")
        with pytest.raises(DataError, match=rf"query_IDX.txt: lists 1 visible rows .*rows "
                                            rf"{rgb_row + 1}\).*infrared"):
            HITSZVCM(root)

    def test_min_len_filter_counts(self, vcm_root: Path) -> None:
        rows = {s: _reference_vcm(vcm_root, s) for s in ("train", "test")}
        ds = HITSZVCM(vcm_root)
        short_train = sum(r[3] < 12 for r in rows["train"])
        short_test = sum(r[3] < 12 for r in rows["test"])
        assert short_train == short_test == VCM_KW["num_short"]
        assert ds.num_dropped["train"] == short_train
        assert ds.num_dropped["query_idx"] + ds.num_dropped["other_test"] == short_test
        all_ = HITSZVCM(vcm_root, min_len=1)
        assert sum(all_.num_dropped.values()) == 0
        assert len(all_.train) == len(rows["train"])
        assert len(all_.query("i2v")) + len(all_.gallery("i2v")) == len(rows["test"])
        assert "dropped 4 tracklets < 12 frames" in ds.summary()
        assert "\n" not in ds.summary()

    @pytest.mark.parametrize("layout", ["mitml", "flat"])
    def test_layout_variants(self, layout: str, tmp_path: Path, vcm_root: Path) -> None:
        root = make_synthetic_hitsz_vcm(tmp_path / layout, layout=layout, **VCM_KW)
        assert (root / "info").is_dir() == (layout == "mitml")
        assert not (root / "Train").exists()
        ds, ref = HITSZVCM(root), HITSZVCM(vcm_root)
        assert [(_rel(f, root), t.pid, t.camera, t.label) for t in ds.train for f in t.frames] \
            == [(_rel(f, vcm_root)[len("Train/"):], t.pid, t.camera, t.label)
                for t in ref.train for f in t.frames]
        assert [t.pid for t in ds.query("v2i")] == [t.pid for t in ref.query("v2i")]
        assert all(os.path.isfile(f) for t in ds.gallery("i2v") for f in t.frames)

    def test_cameras_zero_based(self, vcm_root: Path) -> None:
        ds = HITSZVCM(vcm_root)
        every = ds.train + ds.query("i2v") + ds.gallery("i2v")
        assert min(t.camera for t in every) >= 0
        assert ds.num_cameras == 1 + max(t.camera for t in every) <= VCM_KW["num_cameras"]

    def test_direction_and_argument_errors(self, vcm_root: Path) -> None:
        ds = HITSZVCM(vcm_root)
        for bad in ("I2V", "rgb2ir", None):
            with pytest.raises(ValueError, match="direction"):
                ds.query(bad)
            with pytest.raises(ValueError, match="direction"):
                ds.gallery(bad)
        with pytest.raises(ValueError, match="min_len"):
            HITSZVCM(vcm_root, min_len=0)

    def test_missing_root_and_files(self, vcm_root: Path, tmp_path: Path) -> None:
        with pytest.raises(DataFileNotFoundError, match="nowhere"):
            HITSZVCM(tmp_path / "nowhere")
        root = _clone(vcm_root, tmp_path / "r")
        (root / "info/query_IDX.txt").unlink()
        with pytest.raises(FileNotFoundError, match=r"info/query_IDX\.txt"):
            HITSZVCM(root)
        shutil.rmtree(root / "info")
        with pytest.raises(DataFileNotFoundError, match="train_name.txt"):
            HITSZVCM(root)

    @pytest.mark.parametrize(("fname", "lineno", "edit", "match"), [
        ("track_train_info.txt", 2, lambda s: s + " 7", "expected 5 integers"),
        ("track_train_info.txt", 3, lambda s: s.replace(" ", " x", 1), "malformed row"),
        ("track_train_info.txt", 1, lambda s: "3" + s[1:], "modality must be 1"),
        ("track_test_info.txt", 2, lambda s: " ".join([*s.split()[:2], "99999",
                                                       *s.split()[3:]]), "not within"),
        ("track_test_info.txt", 1, lambda s: " ".join([*s.split()[:4], "0"]), "camera"),
        ("train_name.txt", 5, lambda s: s.replace("M", "X"), "malformed frame name"),
        ("query_IDX.txt", 1, lambda s: s + " abc", "malformed index"),
        ("query_IDX.txt", 1, lambda s: s + " 9999", "not within"),
        ("query_IDX.txt", 1, lambda s: s + " " + s.split()[0], "listed twice"),
    ])
    def test_malformed_lines_name_file_and_line(self, vcm_root: Path, tmp_path: Path,
                                                fname: str, lineno: int, edit, match: str
                                                ) -> None:
        root = _clone(vcm_root, tmp_path / "r")
        path = root / "info" / fname
        _edit(path, lambda lines: [edit(x) if i == lineno - 1 else x
                                   for i, x in enumerate(lines)])
        with pytest.raises(DataError, match=match) as err:
            HITSZVCM(root)
        assert f"{path}:{lineno}" in str(err.value)

    def test_blank_line_inside_file(self, vcm_root: Path, tmp_path: Path) -> None:
        root = _clone(vcm_root, tmp_path / "r")
        path = root / "info/train_name.txt"
        _edit(path, lambda lines: [*lines[:3], "", *lines[3:]])
        with pytest.raises(DataError, match=rf"{path}:4: blank line"):
            HITSZVCM(root)
        # trailing blank lines and CRLF endings are fine
        root2 = _clone(vcm_root, tmp_path / "r2")
        p2 = root2 / "info/track_train_info.txt"
        p2.write_bytes(p2.read_bytes().replace(b"\n", b"\r\n") + b"\r\n\r\n")
        assert len(HITSZVCM(root2).train) == len(HITSZVCM(vcm_root).train)

    def test_missing_frames(self, vcm_root: Path, tmp_path: Path) -> None:
        root = _clone(vcm_root, tmp_path / "r")
        t = HITSZVCM(root).train[3]
        Path(t.frames[5]).unlink()  # a middle frame: only the full check notices
        HITSZVCM(root)
        with pytest.raises(DataFileNotFoundError, match=t.frames[5]):
            HITSZVCM(root, verify_files=True)
        Path(t.frames[0]).unlink()
        with pytest.raises(DataFileNotFoundError, match=t.frames[0]):
            HITSZVCM(root)

    def test_identity_without_a_modality(self, vcm_root: Path, tmp_path: Path) -> None:
        root = _clone(vcm_root, tmp_path / "r")
        _edit(root / "info/track_train_info.txt",
              lambda lines: [x for x in lines if not (x.startswith("1 ") and x.split()[3] == "2")])
        with pytest.raises(DataError, match=r"pid 2 has no infrared"):
            HITSZVCM(root)

    def test_name_row_mismatch_warns(self, vcm_root: Path, tmp_path: Path) -> None:
        root = _clone(vcm_root, tmp_path / "r")
        _edit(root / "info/track_train_info.txt",
              lambda lines: [" ".join([*x.split()[:4], "4"]) if i == 0 else x
                             for i, x in enumerate(lines)])
        with pytest.warns(UserWarning, match="disagree with their track row"):
            ds = HITSZVCM(root)
        assert ds.train[0].camera == 3  # the row wins, as in the official loaders


# --------------------------------------------------------------------------- BUPTCampus
class TestBUPTCampus:
    def test_aligned_pairs(self, bupt_root: Path) -> None:
        ds = BUPTCampus(bupt_root)
        lines = (bupt_root / "train.txt").read_text().split("\n")[:-1]
        assert len(ds.train_pairs) == len(lines) and len(ds.train) == 2 * len(lines)
        for (v, i), line in zip(ds.train_pairs, lines):
            tv, ti = ds.train[v], ds.train[i]
            pid, _, cam, _tid = line.split(" ")
            assert (tv.modality, ti.modality) == (VISIBLE, INFRARED)
            assert tv.pid == ti.pid == int(pid)
            assert tv.camera == ti.camera == BUPT_CAMERAS.index(cam)
            assert tv.label == ti.label >= 0 and len(tv.frames) == len(ti.frames)
            for fv, fi in zip(tv.frames, ti.frames):
                assert _rel(fv, bupt_root).replace("RGB", "IR") == _rel(fi, bupt_root)
                assert _rel(fv, bupt_root).startswith(f"DATA/{pid}/RGB/{cam}/{pid}_RGB_{cam}_")
                assert os.path.isfile(fv) and os.path.isfile(fi)

    def test_numeric_label_order(self, bupt_root: Path) -> None:
        ds = BUPTCampus(bupt_root)
        pids = sorted({t.pid for t in ds.train})
        assert sorted(pids, key=str) != pids  # the data makes string order differ
        assert {t.pid: t.label for t in ds.train} == {p: i for i, p in enumerate(pids)}
        assert ds.num_train_identities == BUPT_KW["num_train_ids"]

    def test_directions(self, bupt_root: Path) -> None:
        ds = BUPTCampus(bupt_root)

        def rows(name: str) -> list[list[str]]:
            return [x.split(" ") for x in (bupt_root / name).read_text().split("\n")[:-1]]

        q, g = rows("query.txt"), rows("gallery.txt")
        for direction, qmod, gmod in (("i2v", "IR", "RGB"), ("v2i", "RGB", "IR")):
            assert [(t.pid, BUPT_CAMERAS[t.camera]) for t in ds.query(direction)] == [
                (int(r[0]), r[2]) for r in q if r[1] == qmod]
            assert [(t.pid, BUPT_CAMERAS[t.camera]) for t in ds.gallery(direction)] == [
                (int(r[0]), r[2]) for r in g if r[1] == gmod]
        assert {t.modality for t in ds.query("i2v")} == {INFRARED}
        assert {t.modality for t in ds.gallery("i2v")} == {VISIBLE}
        assert len(ds.test_query) == len(q) and len(ds.test_gallery) == len(g)
        assert BUPTCampus.eval_remove_same_camera is False and ds.num_cameras == 6
        assert BUPTCampus.name == "bupt-campus"
        with pytest.raises(ValueError, match="direction"):
            ds.query("all")

    def test_auxiliary_and_min_len(self, bupt_root: Path) -> None:
        base = BUPTCampus(bupt_root)
        aux = BUPTCampus(bupt_root, include_auxiliary=True)
        assert aux.num_train_identities == base.num_train_identities + BUPT_KW["num_aux_ids"]
        pids = sorted({t.pid for t in aux.train})
        assert all(t.label == pids.index(t.pid) for t in aux.train)
        x = BUPTCampus(bupt_root, min_len=2)
        assert x.num_dropped["train"] == 2 * BUPT_KW["num_single_frame"]
        assert len(x.train) == len(base.train) - 2 * BUPT_KW["num_single_frame"]
        assert "\n" not in aux.summary() and "with auxiliary" in aux.summary()

    def test_data_folder_as_root(self, bupt_root: Path) -> None:
        assert BUPTCampus(bupt_root / "DATA").train == BUPTCampus(bupt_root).train

    def test_missing_files(self, bupt_root: Path, tmp_path: Path) -> None:
        with pytest.raises(DataFileNotFoundError, match="missing"):
            BUPTCampus(tmp_path / "missing")
        root = _clone(bupt_root, tmp_path / "r")
        (root / "gallery.txt").unlink()
        with pytest.raises(FileNotFoundError, match=r"gallery\.txt"):
            BUPTCampus(root)
        (root / "data_paths.json").unlink()
        with pytest.raises(DataFileNotFoundError, match=r"data_paths\.json"):
            BUPTCampus(root)
        root2 = _clone(bupt_root, tmp_path / "r2")
        (root2 / "train_auxiliary.txt").unlink()
        BUPTCampus(root2)  # only needed with include_auxiliary
        with pytest.raises(DataFileNotFoundError, match=r"train_auxiliary\.txt"):
            BUPTCampus(root2, include_auxiliary=True)
        t = BUPTCampus(root2).gallery("v2i")[0]
        Path(t.frames[0]).unlink()
        with pytest.raises(DataFileNotFoundError, match=t.frames[0]):
            BUPTCampus(root2)

    @pytest.mark.parametrize(("fname", "edit", "match"), [
        ("train.txt", lambda s: s.replace("RGB/IR", "RGB"), "modality must be RGB/IR"),
        ("query.txt", lambda s: s.replace(s.split()[2], "XYZ"), "unknown camera 'XYZ'"),
        ("gallery.txt", lambda s: s + " extra", "expected 4 fields"),
        ("gallery.txt", lambda s: "p" + s, "malformed line"),
        ("query.txt", lambda s: " ".join([*s.split()[:3], "77"]), r"no entry \["),
    ])
    def test_malformed_lines(self, bupt_root: Path, tmp_path: Path, fname: str, edit,
                             match: str) -> None:
        root = _clone(bupt_root, tmp_path / "r")
        _edit(root / fname, lambda lines: [edit(x) if i == 1 else x
                                           for i, x in enumerate(lines)])
        with pytest.raises(DataError, match=match) as err:
            BUPTCampus(root)
        assert f"{root / fname}:2" in str(err.value)

    def test_json_problems(self, bupt_root: Path, tmp_path: Path) -> None:
        root = _clone(bupt_root, tmp_path / "r")
        paths = json.loads((root / "data_paths.json").read_text())
        pid, _, cam, tid = (root / "train.txt").read_text().split("\n")[0].split(" ")
        paths[pid]["IR"][cam][tid] = paths[pid]["IR"][cam][tid][:-1] or ["x.jpg", "y.jpg"]
        (root / "data_paths.json").write_text(json.dumps(paths))
        with pytest.raises(DataError, match=r"train\.txt:1: aligned pair has"):
            BUPTCampus(root)
        (root / "data_paths.json").write_text("{\n  \"1\": [,\n}")
        with pytest.raises(DataError, match=r"data_paths\.json:2: malformed JSON"):
            BUPTCampus(root)

    def test_identity_without_a_modality_is_named(self) -> None:
        from xreid.data._io import check_both_modalities

        ts = [Tracklet(("a.jpg",), 7, 0, VISIBLE), Tracklet(("b.jpg",), 9, 0, INFRARED),
              Tracklet(("c.jpg",), 9, 1, VISIBLE)]
        with pytest.raises(DataError, match="pid 7 has no infrared"):
            check_both_modalities(ts, "x")

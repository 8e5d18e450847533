"""Silent wrong results become errors or warnings (docs/reliability.md): embeddings that are
NaN, all zero, of two checkpoints or shared by query and gallery; protocol files whose rows
have the wrong modality or repeat; an empty split; a broken frame link; bad module inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from xreid import CrossModalConstraintLoss, build_backbone
from xreid.cli import main
from xreid.data import (
    HITSZVCM,
    BUPTCampus,
    DataError,
    TrackletFolder,
    make_synthetic_bupt_campus,
    make_synthetic_hitsz_vcm,
)
from xreid.inference import EmbeddingSet, save_embeddings


def _emb(path: Path, x: torch.Tensor, *, checkpoint: str = "run/checkpoint.pt",
         sources: list[str] | None = None, modality: int = 0) -> Path:
    n = x.shape[0]
    e = EmbeddingSet(x.float(), [f"t{i}" for i in range(n)], torch.arange(n),
                     torch.zeros(n, dtype=torch.long), torch.full((n,), modality),
                     sources or [f"/data/{modality}/t{i}" for i in range(n)])
    e.meta = {"checkpoint": checkpoint}
    save_embeddings(e, path)
    return path


@pytest.mark.parametrize("command", ["search", "show"])
def test_nan_embeddings_are_refused_before_anything_is_written(tmp_path, capsys, command):
    x = torch.randn(4, 8)
    x[2, 3] = float("nan")
    q, g = _emb(tmp_path / "q.safetensors", x), _emb(tmp_path / "g.safetensors",
                                                      torch.randn(5, 8), modality=1)
    out = tmp_path / ("r.json" if command == "search" else "r.png")
    assert main([command, str(q), str(g), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "NaN or infinite values in 1 of 4 tracklets (t2)" in err and str(q) in err
    assert not out.exists()


@pytest.mark.parametrize("command", ["search", "show"])
def test_embeddings_of_two_checkpoints_need_allow_mixed(tmp_path, capsys, command):
    q = _emb(tmp_path / "q.safetensors", torch.randn(3, 8), checkpoint="a/checkpoint.pt")
    g = _emb(tmp_path / "g.safetensors", torch.randn(3, 8), checkpoint="b/checkpoint.pt",
             modality=1)
    out = tmp_path / "r.json"
    assert main(["search", str(q), str(g), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "a/checkpoint.pt" in err and "b/checkpoint.pt" in err and "--allow-mixed" in err
    assert not out.exists()
    assert main(["search", str(q), str(g), "-o", str(out), "--allow-mixed"]) == 0


def test_all_zero_embeddings_and_shared_tracklets_warn(tmp_path, capsys):
    x = torch.randn(4, 8)
    x[1] = 0
    shared = ["/data/a", "/data/b", "/data/c", "/data/d"]
    q = _emb(tmp_path / "q.safetensors", x, sources=shared)
    g = _emb(tmp_path / "g.safetensors", torch.randn(4, 8), sources=shared)
    assert main(["search", str(q), str(g), "-o", str(tmp_path / "r.json")]) == 0
    err = capsys.readouterr().err
    assert "1 of 4 embeddings are all zero" in err
    assert "4 tracklets are in both the query and the gallery file" in err


def test_empty_or_one_modality_test_splits_are_refused(tmp_path):
    root = make_synthetic_bupt_campus(tmp_path / "B", num_train_ids=3, num_test_ids=2,
                                      img_size=(16, 8), seed=0)
    BUPTCampus(root)
    lines = (root / "query.txt").read_text().splitlines()
    (root / "query.txt").write_text("\n".join(l for l in lines if " RGB " in f" {l} ") + "\n")
    with pytest.raises(DataError, match=r"query.txt: expected IR query tracklets \(for I2V\)"):
        BUPTCampus(root)


def test_a_repeated_bupt_query_line_is_refused(tmp_path):
    root = make_synthetic_bupt_campus(tmp_path / "B", num_train_ids=3, num_test_ids=2,
                                      img_size=(16, 8), seed=0)
    lines = (root / "query.txt").read_text().splitlines()
    (root / "query.txt").write_text("\n".join([*lines, lines[0]]) + "\n")
    with pytest.raises(DataError, match=rf"query.txt:{len(lines) + 1}: the tracklet of line 1 "
                                        "is listed again"):
        BUPTCampus(root)


def test_hitsz_without_gallery_rows_is_refused(tmp_path):
    root = make_synthetic_hitsz_vcm(tmp_path / "V", num_train_ids=3, num_test_ids=2,
                                    img_size=(16, 8), seed=0)
    HITSZVCM(root, min_len=1)
    info = root / "info"
    rows = (info / "track_test_info.txt").read_text().splitlines()
    queries = sorted(int(v) for v in (info / "query_IDX.txt").read_text().split())
    # keep only the query rows: no gallery is left for I2V (V2I has no query)
    kept = [rows[i - 1] for i in queries]
    (info / "track_test_info.txt").write_text("\n".join(kept) + "\n")
    (info / "query_IDX.txt").write_text(" ".join(str(i + 1) for i in range(len(kept))) + "\n")
    with pytest.raises(DataError, match=r"track_test_info.txt: expected gallery tracklets"):
        HITSZVCM(root, min_len=1)


def test_a_self_referencing_frame_link_is_not_dropped_silently(tmp_path):
    for name in ("t0", "t1"):
        (tmp_path / "clips" / name).mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (8, 16)).save(tmp_path / "clips" / name / f"{k}.png")
    loop = tmp_path / "clips" / "t0" / "3.png"
    loop.symlink_to(loop)
    with pytest.raises(DataError, match=r"3.png is a symbolic link that leads to no file"):
        TrackletFolder(tmp_path / "clips", modality="visible")
    with pytest.warns(RuntimeWarning, match="symbolic link"):
        folder = TrackletFolder(tmp_path / "clips", modality="visible", skip_bad=True)
    assert [t.name for t in folder.tracklets] == ["t1"]
    shutil.rmtree(tmp_path / "clips")


def test_camera_coef_nan_and_complex_cmcl_inputs_are_refused():
    for coef in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="camera_coef: expected a finite number"):
            build_backbone("tiny", img_size=(32, 16), num_cameras=2, camera_coef=coef)
    a = torch.randn(3, 4, dtype=torch.complex64)
    with pytest.raises(ValueError, match="a: expected a floating-point tensor, got dtype "
                                         "torch.complex64"):
        CrossModalConstraintLoss()(a, a)
    with pytest.raises(ValueError, match="b: expected a floating-point"):
        CrossModalConstraintLoss()(torch.randn(3, 4), torch.ones(3, 4, dtype=torch.long))


def test_query_idx_listing_visible_rows_is_refused(tmp_path):
    root = make_synthetic_hitsz_vcm(tmp_path / "V", num_train_ids=3, num_test_ids=2,
                                    img_size=(16, 8), seed=0)
    info = root / "info"
    rows = (info / "track_test_info.txt").read_text().splitlines()
    visible = [i + 1 for i, r in enumerate(rows) if r.split()[0] == "2"]
    queries = (info / "query_IDX.txt").read_text().split()
    (info / "query_IDX.txt").write_text(" ".join([*queries, str(visible[0])]) + "\n")
    with pytest.raises(DataError, match=rf"query_IDX.txt: lists 1 visible rows of "
                                        rf"track_test_info.txt \(rows {visible[0]}\); the I2V "
                                        "queries must be infrared rows"):
        HITSZVCM(root, min_len=1)

"""After training: load_model, TrackletFolder, embeddings, search, pictures, the xreid CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from tolerance import rounding_tol, vit_roundings

from xreid.cli import main
from xreid.data import ClipTransform, DataError, TrackletFolder, sample_frame_indices
from xreid.data.preprocessing import evaluation_preprocessing
from xreid.engine import TrainConfig, build_trainer
from xreid.engine.build import build_model
from xreid.engine.sections import FLAT_OPTIONS
from xreid.inference import (
    EmbeddingSet,
    average_precisions,
    exact_search,
    faiss_search,
    load_embeddings,
    load_model,
    save_embeddings,
)
from xreid.models.spec import model_spec

NUM_IDS, NUM_CAMS = 4, 2
COLORS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]


# the model of _tiny_config: patch 8x8x3, D 32, depth 1, 1 + 8 tokens, then MII over the 3
# frames and the embedding head
_EMBED_TOL = rounding_tol(torch.float32, vit_roundings(patch_inputs=8 * 8 * 3, dim=32, depth=1,
                                                       tokens=9, extra=2 * (10 * 32 + 2 * 9 * 3)))


def _tiny_config(tmp: Path) -> TrainConfig:
    return TrainConfig.from_preset("demo", output_dir=str(tmp), use_cameras=True, embed_dim=32,
                                   weights=None,
                                   depth=1, num_heads=2, num_frames=3, img_size=(32, 16))


def _make_checkpoint(path: Path, cfg: TrainConfig, *, earlier: bool = False) -> torch.nn.Module:
    """A training checkpoint of ``cfg``'s model; ``earlier``: as an earlier version wrote it
    (flat configuration, no identity/camera counts, no model spec or preprocessing)."""
    torch.manual_seed(0)
    model = build_model(cfg, NUM_IDS, NUM_CAMS)
    for name, buf in model.named_buffers():  # non-trivial BatchNorm statistics
        if name.endswith("running_mean"):
            buf.copy_(torch.randn_like(buf) * 0.1)
        elif name.endswith("running_var"):
            buf.copy_(torch.rand_like(buf) + 0.5)
    state = {"format": "xreid-train-checkpoint-v1", "config": cfg.to_dict(),
             "model": model.state_dict()}
    if earlier:
        flat = {old: cfg.flat_items()[new] for old, new in FLAT_OPTIONS.items()}
        state["config"] = {**flat, "preset": cfg.preset, "model_preset": "paper",
                           "loss_preset": "paper"}
    else:
        state.update(num_identities=NUM_IDS, num_cameras=NUM_CAMS,
                     model_spec=model_spec(cfg.model, img_size=cfg.data.img_size,
                                           num_identities=NUM_IDS, num_cameras=NUM_CAMS,
                                           use_cameras=cfg.data.use_cameras),
                     preprocessing=evaluation_preprocessing(cfg.data).to_dict())
    torch.save(state, path)
    return model.eval()


def _frame(pid: int, modality: int, k: int) -> np.ndarray:
    rng = np.random.default_rng(pid * 100 + modality * 10 + k)
    img = np.full((40, 20, 3), COLORS[pid], dtype=np.uint8)
    if modality == 1:  # infrared: grey version
        img[:] = int(np.mean(COLORS[pid]))
    return np.clip(img + rng.integers(-30, 30, img.shape), 0, 255).astype(np.uint8)


def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=5)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _write_folder(root: Path, modality: int, *, split: str = "", n_frames: int = 5) -> Path:
    root.mkdir(parents=True)
    rows = ["tracklet,pid,camera,modality" + (",split" if split else "")]
    for pid in range(NUM_IDS):
        for c in range(2):
            name = f"p{pid}_c{c}"
            d = root / name
            d.mkdir()
            for k in range(n_frames):
                Image.fromarray(_frame(pid, modality, k + 7 * c)).save(d / f"frame{k}.png")
            mod = "visible" if modality == 0 else "infrared"
            rows.append(f"{name},{pid},{c},{mod}" + (f",{split}" if split else ""))
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("after_training")
    cfg = _tiny_config(tmp / "run")
    ckpt = tmp / "checkpoint.pt"
    model = _make_checkpoint(ckpt, cfg)
    query = _write_folder(tmp / "query", 1)
    gallery = _write_folder(tmp / "gallery", 0)
    qe, ge = tmp / "q.safetensors", tmp / "g.safetensors"
    assert main(["embed", str(ckpt), str(query), "-o", str(qe), "--quiet", "--device",
                 "cpu"]) == 0
    assert main(["embed", str(ckpt), str(gallery), "-o", str(ge), "--quiet", "--device",
                 "cpu"]) == 0
    return {"tmp": tmp, "cfg": cfg, "ckpt": ckpt, "model": model, "query": query,
            "gallery": gallery, "qe": qe, "ge": ge}


# ------------------------------------------------------------------------------ load_model
def test_load_model_rebuilds_model_and_preprocessing(env, tmp_path):
    loaded = load_model(env["ckpt"], device="cpu")
    pre = loaded.preprocessing
    assert pre.img_size == (32, 16) and pre.num_frames == 3 and pre.sampling == "chunk_first"
    assert pre.mean == pytest.approx((0.485, 0.456, 0.406))
    assert (loaded.num_identities, loaded.num_cameras) == (NUM_IDS, NUM_CAMS)
    assert not loaded.model.training
    x = torch.randn(2, 3, 3, 32, 16)
    with torch.no_grad():
        assert torch.equal(loaded.model.embed(x), env["model"].embed(x))
    # a checkpoint of an earlier version (flat config, no spec): refused with the command
    # that converts it; the converted file loads the same model
    old = tmp_path / "old.pt"
    _make_checkpoint(old, env["cfg"], earlier=True)
    with pytest.raises(ValueError, match=r"earlier xreid version \(no model_spec\); convert it "
                                         r"once with `xreid-convert --upgrade .*old\.pt NEW\.pt`"):
        load_model(old, device="cpu")
    from xreid.convert import main as convert_main

    new = tmp_path / "new.pt"
    assert convert_main(["--upgrade", str(old), str(new)]) == 0
    assert convert_main(["--upgrade", str(old), str(old)]) == 1  # never over its input
    again = load_model(new, device="cpu")
    assert (again.num_identities, again.num_cameras) == (NUM_IDS, NUM_CAMS)
    assert again.preprocessing == loaded.preprocessing
    with torch.no_grad():
        assert torch.equal(again.model.embed(x), env["model"].embed(x))


def test_load_model_rejects_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_model(tmp_path / "missing.pt")
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(ValueError, match="not an xreid training checkpoint.*format"):
        load_model(plain)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": "xreid-train-checkpoint-v1", "obj": Path("x")}, unsafe)
    with pytest.raises(ValueError, match="holds Python objects other than tensors.*nothing in "
                                         "it was executed"):
        load_model(unsafe)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not an xreid training checkpoint"):
        load_model(text)


# --------------------------------------------------------------------------- TrackletFolder
def test_tracklet_folder_natural_order_labels_and_modality_flag(tmp_path):
    d = tmp_path / "root" / "walker"
    d.mkdir(parents=True)
    for k in (10, 2, 1):
        Image.fromarray(_frame(0, 0, k)).save(d / f"frame{k}.png")
    (d / "notes.txt").write_text("ignored")
    folder = TrackletFolder(tmp_path / "root", modality="infrared")
    t = folder[0]
    assert [Path(f).name for f in t.frames] == ["frame1.png", "frame2.png", "frame10.png"]
    assert (t.pid, t.camera, t.modality, t.kind) == (-1, -1, 1, "frames")
    with pytest.raises(DataError, match="modality unknown"):
        TrackletFolder(tmp_path / "root")
    (tmp_path / "root" / "labels.csv").write_text("tracklet,pid,modality\nwalker,7,visible\n")
    t = TrackletFolder(tmp_path / "root", modality="infrared")[0]
    assert (t.pid, t.modality) == (7, 0)  # labels.csv wins over the flag


def test_tracklet_folder_bad_inputs_raise_or_skip(tmp_path):
    root = tmp_path / "root"
    (root / "empty").mkdir(parents=True)
    (root / "ok").mkdir()
    Image.fromarray(_frame(1, 0, 0)).save(root / "ok" / "0.png")
    with pytest.raises(DataError, match="empty"):
        TrackletFolder(root, modality="visible")
    with pytest.warns(RuntimeWarning, match="empty"):
        assert len(TrackletFolder(root, modality="visible", skip_bad=True)) == 1
    (root / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(DataError, match="broken.mp4"):
        TrackletFolder(root, modality="visible", skip_bad=False)
    (root / "empty").rmdir()
    with pytest.warns(RuntimeWarning, match="broken.mp4"):
        names = [t.name for t in TrackletFolder(root, modality="visible", skip_bad=True)]
    assert names == ["ok"]
    (root / "labels.csv").write_text("tracklet,pid\nok,x\n")
    with pytest.raises(DataError, match=r"labels.csv:2: pid"):
        TrackletFolder(root, modality="visible", skip_bad=True)


def test_video_tracklet_embeds_like_its_frames(env, tmp_path):
    frames = [_frame(2, 0, k) for k in range(6)]
    root = tmp_path / "videos"
    root.mkdir()
    _write_video(root / "clip.mp4", frames)
    folder = TrackletFolder(root, modality="visible")
    assert folder[0].kind == "video" and folder[0].name == "clip"
    from xreid.data import read_video_frames

    decoded = read_video_frames(root / "clip.mp4")
    assert len(decoded) == 6 and decoded[0].shape == (40, 20, 3)
    # lossy codec: the colour survives, the pixel noise does not
    assert np.abs(decoded[3].mean((0, 1)) - frames[3].mean((0, 1))).max() < 8
    out = tmp_path / "v.safetensors"
    assert main(["embed", str(env["ckpt"]), str(root), "-o", str(out), "--quiet",
                 "--modality", "visible"]) == 0
    emb = load_embeddings(out)
    loaded = load_model(env["ckpt"], device="cpu")
    idx = sample_frame_indices(6, 3, "chunk_first")
    clip = torch.from_numpy(np.stack([decoded[i] for i in idx])).permute(0, 3, 1, 2)
    video = ClipTransform((32, 16), train=False, normalization="imagenet")(clip)
    with torch.no_grad():
        ref = loaded.model.embed(video[None])
    torch.testing.assert_close(emb.embeddings, ref, **_EMBED_TOL)


# ---------------------------------------------------------------------------------- embed
def test_embed_equals_model_embed_on_the_same_clip(env):
    emb = load_embeddings(env["qe"])
    assert len(emb) == 2 * NUM_IDS and emb.dim == env["model"].embedding_dim
    assert emb.names[:2] == ["p0_c0", "p0_c1"]
    assert emb.pids.tolist() == [p for p in range(NUM_IDS) for _ in range(2)]
    assert emb.cameras.tolist() == [0, 1] * NUM_IDS
    assert set(emb.modalities.tolist()) == {1}
    i = 5  # p2_c1
    frames = sorted(Path(emb.sources[i]).glob("*.png"), key=lambda p: int(p.stem[5:]))
    idx = sample_frame_indices(len(frames), 3, "chunk_first")
    clip = torch.from_numpy(np.stack([np.asarray(Image.open(frames[k]).convert("RGB"))
                                      for k in idx])).permute(0, 3, 1, 2)
    video = ClipTransform((32, 16), train=False, normalization="imagenet")(clip)
    with torch.no_grad():
        ref = env["model"].embed(video[None])[0]
    torch.testing.assert_close(emb.embeddings[i], ref, **_EMBED_TOL)


def test_embed_skip_bad_and_error(env, tmp_path, capsys):
    root = tmp_path / "mixed"
    (root / "good").mkdir(parents=True)
    Image.fromarray(_frame(0, 0, 0)).save(root / "good" / "0.png")
    (root / "bad").mkdir()
    (root / "bad" / "0.png").write_bytes(b"corrupt png")
    out = tmp_path / "m.safetensors"
    args = ["embed", str(env["ckpt"]), str(root), "-o", str(out), "--modality", "visible",
            "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("xreid: error:") and "0.png" in err and len(err.splitlines()) == 1
    assert main([*args, "--skip-bad"]) == 0
    assert "skipped bad" in capsys.readouterr().err
    assert load_embeddings(out).names == ["good"]
    (root / "broken.mkv").write_bytes(b"\x00" * 64)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "cannot decode video" in err and "broken.mkv" in err and len(err.splitlines()) == 1


# --------------------------------------------------------------------------------- search
def test_exact_search_matches_a_full_sort():
    g = torch.randn(57, 8)
    q = torch.randn(9, 8)
    g[10] = g[3]  # a tie: index 3 comes first
    q[0] = g[3] * 2
    res = exact_search(q, g, 6, chunk_size=4)
    qn, gn = torch.nn.functional.normalize(q, dim=1), torch.nn.functional.normalize(g, dim=1)
    dist = torch.cdist(qn.double(), gn.double())
    for i in range(9):
        order = sorted(range(57), key=lambda j: (round(float(dist[i, j]), 6), j))[:6]
        assert res.indices[i].tolist() == order
        # float32: two norms and a dot product over d = 8, a root; values up to 2
        torch.testing.assert_close(res.distances[i].double(), dist[i, order],
                                   **rounding_tol(torch.float32, 3 * 8 + 4, scale=2))
    assert res.indices[0, :2].tolist() == [3, 10]


def test_faiss_search_with_every_cell_probed_is_exact():
    g, q = torch.randn(400, 16), torch.randn(20, 16)
    exact = exact_search(q, g, 5)
    approx = faiss_search(q, g, 5, nlist=8, nprobe=8)
    assert torch.equal(exact.indices, approx.indices)
    torch.testing.assert_close(exact.distances, approx.distances,
                               **rounding_tol(torch.float32, 3 * 16 + 4, scale=2))


def test_search_cli_json_csv_and_metrics(env, capsys):
    tmp = env["tmp"]
    assert main(["search", str(env["qe"]), str(env["ge"]), "--top-k", "3", "-o",
                 str(tmp / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "R1=" in out and "mAP=" in out
    data = json.loads((tmp / "r.json").read_text())
    assert len(data["results"]) == 2 * NUM_IDS
    first = data["results"]["p0_c0"]
    assert [r["rank"] for r in first] == [1, 2, 3]
    assert first[0]["distance"] <= first[1]["distance"] <= first[2]["distance"]
    assert main(["search", str(env["qe"]), str(env["ge"]), "--top-k", "2", "-o",
                 str(tmp / "r.csv"), "--index", "faiss"]) == 0
    lines = (tmp / "r.csv").read_text().splitlines()
    assert lines[0] == "query,rank,gallery,distance,match" and len(lines) == 1 + 2 * 2 * NUM_IDS
    # metrics equal xreid.metrics.evaluate_ranking on the same distances
    from xreid.metrics import compute_distance, evaluate_ranking

    q, g = load_embeddings(env["qe"]), load_embeddings(env["ge"])
    r = evaluate_ranking(compute_distance(q.embeddings, g.embeddings), q.pids, g.pids, None,
                         None, remove_same_camera=False)
    assert f"mAP={100 * r.mAP:.2f}" in out


def test_bad_embedding_files_give_one_line_errors(env, tmp_path, capsys):
    small = EmbeddingSet(torch.randn(2, 5), ["a", "b"], torch.tensor([0, 1]),
                         torch.tensor([-1, -1]), torch.tensor([0, 0]))
    empty = EmbeddingSet(torch.zeros(0, 5), [], torch.zeros(0, dtype=torch.long),
                         torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    save_embeddings(small, tmp_path / "small.safetensors")
    save_embeddings(empty, tmp_path / "empty.safetensors")
    cases = [
        ([str(env["qe"]), str(tmp_path / "small.safetensors")], "different|size"),
        ([str(tmp_path / "empty.safetensors"), str(env["ge"])], "no entries"),
        ([str(env["ckpt"]), str(env["ge"])], "safetensors"),
    ]
    for files, pattern in cases:
        assert main(["search", *files, "-o", str(tmp_path / "r.json")]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("xreid: error:")
        import re

        assert re.search(pattern, err), err
    assert main(["embed", str(env["ge"]), str(env["query"]), "-o", "x.safetensors"]) == 1
    assert "not an xreid training checkpoint" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no entries"):
        main(["--debug", "search", str(tmp_path / "empty.safetensors"), str(env["ge"]), "-o",
              str(tmp_path / "r.json")])


# ---------------------------------------------------------------------------------- show
def test_show_and_worst_queries(env):
    tmp = env["tmp"]
    assert main(["show", str(env["qe"]), str(env["ge"]), "-o", str(tmp / "ranked.png"),
                 "--top-k", "4", "--num-queries", "3", "--height", "64"]) == 0
    im = Image.open(tmp / "ranked.png")
    assert im.width >= 4 * 32 + 4 * 32 and im.height > 3 * 64  # strip + 4 results, 3 rows
    assert main(["show", str(env["qe"]), str(env["ge"]), "-o", str(tmp / "worst.png"),
                 "--worst", "2", "--height", "64"]) == 0
    # the worst queries are those with the lowest AP
    q, g = load_embeddings(env["qe"]), load_embeddings(env["ge"])
    from xreid.metrics import compute_distance, evaluate_ranking

    dist = compute_distance(q.embeddings, g.embeddings)
    ap = average_precisions(dist, q.pids, g.pids)
    for i in range(len(q)):
        r = evaluate_ranking(dist[i:i + 1], q.pids[i:i + 1], g.pids, None, None,
                             remove_same_camera=False)
        assert float(ap[i]) == pytest.approx(r.mAP, abs=1e-12)


def test_tsne_picture(env):
    out = env["tmp"] / "tsne.png"
    assert main(["tsne", str(env["qe"]), str(env["ge"]), "-o", str(out), "--perplexity",
                 "5"]) == 0
    assert Image.open(out).width > 300


# --------------------------------------------------------------------------------- export
@pytest.mark.slow
def test_onnx_export_matches_pytorch(env):
    import onnxruntime as ort

    out = env["tmp"] / "model.onnx"
    assert main(["export", str(env["ckpt"]), "--format", "onnx", "-o", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 3):  # the batch axis is dynamic
        x = torch.randn(batch, 3, 3, 32, 16)
        with torch.no_grad():
            ref = env["model"].embed(x).numpy()
        got = session.run(None, {"video": x.numpy()})[0]
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-4


@pytest.mark.slow
def test_onnx_export_vit_b16(tmp_path):
    import onnxruntime as ort

    from xreid.inference import export_onnx, input_dims, onnx_files

    cfg = TrainConfig.from_preset("paper", root=str(tmp_path), img_size=(224, 112),
                                  num_frames=3, random_init=True)
    model = build_model(cfg, 5, 2).eval()
    export_onnx(model, tmp_path / "vit.onnx", num_frames=3, img_size=(224, 112),
                optimize=False)
    # one self-contained file (ViT-B/16 is far below the 2 GB limit), T dynamic
    assert onnx_files(tmp_path / "vit.onnx") == [tmp_path / "vit.onnx"]
    assert input_dims(tmp_path / "vit.onnx") == ["batch", "frames", 3, 224, 112]
    session = ort.InferenceSession(str(tmp_path / "vit.onnx"))
    for frames in (3, 4):
        x = torch.randn(1, frames, 3, 224, 112)
        with torch.no_grad():
            ref = model.embed(x).numpy()
        assert np.abs(session.run(None, {"video": x.numpy()})[0] - ref).max() <= 1e-4


# ------------------------------------------------------------------------ command, imports
def test_cli_help_lists_subcommands_and_convert_delegates(capsys):
    r = subprocess.run([sys.executable, "-m", "xreid", "--help"], capture_output=True,
                       text=True, check=True, cwd=Path(__file__).parents[1])
    for name in ("embed", "search", "show", "tsne", "export", "convert"):
        assert name in r.stdout
    with pytest.raises(SystemExit) as exc:
        main(["convert", "--help"])
    assert exc.value.code == 0
    assert "safetensors" in capsys.readouterr().out  # xreid.convert's own help text


def test_import_xreid_stays_light():
    code = ("import sys, xreid, xreid.data, xreid.inference, xreid.cli; xreid.load_model; "
            "heavy = [m for m in ('av', 'faiss', 'sklearn', 'onnx', 'onnxruntime', "
            "'matplotlib') if m in sys.modules]; print(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, cwd=Path(__file__).parents[1])
    assert r.stdout.strip() == "[]"


def test_skip_bad_warning_is_not_silent(tmp_path):
    root = tmp_path / "r"
    (root / "empty").mkdir(parents=True)
    (root / "ok").mkdir()
    Image.fromarray(_frame(0, 0, 0)).save(root / "ok" / "0.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TrackletFolder(root, modality="visible", skip_bad=True)
    assert any("empty" in str(w.message) for w in caught)


# ------------------------------------------------------------------- training on a folder
def _write_labelled(root: Path) -> Path:
    root.mkdir()
    rows = ["tracklet,pid,camera,modality,split"]
    for pid in range(NUM_IDS + 2):
        split = "train" if pid < NUM_IDS else "test"
        for mod, mname in ((0, "visible"), (1, "infrared")):
            name = f"id{pid}_{mname}"
            (root / name).mkdir()
            for k in range(4):
                Image.fromarray(_frame(pid % 4, mod, k)).save(root / name / f"{k}.png")
            rows.append(f"{name},{pid},{mod},{mname},{split}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_folder_reader_splits_and_errors(tmp_path):
    from xreid.data import FolderVVI

    root = _write_labelled(tmp_path / "own")
    reader = FolderVVI(root)
    assert reader.num_train_identities == NUM_IDS and reader.num_cameras == 2
    assert sorted(t.label for t in reader.train) == [i for i in range(NUM_IDS) for _ in "vi"]
    assert [(t.pid, t.modality) for t in reader.query("i2v")] == [(4, 1), (5, 1)]
    assert [(t.pid, t.modality) for t in reader.gallery("i2v")] == [(4, 0), (5, 0)]
    assert [(t.pid, t.modality) for t in reader.query("v2i")] == [(4, 0), (5, 0)]
    text = (root / "labels.csv").read_text()
    (root / "labels.csv").write_text(text.replace("id0_infrared,0,1,infrared,train\n", ""))
    with pytest.raises(DataError, match="pid 0 has no infrared"):
        FolderVVI(root)
    (root / "labels.csv").write_text(text.replace("id1_visible,1,0,", "id1_visible,1,,"))
    with pytest.raises(DataError, match="needs a pid and a camera"):
        FolderVVI(root)
    (root / "labels.csv").write_text(text)
    cfg = TrainConfig.from_preset("demo", dataset="folder", root=str(root))
    from xreid.data.build import build_reader

    assert isinstance(build_reader(cfg.data, cfg.run.output_dir), FolderVVI)


@pytest.mark.slow
def test_train_on_a_labelled_folder(tmp_path):

    root = _write_labelled(tmp_path / "own")
    cfg = TrainConfig.from_preset(
        "demo", dataset="folder", root=str(root), output_dir=str(tmp_path / "run"),
        embed_dim=32, depth=1, num_heads=2, num_frames=2, img_size=(32, 16), ids_per_batch=2,
        weights=None,
        epochs=1, iters_per_epoch=2, eval_before=False, device="cpu", eval_batch_size=4,
        use_cameras=True)
    metrics = build_trainer(cfg).fit()
    assert 0.0 <= metrics["after"]["i2v"]["mAP"] <= 1.0
    # the keys load_model reads are enough
    full = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    keys = ("format", "config", "model", "model_spec", "preprocessing")
    torch.save({k: full[k] for k in keys}, tmp_path / "slim.pt")
    loaded = load_model(tmp_path / "slim.pt", device="cpu")
    assert loaded.num_identities == NUM_IDS and loaded.num_cameras == 2


def test_embed_bf16_autocast_is_close_to_fp32(env, tmp_path):
    out = tmp_path / "bf16.safetensors"
    assert main(["embed", str(env["ckpt"]), str(env["query"]), "-o", str(out), "--quiet",
                 "--amp", "bf16", "--batch-size", "3"]) == 0
    a, b = load_embeddings(out).embeddings, load_embeddings(env["qe"]).embeddings
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
    assert a.dtype == torch.float32 and bool((cos > 0.99).all())


@settings(max_examples=30)
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=20, unique=True))
def test_natural_key_orders_frame_numbers_numerically(numbers):
    from xreid.data.folder import natural_key

    names = [f"frame{n}.png" for n in numbers]
    assert sorted(names, key=natural_key) == [f"frame{n}.png" for n in sorted(numbers)]


def test_load_model_rejects_weights_that_do_not_fit_the_config(env, tmp_path):
    state = torch.load(env["ckpt"], weights_only=True)
    state["model_spec"]["num_identities"] = NUM_IDS + 3  # classifier shape no longer matches
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not match the model"):
        load_model(tmp_path / "bad.pt", device="cpu")
    del state["model"]["classifier_mii.weight"]
    state["model_spec"]["num_identities"] = NUM_IDS
    torch.save(state, tmp_path / "bad2.pt")
    with pytest.raises(ValueError, match="missing keys"):
        load_model(tmp_path / "bad2.pt", device="cpu")

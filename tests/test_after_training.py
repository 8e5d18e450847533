"""Outputs a user can move, share and trust (issue 22): portable embeddings, a
self-describing ONNX file, saved search metrics, re-ranking, output folders that list
exactly what was written, pictures that explain themselves, CLI conventions, the gallery
index and the HTTP endpoint."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_inference import NUM_IDS, _make_checkpoint, _tiny_config, _write_folder
from tolerance import rounding_tol

from xreid.cli import build_parser, main
from xreid.data import TrackletFolder
from xreid.inference import (
    EmbeddingSet,
    eval_output_dir,
    first_match_ranks,
    format_written,
    gallery_caption,
    load_embeddings,
    render_ranked_results,
    reranked_distances,
    save_embeddings,
    snapshot_files,
    top_k_of,
    training_curve_figure,
    tsne_figure,
    written_files,
)
from xreid.inference.training_curve import ema
from xreid.inference.visualize import GREEN, QUERY_BLUE, RED, identity_styles

ROOT = Path(__file__).resolve().parents[1]


def _env_vars() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH",
                                                                               ""),
            "OMP_NUM_THREADS": "1"}


def _xreid(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m xreid ARGS`` in ``cwd``, stdout/stderr redirected to pipes (not a TTY)."""
    r = subprocess.run([sys.executable, "-m", "xreid", *args], cwd=cwd, capture_output=True,
                       text=True, env=_env_vars())
    if check and r.returncode != 0:
        raise AssertionError(f"xreid {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A checkpoint and two folders of footage under ``work/``, embedded from inside it with
    relative paths (as a user would type them)."""
    tmp = tmp_path_factory.mktemp("after22")
    work = tmp / "work"
    work.mkdir()
    cfg = _tiny_config(tmp / "run")
    model = _make_checkpoint(work / "checkpoint.pt", cfg)
    _write_folder(work / "own" / "ir", 1)
    _write_folder(work / "own" / "rgb", 0)
    old = Path.cwd()
    os.chdir(work)
    try:
        assert main(["embed", "checkpoint.pt", "own/ir", "-o", "q.safetensors", "--quiet",
                     "--device", "cpu"]) == 0
        assert main(["embed", "checkpoint.pt", "own/rgb", "-o", "g.safetensors", "--quiet",
                     "--device", "cpu"]) == 0
    finally:
        os.chdir(old)
    return {"tmp": tmp, "work": work, "model": model, "cfg": cfg}


# ------------------------------------------------------------- 1. portable embeddings
def test_embeddings_store_absolute_and_relative_sources(world):
    from safetensors import safe_open

    work = world["work"]
    with safe_open(str(work / "q.safetensors"), framework="pt") as fh:
        meta = fh.metadata()
    sources = json.loads(meta["sources"])
    relative = json.loads(meta["sources_relative"])
    assert all(Path(s).is_absolute() and Path(s).is_dir() for s in sources)
    assert relative[0] == "own/ir/p0_c0"
    assert meta["input_root"] == str((work / "own" / "ir").resolve())


def test_show_runs_from_another_directory_and_after_a_move(world, tmp_path, monkeypatch,
                                                          capsys):
    work = world["work"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # from another working directory (failed before: sources were relative to the cwd)
    monkeypatch.chdir(elsewhere)
    assert main(["show", str(work / "q.safetensors"), str(work / "g.safetensors"), "-o",
                 "ranked.png", "--height", "32", "--num-queries", "2"]) == 0
    assert Image.open(elsewhere / "ranked.png").height > 64
    # the whole folder copied elsewhere, the original gone: the relative paths resolve
    copy = tmp_path / "copy"
    shutil.copytree(work, copy)
    hidden = work.with_name("work-hidden")
    work.rename(hidden)
    monkeypatch.chdir(tmp_path)
    try:
        emb = load_embeddings(copy / "q.safetensors")
        assert all(Path(s).is_relative_to(copy) for s in emb.sources)
        assert main(["show", "copy/q.safetensors", "copy/g.safetensors", "-o", "moved.png",
                     "--height", "32", "--num-queries", "1"]) == 0
        # footage moved away from the embeddings: --root finds it, without it one line
        footage = tmp_path / "footage"
        (copy / "own").rename(footage)
        capsys.readouterr()
        assert main(["show", "copy/q.safetensors", "copy/g.safetensors", "-o", "x.png"]) == 1
        err = capsys.readouterr().err
        assert "not found" in err and len(err.strip().splitlines()) == 1
        assert main(["show", "copy/q.safetensors", "copy/g.safetensors", "-o", "rooted.png",
                     "--height", "32", "--num-queries", "1", "--root", str(footage)]) == 0
        assert (tmp_path / "rooted.png").is_file()
    finally:
        hidden.rename(work)


def test_relocate_joins_the_path_below_the_input_root(tmp_path):
    emb = EmbeddingSet(torch.zeros(2, 3), ["a", "b"], torch.tensor([0, 1]),
                       torch.tensor([0, 0]), torch.tensor([0, 1]),
                       ["/old/cams/ir/a", "/old/cams/rgb/b"], {"input_root": "/old/cams/ir"})
    moved = emb.relocate(tmp_path, "/old/cams")
    assert moved.sources == [str(tmp_path / "ir" / "a"), str(tmp_path / "rgb" / "b")]
    assert emb.relocate(tmp_path).sources[0] == str(tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="root"):
        emb.relocate(tmp_path / "missing")


# ------------------------------------------------------------------- 2. ONNX export
@pytest.mark.slow
def test_onnx_file_is_self_contained_self_describing_and_dynamic(world, tmp_path):
    import onnx
    import onnxruntime as ort

    from xreid.inference import onnx_metadata

    work = world["work"]
    out = tmp_path / "export" / "model.onnx"
    r = _xreid("export", "checkpoint.pt", "-o", str(out), cwd=work)
    assert list(out.parent.iterdir()) == [out]  # no model.onnx.data beside it
    assert f"wrote {out}:" in r.stdout and ".data" not in r.stdout
    # copied alone, it still loads
    alone = tmp_path / "alone.onnx"
    shutil.copy(out, alone)
    session = ort.InferenceSession(str(alone), providers=["CPUExecutionProvider"])
    dims = [d.dim_param or d.dim_value
            for d in onnx.load(str(alone)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "frames", 3, 32, 16]
    meta = onnx_metadata(alone)
    sha = hashlib.sha256((work / "checkpoint.pt").read_bytes()).hexdigest()
    assert meta["xreid.checkpoint_sha256"] == sha
    assert json.loads(meta["xreid.img_size"]) == [32, 16]
    assert json.loads(meta["xreid.num_frames"]) == 3
    assert meta["xreid.frames"] == "3.."
    assert json.loads(meta["xreid.embedding_dim"]) == world["model"].embedding_dim
    assert len(json.loads(meta["xreid.mean"])) == 3 and len(json.loads(meta["xreid.std"])) == 3
    assert meta["xreid.sampling"] == "chunk_first"
    for batch, frames in ((1, 3), (2, 6)):  # two batch sizes and two clip lengths
        x = torch.randn(batch, frames, 3, 32, 16)
        with torch.no_grad():
            ref = world["model"].embed(x).numpy()
        got = session.run(None, {"video": x.numpy()})[0]
        # float32 sums over E ~ 100 terms: a few ulps of the embedding scale
        assert np.abs(got - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))


@pytest.mark.slow
def test_onnx_export_over_the_limit_names_both_files(world, tmp_path, monkeypatch, capsys):
    import onnxruntime as ort

    import xreid.inference.export as export

    monkeypatch.setattr(export, "EXTERNAL_DATA_THRESHOLD", 0)  # as if the weights were > 2 GB
    out = tmp_path / "big.onnx"
    assert main(["export", str(world["work"] / "checkpoint.pt"), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    data = export.onnx_files(out)[1]
    assert data.is_file() and data.parent == tmp_path
    assert f"wrote {out}, {data}:" in text and "travel together" in text
    assert export.onnx_metadata(out)["xreid.frames"] == "3.."
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 4, 3, 32, 16)
    with torch.no_grad():
        ref = world["model"].embed(x).numpy()
    assert np.abs(session.run(None, {"video": x.numpy()})[0] - ref).max() <= 1e-4


def test_onnx_files_names_the_external_data_file(tmp_path):
    import onnx
    from onnx import helper, numpy_helper

    from xreid.inference.export import onnx_files

    weight = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", 1, [1, 64])],
                              [helper.make_tensor_value_info("y", 1, [1, 64])], [weight])
    model = helper.make_model(graph)
    onnx.save(model, str(tmp_path / "one.onnx"))
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True,
              location="m.onnx.data", size_threshold=0)
    assert onnx_files(tmp_path / "m.onnx") == [tmp_path / "m.onnx", tmp_path / "m.onnx.data"]
    assert onnx_files(tmp_path / "one.onnx") == [tmp_path / "one.onnx"]


# ----------------------------------------------------------------- 3. search output
def test_search_json_holds_metrics_protocol_and_checkpoint_hashes(world, tmp_path):
    from xreid.metrics import compute_distance, evaluate_ranking

    work = world["work"]
    out = tmp_path / "r.json"
    assert main(["search", str(work / "q.safetensors"), str(work / "g.safetensors"), "-o",
                 str(out), "--top-k", "3", "--device", "cpu", "--remove-same-camera"]) == 0
    doc = json.loads(out.read_text())
    q, g = load_embeddings(work / "q.safetensors"), load_embeddings(work / "g.safetensors")
    ref = evaluate_ranking(compute_distance(q.embeddings, g.embeddings), q.pids, g.pids,
                           q.cameras, g.cameras, remove_same_camera=True, max_rank=20)
    m = doc["metrics"]
    assert m["mAP"] == pytest.approx(ref.mAP, abs=1e-12)
    assert m["mINP"] == pytest.approx(ref.mINP, abs=1e-12)
    assert m["cmc"] == pytest.approx([float(v) for v in ref.cmc], abs=1e-12)
    assert m["rank1"] == m["cmc"][0] and len(m["cmc"]) == 20
    assert m["num_valid_queries"] == ref.num_valid_queries
    assert doc["protocol"]["remove_same_camera"] is True and doc["protocol"]["rerank"] is None
    sha = hashlib.sha256((work / "checkpoint.pt").read_bytes()).hexdigest()
    assert doc["query"]["checkpoint_sha256"] == sha == doc["gallery"]["checkpoint_sha256"]
    assert Path(doc["query"]["file"]).is_absolute()


# ------------------------------------------------------------------------ 4. rerank
def test_search_rerank_equals_the_metrics_re_ranking(world, tmp_path):
    from xreid.metrics import compute_distance, evaluate_ranking, re_ranking

    work = world["work"]
    q, g = load_embeddings(work / "q.safetensors"), load_embeddings(work / "g.safetensors")
    qf, gf = q.embeddings.double(), g.embeddings.double()  # float64 reference
    expected = re_ranking(compute_distance(qf, gf), compute_distance(qf, qf),
                          compute_distance(gf, gf), k1=5, k2=3, lambda_value=0.2)
    got = reranked_distances(q.embeddings, g.embeddings, k1=5, k2=3, lambda_value=0.2,
                             chunk_size=3)  # chunked: 3 rows at a time
    # float32 pipeline vs float64: Jaccard sums of <= (Q + G) weights in [0, 1]
    tol = rounding_tol(torch.float32, 4 * (len(q) + len(g)))
    assert torch.allclose(got.double(), expected.double(), **tol)
    out = tmp_path / "rr.json"
    assert main(["search", str(work / "q.safetensors"), str(work / "g.safetensors"), "-o",
                 str(out), "--top-k", "4", "--rerank", "5", "3", "0.2", "--device",
                 "cpu"]) == 0
    doc = json.loads(out.read_text())
    assert doc["protocol"]["rerank"] == {"k1": 5, "k2": 3, "lambda": 0.2}
    best = top_k_of(got, 4)
    first = doc["results"][q.names[0]]
    assert [r["gallery"] for r in first] == [g.names[int(i)] for i in best.indices[0]]
    ref = evaluate_ranking(got, q.pids, g.pids, None, None, remove_same_camera=False)
    assert doc["metrics"]["mAP"] == pytest.approx(ref.mAP, abs=1e-12)
    # no value: the paper's 20 6 0.3
    assert main(["search", str(work / "q.safetensors"), str(work / "g.safetensors"), "-o",
                 str(out), "--rerank"]) == 0
    assert json.loads(out.read_text())["protocol"]["rerank"] == {"k1": 20, "k2": 6,
                                                                  "lambda": 0.3}


@pytest.mark.parametrize("values", [["5"], ["5", "3"], ["a", "3", "0.3"], ["5", "3", "2"]])
def test_rerank_bad_values_are_usage_errors(world, tmp_path, values, capsys):
    work = world["work"]
    with pytest.raises(SystemExit) as exc:
        main(["search", str(work / "q.safetensors"), str(work / "g.safetensors"), "-o",
              str(tmp_path / "x.json"), "--rerank", *values])
    assert exc.value.code == 2
    assert "--rerank" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_top_k_of_is_a_stable_sort():
    d = torch.tensor([[0.5, 0.1, 0.5, 0.1, 0.3]])
    res = top_k_of(d, 4)
    assert res.indices.tolist() == [[1, 3, 4, 0]]
    assert res.distances[0].tolist() == pytest.approx([0.1, 0.1, 0.3, 0.5])


# ------------------------------------------------------------- 5. output folders
def test_eval_output_dir_never_reuses_a_run_folder(tmp_path):
    import datetime as dt

    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"x")
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    first = eval_output_dir(run, now=now)
    second = eval_output_dir(run, now=now)
    assert first == run / "eval-20260102-030405" and second == run / "eval-20260102-030405-2"
    assert eval_output_dir(run, run, now=now).parent == run  # --output-dir = the run
    free = eval_output_dir(run, tmp_path / "mine")
    assert free == tmp_path / "mine" and free.is_dir()


def test_written_files_lists_new_and_changed_files_only(tmp_path):
    (tmp_path / "keep.txt").write_text("a")
    (tmp_path / "change.txt").write_text("a")
    before = snapshot_files(tmp_path)
    (tmp_path / "change.txt").write_text("bb")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "new.png").write_bytes(b"png")
    files = written_files(tmp_path, before)
    assert files == [tmp_path / "change.txt", tmp_path / "sub" / "new.png"]
    assert format_written(tmp_path, files) == f"wrote {tmp_path}/: change.txt, sub/new.png"


def _train_vvi():
    from xreid.cli import train_script

    return train_script


def test_training_and_eval_only_list_exactly_what_they_wrote(tmp_path, capsys):
    pytest.importorskip("sklearn")
    train_vvi = _train_vvi()
    cfg = _tiny_config(tmp_path / "run")
    out = tmp_path / "run"
    args = ["--no-progress", "--root", str(tmp_path / "data"), "--output-dir", str(out),
            "--synthetic-train-ids", "8", "--synthetic-test-ids", "6", "--img-size", "32",
            "16", "--num-frames", "3", "--ids-per-batch", "2", "--clips-per-modality", "1",
            "--epochs", "1", "--iters-per-epoch", "2", "--embed-dim", str(cfg.model.embed_dim),
            "--model.weights", "null"]
    assert train_vvi.main([*args, "--visualize", "2", "--tsne"]) == 0
    listed = capsys.readouterr().out.strip().splitlines()[-1]
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert listed == f"wrote {out}/: " + ", ".join(on_disk)
    for name in ("ranked_i2v.png", "ranked_v2i.png", "tsne_before.png", "tsne_after.png",
                 "training_curve.png", "cmc.png"):
        assert name in on_disk
    run_files = {p: p.read_bytes() for p in out.iterdir() if p.is_file()}
    # evaluation only: its own folder; the run's files untouched
    assert train_vvi.main([*args, "--eval-only", "--checkpoint", str(out / "checkpoint.pt"),
                           "--no-tsne"]) == 0
    listed = capsys.readouterr().out.strip().splitlines()[-1]
    (eval_dir,) = out.glob("eval-*")
    assert {p: p.read_bytes() for p in out.iterdir() if p.is_file()} == run_files
    written = sorted(p.relative_to(eval_dir).as_posix() for p in eval_dir.rglob("*"))
    assert listed == f"wrote {eval_dir}/: " + ", ".join(written)
    assert "metrics_eval.json" in written and "cmc.png" in written
    assert "training_curve.png" not in written


# -------------------------------------------------------------------- 6. pictures
def _frames(n: int, h: int = 24, w: int = 12) -> list[np.ndarray]:
    return [np.full((h, w, 3), 120, np.uint8) for _ in range(n)]


def test_ranked_picture_has_legend_captions_marks_and_first_match(tmp_path):
    ranks = torch.tensor([[2, 0], [1, 2]])
    dist = torch.tensor([[0.1, 0.2], [0.3, 0.4]])
    g_pids = torch.tensor([5, 7, 5])
    q_pids = torch.tensor([5, 9])
    matches = g_pids[ranks] == q_pids[:, None]
    full = torch.tensor([[0.2, 0.5, 0.1], [0.6, 0.3, 0.4]])
    first = first_match_ranks(full, q_pids, g_pids)
    assert first == [1, None]
    captions = [gallery_caption(f"trk{i}", int(p), i) for i, p in enumerate(g_pids)]
    pic = render_ranked_results([_frames(2), _frames(2)], _frames(3), ranks, dist,
                                tmp_path / "r.png", matches=matches,
                                query_titles=["qa", "qb"], gallery_captions=captions,
                                query_modalities=[1, 1], gallery_modalities=[0, 0, 1],
                                first_match=first)
    assert [label for label, _ in pic.legend] == ["query", "same identity",
                                                   "different identity"]
    for text in ("id 5 cam 2", "trk2", "id 5 cam 0", "trk0", "id 7 cam 1", "IR", "V",
                 "d 0.100", "#1", "#2", "qa", "no correct match in the gallery",
                 "marks: V visible, IR infrared"):
        assert text in pic.texts, text
    assert not any(t.startswith("first correct match") for t in pic.texts)  # qa hit at 1
    # the legend swatches are drawn in the legend's colours
    im = np.asarray(Image.open(pic.path).convert("RGB"))
    legend_band = {tuple(c) for c in im[4:16].reshape(-1, 3)}
    for color in (QUERY_BLUE, GREEN, RED):
        assert color in legend_band


def test_ranked_picture_says_where_the_first_correct_match_is(tmp_path):
    ranks = torch.tensor([[0, 1]])
    pic = render_ranked_results([_frames(1)], _frames(3), ranks, torch.zeros(1, 2),
                                tmp_path / "r.png", matches=torch.tensor([[False, False]]),
                                first_match=[3])
    assert "first correct match: rank 3" in pic.texts


def test_first_match_ranks_is_the_stable_rank():
    d = torch.tensor([[0.2, 0.2, 0.1, 0.2]])
    # order by (distance, index): 2, 0, 1, 3; pid 4 is at index 1 -> rank 3
    assert first_match_ranks(d, torch.tensor([4]), torch.tensor([1, 4, 2, 4])) == [3]


def test_show_draws_gallery_ids_cameras_and_names(world, tmp_path, monkeypatch):
    import xreid.inference.visualize as vis

    drawn = []
    original = vis.render_ranked_results
    monkeypatch.setattr(vis, "render_ranked_results",
                        lambda *a, **k: drawn.append(original(*a, **k)) or drawn[-1])
    work = world["work"]
    assert main(["show", str(work / "q.safetensors"), str(work / "g.safetensors"), "-o",
                 str(tmp_path / "s.png"), "--height", "32", "--num-queries", "2",
                 "--top-k", "3"]) == 0
    texts = drawn[0].texts
    assert "p0_c0 (id 0) cam 0" in texts
    g = load_embeddings(work / "g.safetensors")
    assert sum(t.startswith("id ") and " cam " in t for t in texts) == 2 * 3
    assert texts.count("IR") == 2 and texts.count("V") == 2 * 3
    assert any(t in g.names for t in texts)


def test_tsne_legend_counts_unlabelled_points_and_styles_are_distinct():
    rng = np.random.default_rng(0)
    pids = np.array([0, 0, 1, 1, 2, -1, -1, -1])
    mods = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    fig = tsne_figure(rng.normal(size=(8, 2)), pids, mods, title="T")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["visible", "infrared", "unlabelled (3)", "id 0", "id 1", "id 2"]
    assert ax.get_title() == "T (8 tracklets, 3 identities, 3 unlabelled)"
    styles = identity_styles(20)
    assert len(set(styles)) == 20
    # same fill: colours at least 0.25 apart (RGB in [0, 1]); tab20's pairs are ~0.2 apart
    for i in range(20):
        for j in range(i + 1, 20):
            if styles[i][1] == styles[j][1]:
                assert np.linalg.norm(np.subtract(styles[i][0], styles[j][0])) > 0.25
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_training_curve_is_per_iteration_with_lr_on_a_second_axis():
    records = [{"event": "iteration", "epoch": 1 + i // 5, "iteration": i + 1,
                "total": 2.0 / (i + 1), "cpcl": 1.0, "lr": 1e-3 * (0.5 if i >= 5 else 1.0)}
               for i in range(10)]
    records.append({"event": "epoch", "epoch": 2, "total": 0.5})
    fig = training_curve_figure(records, smoothing=0.5)
    ax, ax2 = fig.axes
    assert ax.get_xlabel() == "iteration" and ax2.get_ylabel() == "learning rate"
    smoothed = [ln for ln in ax.get_lines() if ln.get_label() == "total"]
    assert len(smoothed) == 1
    np.testing.assert_array_equal(smoothed[0].get_xdata(), np.arange(1, 11))
    # bias-corrected EMA, against a loop written out here
    raw = [2.0 / (i + 1) for i in range(10)]
    acc, ref = 0.0, []
    for i, v in enumerate(raw):
        acc = 0.5 * acc + 0.5 * v
        ref.append(acc / (1 - 0.5 ** (i + 1)))
    np.testing.assert_allclose(smoothed[0].get_ydata(), ref, rtol=1e-12)
    np.testing.assert_allclose(ema(raw, 0.0), raw)
    (lr,) = ax2.get_lines()
    assert list(lr.get_ydata()) == [r["lr"] for r in records[:10]]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["total", "cpcl", "learning rate"]
    import matplotlib.pyplot as plt

    plt.close(fig)


# ---------------------------------------------------------------- 7. CLI conventions
def test_version_help_for_positionals_and_defaults_shown(capsys):
    from xreid.version import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"xreid {__version__}"
    parser = build_parser()
    for action in parser._actions:
        if not action.option_strings:
            assert (action.help or "").strip(), action.dest
    subs = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in subs.items():
        if name == "convert":
            continue
        for action in sub._actions:
            if not action.option_strings:
                assert (action.help or "").strip(), f"{name} {action.dest}: no help"
        text = sub.format_help()
        for action in sub._actions:
            if action.option_strings and action.default not in (None, False, "==SUPPRESS=="):
                assert f"(default: {action.default})" in " ".join(text.split()), \
                    f"{name} {action.option_strings[0]}"
    show = " ".join(subs["show"].format_help().split())
    for flag in ("--top-k TOP_K gallery results per query (default: 5)",
                 "--num-queries NUM_QUERIES the first N queries (default: 8)",
                 "--height HEIGHT thumbnail height in pixels (default: 128)"):
        assert flag in show


def test_no_carriage_return_frames_in_a_redirected_stream(world, tmp_path):
    work = world["work"]
    r = _xreid("embed", "checkpoint.pt", "own/ir", "-o", str(tmp_path / "e.safetensors"),
               "--device", "cpu", cwd=work)
    assert "\r" not in r.stderr and "\r" not in r.stdout
    assert f"wrote {tmp_path / 'e.safetensors'}" in r.stdout


# --------------------------------------------------------------- 8. loose files
def test_a_loose_image_next_to_tracklet_folders_is_named(tmp_path, capsys):
    root = _write_folder(tmp_path / "own", 0)
    Image.fromarray(np.zeros((8, 4, 3), np.uint8)).save(root / "stray.jpg")
    (root / "notes.txt").write_text("x")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folder = TrackletFolder(root)
    messages = [str(w.message) for w in caught]
    assert len(folder) == 2 * NUM_IDS
    assert any("stray.jpg" in m and "loose image" in m for m in messages), messages
    assert any("notes.txt" in m for m in messages), messages


# ------------------------------------------------------------ beyond: index, serve
def test_index_build_then_search_with_the_index(world, tmp_path, capsys):
    pytest.importorskip("faiss")
    work = world["work"]
    index = tmp_path / "gallery.index"
    assert main(["index", "build", str(work / "g.safetensors"), "-o", str(index)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {index}:" in out and "recall@10 against exact search" in out
    assert main(["search", str(work / "q.safetensors"), "--index", str(index), "-o",
                 str(tmp_path / "r.json"), "--top-k", "3"]) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    q, g = load_embeddings(work / "q.safetensors"), load_embeddings(work / "g.safetensors")
    from xreid.inference import exact_search

    exact = exact_search(q.embeddings, g.embeddings, 3)
    for qi, name in enumerate(q.names):  # a gallery this small is one exact cell
        assert [r["gallery"] for r in doc["results"][name]] == [
            g.names[int(i)] for i in exact.indices[qi]]
    assert doc["gallery"]["checkpoint_sha256"] == doc["query"]["checkpoint_sha256"]
    assert main(["search", str(work / "q.safetensors"), str(work / "g.safetensors"),
                 "--index", str(index), "-o", str(tmp_path / "x.json")]) == 1
    assert "drop the GALLERY" in capsys.readouterr().err
    before = (work / "g.safetensors").read_bytes()
    assert main(["index", "build", str(work / "g.safetensors"), "-o",
                 str(work / "g.safetensors")]) == 2
    assert "is one of the inputs" in capsys.readouterr().err
    assert main(["search", str(work / "q.safetensors"), "--index", str(index), "-o",
                 str(index)]) == 2
    assert "is one of the inputs" in capsys.readouterr().err
    assert (work / "g.safetensors").read_bytes() == before


def test_index_recall_is_measured_on_held_out_entries(tmp_path):
    pytest.importorskip("faiss")
    from xreid.inference.index import build_index, load_index

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(20, 16))
    x = torch.from_numpy(centers[rng.integers(0, 20, 2000)] + 0.3 * rng.normal(size=(2000, 16)))
    n = len(x)
    gallery = EmbeddingSet(x.float(), [f"t{i}" for i in range(n)], torch.zeros(n).long(),
                           torch.zeros(n).long(), torch.zeros(n).long())
    built = build_index(gallery, tmp_path / "g.index", nprobe=4, holdout=100, seed=1)
    b = built.build
    assert b["type"] == "IndexIVFFlat" and b["holdout"] == 100 and b["trained_on"] == 1900
    assert b["nlist"] == min(int(4 * np.sqrt(2000)), 1900 // 39)
    assert 0.0 < b["recall@10"] <= 1.0
    loaded = load_index(tmp_path / "g.index")
    assert loaded.build == b and loaded.gallery.names == gallery.names
    res = loaded.search(x[:5].float(), 1, nprobe=b["nlist"])  # every cell: exact
    assert res.indices[:, 0].tolist() == [0, 1, 2, 3, 4]
    save_embeddings(gallery, tmp_path / "g.safetensors")
    with pytest.raises(ValueError, match="not an xreid index"):
        load_index(tmp_path / "g.safetensors")
    with pytest.raises(ValueError, match="cannot read .*pyproject.toml"):
        load_index(ROOT / "pyproject.toml")


def test_serve_answers_a_real_http_client(world, tmp_path):
    requests = pytest.importorskip("requests")
    import base64

    from xreid.inference.serve import make_server

    work = world["work"]
    server = make_server(work / "checkpoint.pt", work / "g.safetensors", host="127.0.0.1",
                         port=0, device="cpu", max_bytes=2**20, timeout=10)
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        health = requests.get(f"{url}/health", timeout=10).json()
        assert health["gallery_size"] == 2 * NUM_IDS
        clip = work / "own" / "ir" / "p1_c0"
        frames = [base64.b64encode(p.read_bytes()).decode()
                  for p in sorted(clip.iterdir())]
        r = requests.post(f"{url}/search", json={"frames": frames, "top_k": 3}, timeout=30)
        assert r.status_code == 200, r.text
        got = r.json()["results"]
        # the same answer as xreid embed + exact search of that tracklet
        q, g = load_embeddings(work / "q.safetensors"), load_embeddings(work / "g.safetensors")
        from xreid.inference import exact_search

        i = q.names.index("p1_c0")
        ref = exact_search(q.embeddings[i:i + 1], g.embeddings, 3)
        assert [x["gallery"] for x in got] == [g.names[int(j)] for j in ref.indices[0]]
        assert [x["distance"] for x in got] == pytest.approx(ref.distances[0].tolist(),
                                                             abs=1e-5)
        from test_inference import _frame, _write_video

        video = tmp_path / "clip.mp4"
        _write_video(video, [_frame(2, 1, k) for k in range(6)])
        r = requests.post(f"{url}/search?top_k=2", data=video.read_bytes(),
                          headers={"Content-Type": "video/mp4"}, timeout=30)
        assert r.status_code == 200, r.text
        assert len(r.json()["results"]) == 2 and r.json()["top_k"] == 2
        assert requests.post(f"{url}/search", data=b"not a video",
                             headers={"Content-Type": "video/mp4"},
                             timeout=30).status_code == 400
        bad = requests.post(f"{url}/search", json={"frames": ["bm90IGFuIGltYWdl"]},
                            timeout=10)
        assert bad.status_code == 400 and "JPEG or PNG" in bad.json()["error"]
        big = requests.post(f"{url}/search", data=b"x" * (2**20 + 1),
                            headers={"Content-Type": "video/mp4"}, timeout=10)
        assert big.status_code == 413
        assert requests.get(f"{url}/nothing", timeout=10).status_code == 404
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_save_embeddings_round_trip_keeps_the_relative_fallback(tmp_path):
    src = tmp_path / "data" / "trk"
    src.mkdir(parents=True)
    emb = EmbeddingSet(torch.ones(1, 2), ["trk"], torch.tensor([1]), torch.tensor([0]),
                       torch.tensor([0]), [str(src)])
    save_embeddings(emb, tmp_path / "e" / "x.safetensors")
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    shutil.move(str(tmp_path), str(moved))
    try:
        assert load_embeddings(moved / "e" / "x.safetensors").sources == [
            str((moved / "data" / "trk").resolve())]
    finally:
        shutil.move(str(moved), str(tmp_path))


def test_training_progress_bars_write_no_frames_into_a_redirected_stream(capsys):
    import types

    from xreid.cli.train import ConsoleCallbacks

    callbacks = ConsoleCallbacks(enabled=True)
    trainer = types.SimpleNamespace(epochs=1)
    callbacks.on_epoch_start(trainer, 0, 3)
    for i in range(3):
        callbacks.on_iteration(trainer, 0, i, {"total": 1.0, "lr": 1e-3})
    callbacks.on_epoch_end(trainer, 0, {"total": 1.0, "lr": 1e-3})
    progress = callbacks.on_evaluation_start(trainer, "after")
    progress(1, 2)
    progress(2, 2)
    captured = capsys.readouterr()  # pytest's capture is not a terminal
    assert "\r" not in captured.err and "\r" not in captured.out
    assert "epoch 1/1" in captured.out  # the per-epoch line is still written

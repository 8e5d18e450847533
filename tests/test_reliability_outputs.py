"""Nothing the user has is overwritten: outputs vs inputs, files not ours, run-folder locks,
resume targets, pictures in a folder without a run (docs/reliability.md)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xreid.cli import main
from xreid.convert import main as convert_main
from xreid.engine import TrainConfig
from xreid.engine.build import build_model, checkpoint_metadata
from xreid.engine.run_folder import (
    LOCK_NAME,
    RunLocked,
    acquire_run_lock,
    check_run_pictures,
    resume_output_dir,
)
from xreid.inference import load_embeddings
from xreid.inference.export import is_xreid_onnx
from xreid.output_files import (
    OutputRefused,
    atomic_write,
    check_output,
    is_xreid_png,
    png_metadata,
)

ROOT = Path(__file__).resolve().parents[1]
DEAD_PID = 2**22 + 12345  # above the default pid_max of 2**22: never a live process


def _checkpoint(path: Path, seed: int = 0, output_dir: Path | None = None, **extra) -> Path:
    out = str(output_dir or path.parent)
    cfg = TrainConfig.from_preset("demo", output_dir=out, embed_dim=32, depth=1, weights=None,
                                  num_heads=2, num_frames=3, img_size=(32, 16))
    torch.manual_seed(seed)
    model = build_model(cfg, 2, 1)
    torch.save({"format": "xreid-train-checkpoint-v1", "config": cfg.to_dict(),
                "model": model.state_dict(), **checkpoint_metadata(cfg, 2, 1), **extra}, path)
    return path


def _folder(root: Path, modality: str) -> Path:
    rng = np.random.default_rng(0)
    rows = ["tracklet,pid,camera,modality"]
    for pid in range(2):
        d = root / f"p{pid}"
        d.mkdir(parents=True)
        for k in range(3):
            Image.fromarray(rng.integers(0, 255, (32, 16, 3), dtype=np.uint8)).save(
                d / f"{k}.png")
        rows.append(f"p{pid},{pid},0,{modality}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outputs")
    ckpt = _checkpoint(_mk(tmp / "run") / "checkpoint.pt")
    q, g = _folder(tmp / "query", "infrared"), _folder(tmp / "gallery", "visible")
    qe, ge = tmp / "q.safetensors", tmp / "g.safetensors"
    for folder, out in ((q, qe), (g, ge)):
        assert main(["embed", str(ckpt), str(folder), "-o", str(out), "--quiet",
                     "--device", "cpu"]) == 0
    return {"tmp": tmp, "ckpt": ckpt, "q": q, "g": g, "qe": qe, "ge": ge}


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _refused(capsys, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


# ----------------------------------------------------------------- the shared output check
def test_check_output_same_file_links_and_foreign_files(tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(b"data")
    link, hard = tmp_path / "link.bin", tmp_path / "hard.bin"
    link.symlink_to(src)
    os.link(src, hard)
    for out in (src, link, hard, tmp_path / "." / "in.bin"):
        with pytest.raises(OutputRefused, match="is one of the inputs"):
            check_output(out, inputs=[src], overwrite=True)
    with pytest.raises(OutputRefused, match="--overwrite"):
        check_output(tmp_path / "hard.bin", inputs=[])
    assert check_output(tmp_path / "hard.bin", overwrite=True) == tmp_path / "hard.bin"
    assert check_output(tmp_path / "hard.bin", is_ours=lambda p: True)
    assert check_output(tmp_path / "new.bin", inputs=[src]) == tmp_path / "new.bin"
    with pytest.raises(OutputRefused, match="is a folder"):
        check_output(tmp_path, overwrite=True)
    assert src.read_bytes() == b"data"


def test_atomic_write_mode_and_dead_temporaries(tmp_path):
    out = tmp_path / "e.safetensors"
    dead = tmp_path / f".e.safetensors.{DEAD_PID}.abc123.tmp"
    live = tmp_path / f".e.safetensors.{os.getppid()}.abc123.tmp"
    other = tmp_path / f".other.{DEAD_PID}.abc123.tmp"
    for p in (dead, live, other):
        p.write_bytes(b"partial")
    old = os.umask(0o022)
    try:
        atomic_write(out, lambda fh: fh.write(b"x"), what="--output")
    finally:
        os.umask(old)
    assert (out.stat().st_mode & 0o777) == 0o644
    assert not dead.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [out.name, live.name, other.name])


# -------------------------------------------------------------------------------- embed
def test_embed_never_writes_over_its_checkpoint(env, tmp_path, capsys):
    ck = env["ckpt"]
    before = ck.read_bytes()
    link = tmp_path / "alias.pt"
    link.symlink_to(ck)
    for out in (ck, link):
        assert main(["embed", str(ck), str(env["q"]), "-o", str(out), "--quiet",
                     "--overwrite"]) == 2
        _refused(capsys, "xreid: error: --output", "is one of the inputs")
    assert ck.read_bytes() == before


def test_embed_refuses_a_foreign_file_and_replaces_its_own(env, tmp_path, capsys):
    out = tmp_path / "e.safetensors"
    out.write_text("my notes\n")
    args = ["embed", str(env["ckpt"]), str(env["q"]), "-o", str(out), "--quiet"]
    assert main(args) == 2
    _refused(capsys, str(out), "--overwrite")
    assert out.read_text() == "my notes\n"
    assert main([*args, "--overwrite"]) == 0
    assert len(load_embeddings(out)) == 2
    assert main(args) == 0  # our own file, from the same checkpoint: replaced
    # an embeddings file of another checkpoint is not ours to replace
    other = _checkpoint(_mk(tmp_path / "other") / "checkpoint.pt", seed=1)
    assert main(["embed", str(other), str(env["q"]), "-o", str(out), "--quiet"]) == 2
    capsys.readouterr()


def test_embeddings_file_mode_follows_the_umask_and_leaves_no_temporary(env, tmp_path):
    out = tmp_path / "e.safetensors"
    old = os.umask(0o022)
    try:
        assert main(["embed", str(env["ckpt"]), str(env["q"]), "-o", str(out), "--quiet"]) == 0
    finally:
        os.umask(old)
    assert (out.stat().st_mode & 0o777) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["e.safetensors"]
    # a killed embed left its temporary: the next embed of that output removes it
    killed = tmp_path / f".e.safetensors.{DEAD_PID}.k1ll3d.tmp"
    killed.write_bytes(b"partial")
    assert main(["embed", str(env["ckpt"]), str(env["q"]), "-o", str(out), "--quiet"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["e.safetensors"]


# ------------------------------------------------------------------------ search / show
def test_search_never_writes_over_its_embeddings(env, capsys):
    qe = env["qe"]
    before = qe.read_bytes()
    assert main(["search", str(qe), str(env["ge"]), "-o", str(qe)]) == 2
    _refused(capsys, "is one of the inputs")
    assert qe.read_bytes() == before
    assert load_embeddings(qe).names == ["p0", "p1"]


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_search_refuses_a_foreign_file_and_replaces_its_own(env, tmp_path, capsys, suffix):
    out = tmp_path / f"ranks{suffix}"
    out.write_text("mine\n")
    args = ["search", str(env["qe"]), str(env["ge"]), "-o", str(out), "--top-k", "2"]
    assert main(args) == 2
    _refused(capsys, "--overwrite")
    assert out.read_text() == "mine\n"
    assert main([*args, "--overwrite"]) == 0
    assert main(args) == 0  # ours now
    capsys.readouterr()


def test_show_and_tsne_never_write_over_inputs_or_foreign_pictures(env, tmp_path, capsys):
    qe = env["qe"]
    before = qe.read_bytes()
    assert main(["show", str(qe), str(env["ge"]), "-o", str(qe)]) == 2
    _refused(capsys, "is one of the inputs")
    assert main(["tsne", str(qe), str(env["ge"]), "-o", str(env["ge"])]) == 2
    _refused(capsys, "is one of the inputs")
    assert qe.read_bytes() == before
    pic = tmp_path / "holiday.png"
    Image.new("RGB", (4, 4), "blue").save(pic)
    mine = pic.read_bytes()
    assert main(["show", str(qe), str(env["ge"]), "-o", str(pic)]) == 2
    _refused(capsys, "--overwrite")
    assert main(["tsne", str(qe), str(env["ge"]), "-o", str(pic)]) == 2
    assert pic.read_bytes() == mine
    capsys.readouterr()
    ours = tmp_path / "ranked.png"
    assert main(["show", str(qe), str(env["ge"]), "-o", str(ours), "--top-k", "2"]) == 0
    assert is_xreid_png(ours) and not is_xreid_png(pic)
    assert main(["show", str(qe), str(env["ge"]), "-o", str(ours), "--top-k", "2"]) == 0


# --------------------------------------------------------------------- export / convert
def test_export_never_writes_over_its_checkpoint_or_a_foreign_file(env, tmp_path, capsys):
    ck = env["ckpt"]
    before = ck.read_bytes()
    assert main(["export", str(ck), "-o", str(ck), "--overwrite"]) == 2
    _refused(capsys, "is one of the inputs")
    assert ck.read_bytes() == before
    foreign = tmp_path / "model.onnx"
    foreign.write_bytes(b"someone else's model")
    assert main(["export", str(ck), "-o", str(foreign)]) == 2
    _refused(capsys, "--overwrite")
    assert foreign.read_bytes() == b"someone else's model"


def test_is_xreid_onnx_reads_the_metadata_entry(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    plain, ours = tmp_path / "plain.onnx", tmp_path / "ours.onnx"
    onnx.save(model, str(plain))
    model.metadata_props.add(key="xreid.version", value="0.2.0")
    onnx.save(model, str(ours))
    assert is_xreid_onnx(ours) and not is_xreid_onnx(plain)
    assert not is_xreid_onnx(tmp_path / "missing.onnx")


def test_convert_never_writes_over_its_input_or_a_checkpoint(env, tmp_path, capsys):
    ck = env["ckpt"]
    before = ck.read_bytes()
    assert convert_main([str(ck), str(ck), "--overwrite"]) == 2
    _refused(capsys, "xreid-convert: error: output", "is one of the inputs")
    other = _checkpoint(_mk(tmp_path / "r") / "checkpoint.pt", seed=2)
    theirs = other.read_bytes()
    assert convert_main([str(ck), str(other)]) == 2  # a checkpoint is not ours to replace
    _refused(capsys, "--overwrite")
    assert ck.read_bytes() == before and other.read_bytes() == theirs
    out = tmp_path / "w.safetensors"
    assert convert_main([str(ck), str(out)]) == 0
    assert convert_main([str(ck), str(out)]) == 0  # converted by us: replaced
    capsys.readouterr()


# ------------------------------------------------------------------------- run folders
def test_run_lock_refuses_a_second_holder_and_reports_a_stale_lock(tmp_path):
    run = tmp_path / "run"
    with acquire_run_lock(run) as lock:
        holder = json.loads((run / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(RunLocked, match=rf"{run} is in use by process {os.getpid()}"):
            acquire_run_lock(run, break_stale=True)  # a live holder is never broken
    assert not (run / LOCK_NAME).exists() and lock.stale_cleared is None
    (run / LOCK_NAME).write_text(json.dumps({"pid": DEAD_PID, "host": socket.gethostname()}))
    with pytest.raises(RunLocked, match=f"stale lock of process {DEAD_PID}"):
        acquire_run_lock(run)
    lock = acquire_run_lock(run, break_stale=True)
    assert lock.stale_cleared["pid"] == DEAD_PID
    lock.release()
    # another host's lock cannot be judged from here: refused, even with break_stale
    (run / LOCK_NAME).write_text(json.dumps({"pid": DEAD_PID, "host": "elsewhere"}))
    with pytest.raises(RunLocked, match="on host elsewhere"):
        acquire_run_lock(run, break_stale=True)


def test_resume_continues_where_the_checkpoint_is(tmp_path):
    a, b = _mk(tmp_path / "A"), _mk(tmp_path / "B")
    newer = _checkpoint(a / "checkpoint.pt", epoch=5, iteration=50)
    old = _checkpoint(b / "checkpoint.pt", output_dir=a, epoch=1, iteration=10)
    assert torch.load(old, weights_only=True)["config"]["run"]["output_dir"] == str(a)
    assert resume_output_dir(old) == b
    assert resume_output_dir(old, output_dir=tmp_path / "C") == tmp_path / "C"
    with pytest.raises(OutputRefused, match="newer checkpoint"):
        resume_output_dir(old, output_dir=a)
    assert resume_output_dir(old, output_dir=a, overwrite=True) == a
    assert resume_output_dir(newer, output_dir=b) == b  # B's is older: continued there
    snapshot = _checkpoint(a / "epoch1.pt", epoch=1, iteration=10)
    with pytest.raises(OutputRefused, match=str(a / "checkpoint.pt")):
        resume_output_dir(snapshot)


def test_pictures_in_a_folder_without_a_run(tmp_path):
    out = _mk(tmp_path / "out")
    Image.new("RGB", (4, 4)).save(out / "cmc.png")
    with pytest.raises(OutputRefused, match="cmc.png, not written by xreid"):
        check_run_pictures(out, run_files=["checkpoint.pt"])
    check_run_pictures(out, run_files=["checkpoint.pt"], overwrite=True)
    Image.new("RGB", (4, 4)).save(out / "cmc.png", pnginfo=_pnginfo())
    check_run_pictures(out, run_files=["checkpoint.pt"])  # ours


def _pnginfo():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in png_metadata().items():
        info.add_text(k, v)
    return info


def _train_vvi():
    from xreid.cli import train_script as train_vvi
    return train_vvi


def _train_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--no-progress", "--root", str(root), "--output-dir", str(out),
            "--synthetic-train-ids", "8", "--synthetic-test-ids", "6", "--img-size", "32", "16",
            "--num-frames", "3", "--ids-per-batch", "2", "--clips-per-modality", "1",
            "--epochs", "1", "--iters-per-epoch", "1", "--no-eval-before", *extra]


def test_train_refuses_a_user_picture_a_locked_folder_and_checkpoint_without_eval_only(
        tmp_path, capsys):
    train_vvi = _train_vvi()
    out = _mk(tmp_path / "out")
    Image.new("RGB", (4, 4), "red").save(out / "cmc.png")
    mine = (out / "cmc.png").read_bytes()
    assert train_vvi.main(_train_args(tmp_path / "data", out)) == 2
    _refused(capsys, "train_vvi.py: error: --output-dir", "cmc.png")
    assert (out / "cmc.png").read_bytes() == mine and not (out / LOCK_NAME).exists()
    busy = _mk(tmp_path / "busy")
    with acquire_run_lock(busy):
        assert train_vvi.main(_train_args(tmp_path / "data", busy)) == 2
        _refused(capsys, f"{busy} is in use by process {os.getpid()}")
        assert sorted(p.name for p in busy.iterdir()) == [LOCK_NAME]
    ck = _checkpoint(_mk(tmp_path / "r") / "checkpoint.pt")
    assert train_vvi.main([*_train_args(tmp_path / "data", tmp_path / "new"),
                           "--checkpoint", str(ck)]) == 2
    _refused(capsys, "--checkpoint is read only with --eval-only")
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_two_concurrent_runs_into_one_folder(tmp_path):
    """Two processes start into the same new folder: exactly one runs, the other is refused
    naming the holder; the winner's log is not interleaved."""
    script = ROOT / "examples" / "train_vvi.py"
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), *_train_args(
        tmp_path / "data", out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "is in use by process" in refused and str(out) in refused
    assert not (out / LOCK_NAME).exists()


@pytest.mark.slow
def test_resume_from_a_copied_checkpoint_stays_in_its_folder(tmp_path, capsys):
    """B/checkpoint.pt copied from run A: resuming it continues in B and leaves A alone."""
    import shutil

    train_vvi = _train_vvi()
    a, b = tmp_path / "A", _mk(tmp_path / "B")
    assert train_vvi.main(_train_args(tmp_path / "data", a)) == 0
    shutil.copy(a / "checkpoint.pt", b / "checkpoint.pt")
    before = {p.name: p.read_bytes() for p in a.iterdir()}
    assert train_vvi.main(["--no-progress", "--resume", str(b / "checkpoint.pt"),
                           "--epochs", "2"]) == 0
    assert {p.name: p.read_bytes() for p in a.iterdir()} == before
    assert torch.load(b / "checkpoint.pt", weights_only=True)["epoch"] == 2
    assert (b / "log.jsonl").exists() and (b / "metrics.json").exists()
    capsys.readouterr()

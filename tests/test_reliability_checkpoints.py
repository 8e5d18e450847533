"""Checkpoints: content hash on every load path, torch's unsafe advice never repeated, the
patch grid of a trainer checkpoint, a real full disk, temporaries of a killed first write
(docs/reliability.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xreid import build_backbone
from xreid.checkpoint_digest import DIGEST_KEY, content_digest, seal, verify_digest
from xreid.cli import main
from xreid.engine import TrainConfig, load_checkpoint
from xreid.engine.build import build_model, checkpoint_metadata
from xreid.engine.checkpoint import atomic_save
from xreid.inference import load_model

ROOT = Path(__file__).resolve().parents[1]


def _state(img_size=(32, 16)) -> dict:
    cfg = TrainConfig.from_preset("demo", output_dir="unused", embed_dim=32, depth=1, weights=None,
                                  num_heads=2, num_frames=3, img_size=img_size)
    torch.manual_seed(0)
    return {"format": "xreid-train-checkpoint-v1", "config": cfg.to_dict(),
            "model": build_model(cfg, 2, 1).state_dict(), "epoch": 1, "iteration": 3,
            **checkpoint_metadata(cfg, 2, 1)}


def _flip_one_bit(path: Path) -> None:
    """Flip the lowest bit of one stored float of the model (a real on-disk change)."""
    state = torch.load(path, weights_only=True)
    key = next(k for k, v in state["model"].items() if v.is_floating_point() and v.numel())
    t = state["model"][key]
    t.view(torch.int32).view(-1)[0] ^= 1
    torch.save(state, path)  # the stored hash is kept as it was


def _clips(tmp_path: Path) -> Path:
    from PIL import Image

    (tmp_path / "clips" / "t0").mkdir(parents=True)
    Image.new("RGB", (16, 32), "gray").save(tmp_path / "clips" / "t0" / "0.png")
    return tmp_path / "clips"


@pytest.fixture
def sealed(tmp_path) -> Path:
    path = tmp_path / "run" / "checkpoint.pt"
    atomic_save(_state(), path)
    return path


def test_digest_covers_every_tensor_and_only_tensors():
    state = _state()
    d = content_digest(state)
    assert d == content_digest(seal(state)) and seal(state)[DIGEST_KEY] == d
    changed = {**state, "model": dict(state["model"])}
    key = next(iter(changed["model"]))
    changed["model"][key] = changed["model"][key].clone()
    changed["model"][key].view(-1)[0] += 1
    assert content_digest(changed) != d
    renamed = {**state, "model": {("x" + k): v for k, v in state["model"].items()}}
    assert content_digest(renamed) != d
    verify_digest(state, "f.pt")  # no stored hash: nothing to check


def test_a_flipped_bit_is_refused_on_every_load_path(sealed, tmp_path, capsys):
    assert DIGEST_KEY in torch.load(sealed, weights_only=True)
    load_checkpoint(sealed)
    load_model(sealed, device="cpu")
    _flip_one_bit(sealed)
    match = rf"checkpoint: {sealed} is damaged"
    with pytest.raises(ValueError, match=match):  # --resume and --eval-only
        load_checkpoint(sealed)
    with pytest.raises(ValueError, match=match):  # load_model, embed, export
        load_model(sealed, device="cpu")
    with pytest.raises(ValueError, match=match):  # --weights
        build_backbone("tiny", img_size=(32, 16), embed_dim=32, depth=1, num_heads=2,
                       weights=sealed)
    folder = _clips(tmp_path)
    for args in (["embed", str(sealed), str(folder), "-o", str(tmp_path / "e.safetensors"),
                  "--modality", "visible"],
                 ["export", str(sealed), "-o", str(tmp_path / "m.onnx")]):
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "is damaged" in err and len(err.strip().splitlines()) == 1


def test_torchs_weights_only_false_advice_is_never_repeated(tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    folder = _clips(tmp_path)
    for args in (["embed", str(garbage), str(folder), "-o", str(tmp_path / "e.safetensors"),
                  "--modality", "visible"],
                 ["export", str(garbage), "-o", str(tmp_path / "m.onnx")]):
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "garbage.pt" in err and len(err.strip().splitlines()) == 1
        assert "weights_only` set to `False`" not in err and "likely succeed" not in err
    for load in (load_checkpoint, lambda p: load_model(p, device="cpu"),
                 lambda p: build_backbone("tiny", img_size=(32, 16), weights=p)):
        with pytest.raises(ValueError) as info:
            load(garbage)
        assert "False" not in str(info.value) and "likely succeed" not in str(info.value)


def test_trainer_checkpoint_as_weights_at_another_image_size(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_save(_state(img_size=(64, 32)), path)  # 8x4 grid of 8-pixel patches
    small = build_backbone("tiny", img_size=(32, 16), embed_dim=32, depth=1, num_heads=2,
                           weights=path)
    assert small.pos_embed.shape == (1, 1 + 4 * 2, 32)
    same = build_backbone("tiny", img_size=(64, 32), embed_dim=32, depth=1, num_heads=2,
                          weights=path)
    stored = torch.load(path, weights_only=True)["model"]["backbone.pos_embed"]
    assert torch.equal(same.pos_embed.detach(), stored)


# ----------------------------------------------------------------------------- full disk
@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs where the test may mount one (root in a container), else None."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, check=False)


FULL_DISK_SCRIPT = """
import resource, signal, sys, torch
from xreid.engine.checkpoint import atomic_save
path = sys.argv[1]
atomic_save({"model": {"w": torch.zeros(100)}}, path)
if sys.argv[2] == "rlimit":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    atomic_save({"model": {"w": torch.zeros(1_000_000)}}, path)
except OSError as exc:
    print(exc)
"""


def test_full_disk_names_the_file_and_keeps_the_previous_checkpoint(small_fs, tmp_path):
    folder = small_fs if small_fs is not None else tmp_path
    path = folder / "checkpoint.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", FULL_DISK_SCRIPT, str(path),
                           "tmpfs" if small_fs is not None else "rlimit"],
                          capture_output=True, text=True, env=env, check=True)
    message = done.stdout.strip()
    reason = "No space left on device" if small_fs is not None else "File too large"
    assert message == (f"[Errno {28 if small_fs is not None else 27}] checkpoint: could not "
                       f"write {path} ({reason}); the previous checkpoint.pt is intact")
    assert "inline_container" not in message and "unexpected pos" not in message
    assert load_checkpoint(path)["model"]["w"].shape == (100,)
    assert [p.name for p in folder.iterdir()] == ["checkpoint.pt"]


# ------------------------------------------------- a kill during the first checkpoint write
def _train_vvi():
    from xreid.cli import train_script as train_vvi
    return train_vvi


def test_killed_first_checkpoint_write(tmp_path, capsys):
    """The run wrote config.json and log.jsonl, then died inside the first checkpoint write:
    the next start removes the temporary and does not suggest --resume of a missing file."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "log.jsonl").write_text(json.dumps({"event": "start"}) + "\n")
    tmp = out / ".checkpoint.pt.4242.x1y2z3.tmp"
    tmp.write_bytes(b"half a checkpoint")
    args = ["--no-progress", "--root", str(tmp_path / "data"), "--output-dir", str(out),
            "--epochs", "1", "--iters-per-epoch", "1"]
    assert _train_vvi().main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "wrote no checkpoint, so it cannot be resumed" in err and "--resume" not in err
    assert not tmp.exists()
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "log.jsonl"]

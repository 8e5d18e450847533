"""xreid.experiments.pretrain_tiny (examples/pretrain_tiny.py): one-line usage errors, never
overwrites, writes loadable weights."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pretrain():
    from xreid.experiments import pretrain_tiny

    return pretrain_tiny


def test_bad_val_ids_is_exit_2(pretrain, tmp_path, capsys):
    assert pretrain.main(["--output", str(tmp_path / "w.safetensors"), "--ids", "10",
                          "--val-ids", "10"]) == 2
    assert "--val-ids: expected 1..9, got 10" in capsys.readouterr().err


def test_existing_output_is_not_overwritten(pretrain, tmp_path, capsys):
    out = tmp_path / "w.safetensors"
    out.write_bytes(b"mine")
    assert pretrain.main(["--output", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"mine"


def test_smoke_run_writes_weights_the_backbone_loads(pretrain, tmp_path):
    from safetensors import safe_open

    from xreid.backbones import build_backbone

    out = tmp_path / "w.safetensors"
    assert pretrain.main(["--output", str(out), "--ids", "6", "--val-ids", "2",
                          "--tracklets", "2", "--frames", "3", "--epochs", "1", "--iters", "2",
                          "--ids-per-batch", "2", "--img-size", "32", "16",
                          "--threads", "1"]) == 0
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["grid_size"] == "4x2" and meta["epoch"] == "1"
    build_backbone("tiny", img_size=(32, 16), weights=out)

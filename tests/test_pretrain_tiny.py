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
    import json

    from safetensors import safe_open

    from xreid.backbones import build_backbone

    out, log = tmp_path / "w.safetensors", tmp_path / "log.jsonl"
    assert pretrain.main(["--output", str(out), "--ids", "6", "--mannequin-ids", "5",
                          "--val-ids", "2", "--tracklets", "2", "--frames", "3", "--epochs", "1",
                          "--iters", "2", "--ids-per-batch", "2", "--img-size", "32", "16",
                          "--threads", "1", "--log", str(log)]) == 0
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["grid_size"] == "4x2" and meta["epoch"] == "1"
    build_backbone("tiny", img_size=(32, 16), weights=out)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    epoch = next(r for r in records if r["event"] == "epoch")
    parts = [epoch[f"val_mAP_{r}_{d}"] for r in ("procedural", "mannequin") for d in ("i2v", "v2i")]
    assert all(0.0 < v <= 1.0 for v in parts)  # both renderers validated, each a real mAP
    assert epoch["val_mean_mAP"] == pytest.approx(sum(parts) / 4, abs=1e-4)  # rounded to 4 places
    assert records[-1]["event"] == "done" and records[-1]["best_epoch"] == 1

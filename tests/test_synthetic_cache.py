"""The trainer's synthetic-data cache is keyed by the generator version."""

from __future__ import annotations

import json

import xreid.data.synthetic as synthetic
from xreid.data.build import build_reader
from xreid.engine.config import TrainConfig


def _config(root: str) -> TrainConfig:
    return TrainConfig.from_preset("demo", root=root, synthetic_train_ids=2,
                                   synthetic_test_ids=2, output_dir=root + "-run")


def test_stale_synthetic_cache_is_regenerated(tmp_path, monkeypatch):
    root = tmp_path / "synthetic"
    cfg = _config(str(root))
    build_reader(cfg.data, cfg.run.output_dir)
    marker = root / ".xreid-complete"
    stamp = json.loads(marker.read_text())
    assert stamp["generator_version"] == synthetic.GENERATOR_VERSION
    written = json.loads((root / ".xreid-synthetic.json").read_text())
    assert written["generator_version"] == synthetic.GENERATOR_VERSION

    sentinel = root / "sentinel.txt"
    sentinel.write_text("kept while the cache is current")
    build_reader(cfg.data, cfg.run.output_dir)  # same version: the cache is reused as is
    assert sentinel.exists()

    monkeypatch.setattr(synthetic, "GENERATOR_VERSION", synthetic.GENERATOR_VERSION + 1)
    # newer generator: the stale cache is rebuilt
    reader = build_reader(cfg.data, cfg.run.output_dir)
    assert not sentinel.exists()
    assert json.loads(marker.read_text())["generator_version"] == synthetic.GENERATOR_VERSION
    assert len(reader.train) > 0

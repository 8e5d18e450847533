"""The trainer's synthetic-data folder: keyed by parameters and generator version; a folder of
other parameters is refused and nothing in it is deleted (docs/reliability.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import xreid.data.synthetic as synthetic
from xreid.data.build import build_reader
from xreid.data.synthetic_cache import prepare_synthetic_root, synthetic_folder_name
from xreid.engine.config import TrainConfig


def _read(cfg):
    return build_reader(cfg.data, cfg.run.output_dir)


def _config(root: str | None, out: str, train_ids: int = 2) -> TrainConfig:
    return TrainConfig.from_preset("demo", root=root, synthetic_train_ids=train_ids,
                                   synthetic_test_ids=2, output_dir=out)


def test_synthetic_cache_is_reused_and_stamped(tmp_path):
    root = tmp_path / "synthetic"
    cfg = _config(str(root), str(tmp_path / "run"))
    build_reader(cfg.data, cfg.run.output_dir)
    stamp = json.loads((root / ".xreid-complete").read_text())
    assert stamp["generator_version"] == synthetic.GENERATOR_VERSION
    written = json.loads((root / ".xreid-synthetic.json").read_text())
    assert written["generator_version"] == synthetic.GENERATOR_VERSION
    sentinel = root / "sentinel.txt"
    sentinel.write_text("kept while the cache is current")
    build_reader(cfg.data, cfg.run.output_dir)  # same parameters: reused as is
    assert sentinel.exists()


def test_other_parameters_or_generator_are_refused_and_nothing_is_deleted(tmp_path,
                                                                          monkeypatch):
    root = tmp_path / "synthetic"
    _read(_config(str(root), str(tmp_path / "run")))
    mine = root / "notes.txt"
    mine.write_text("the user's file")
    files = sorted(p.relative_to(root) for p in root.rglob("*"))
    with pytest.raises(ValueError, match=r"root: .*synthetic holds a synthetic dataset made "
                                         r"with .*num_train_ids.*: 2.*pass another --root"):
        _read(_config(str(root), str(tmp_path / "run2"), train_ids=3))
    monkeypatch.setattr(synthetic, "GENERATOR_VERSION", synthetic.GENERATOR_VERSION + 1)
    with pytest.raises(ValueError, match="generator_version"):
        _read(_config(str(root), str(tmp_path / "run")))
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == files
    assert mine.read_text() == "the user's file"


def test_default_folders_are_keyed_by_parameters_and_version(tmp_path, monkeypatch):
    out = str(tmp_path / "runs" / "a")
    first = _read(_config(None, out))
    other = _read(_config(None, out, train_ids=3))
    assert Path(first.root) != Path(other.root)
    assert Path(first.root).name == synthetic_folder_name(
        # the 24 default validation identities are generated on top of the 2 training ones
        {"seed": 0, "num_train_ids": 2 + 24, "num_test_ids": 2})
    monkeypatch.setattr(synthetic, "GENERATOR_VERSION", synthetic.GENERATOR_VERSION + 1)
    newer = _read(_config(None, out))
    assert Path(newer.root) != Path(first.root)
    assert (Path(first.root) / ".xreid-complete").exists()  # the old one is left alone


def test_a_foreign_folder_is_refused_and_an_empty_one_is_used(tmp_path):
    params = {"seed": 0, "num_train_ids": 2, "num_test_ids": 2}
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "a.jpg").write_bytes(b"jpeg")
    with pytest.raises(ValueError, match="not an xreid synthetic dataset"):
        prepare_synthetic_root(foreign, params)
    assert [p.name for p in foreign.iterdir()] == ["a.jpg"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (prepare_synthetic_root(empty, params) / ".xreid-complete").exists()
    assert not list(tmp_path.glob("*.tmp-*"))

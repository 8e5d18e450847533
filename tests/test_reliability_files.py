"""Bad files and bad command lines: readers, weights files, ``xreid-convert``, ``--config``,
and the one-line CLI errors (exit 2 for a bad command line, 1 otherwise; ``--debug`` shows the
traceback)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
import torch

from xreid.data import (
    HITSZVCM,
    BUPTCampus,
    DataError,
    make_synthetic_bupt_campus,
    make_synthetic_hitsz_vcm,
)

ROOT = Path(__file__).resolve().parents[1]
VCM_KW = dict(num_train_ids=3, num_test_ids=2, tracklets_per_id=1, test_tracklets_per_id=2,
              frames=(12, 13), num_short=0, num_cameras=2, img_size=(16, 8), seed=1)
BUPT_KW = dict(num_train_ids=3, num_aux_ids=1, num_test_ids=2, pairs_per_id=1,
               test_pairs_per_id=2, frames=(2, 3), num_single_frame=0, img_size=(16, 8), seed=2)


@pytest.fixture(scope="module")
def vcm_root(tmp_path_factory):
    return make_synthetic_hitsz_vcm(tmp_path_factory.mktemp("vcm") / "VCM", **VCM_KW)


@pytest.fixture(scope="module")
def bupt_root(tmp_path_factory):
    return make_synthetic_bupt_campus(tmp_path_factory.mktemp("bupt") / "BUPT", **BUPT_KW)


def cli():
    from xreid.cli import train_script as train_vvi
    return train_vvi


# ----------------------------------------------------------------------------------- readers
def test_hitsz_empty_training_split_names_the_file(vcm_root, tmp_path):
    root = shutil.copytree(vcm_root, tmp_path / "VCM")
    (root / "info" / "track_train_info.txt").write_text("")
    with pytest.raises(DataError, match=r"track_train_info\.txt: expected training tracklets, "
                       r"got none \(the file lists none\)"):
        HITSZVCM(root)


def test_hitsz_min_len_dropping_every_training_tracklet(vcm_root):
    with pytest.raises(DataError, match=r"track_train_info\.txt: .*shorter than min_len=99"):
        HITSZVCM(vcm_root, min_len=99)


@pytest.mark.parametrize("name", ["train.txt", "query.txt", "gallery.txt"])
def test_bupt_empty_split_names_the_file(bupt_root, tmp_path, name):
    root = shutil.copytree(bupt_root, tmp_path / "BUPT")
    (root / name).write_text("")
    split = name.removesuffix(".txt")
    kind = "training" if split == "train" else split
    with pytest.raises(DataError, match=rf"{name}: expected {kind} tracklets, got none"):
        BUPTCampus(root)


def test_bupt_min_len_dropping_every_query(bupt_root):
    with pytest.raises(DataError, match=r"\.txt: expected .* tracklets, got none \(all \d+ "
                       r"are shorter than min_len=50\)"):
        BUPTCampus(bupt_root, min_len=50)


# ---------------------------------------------------------------------------- weights files
def test_garbage_safetensors_names_the_file(tmp_path):
    from xreid import build_backbone
    from xreid.backbones import read_checkpoint

    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"\xff" * 100)
    with pytest.raises(ValueError, match=r"garbage\.safetensors.* not a valid safetensors"):
        read_checkpoint(bad)
    with pytest.raises(ValueError, match=r"garbage\.safetensors"):
        build_backbone("tiny", img_size=(32, 16), weights=str(bad))


@pytest.fixture
def tiny_weights(tmp_path):
    from xreid import build_backbone

    path = tmp_path / "tiny.pt"
    torch.save(build_backbone("tiny", img_size=(32, 16)).state_dict(), path)
    return path


def test_convert_unwritable_output_names_the_output(tmp_path, tiny_weights, capsys):
    from xreid.convert import main

    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    out = blocker / "out.safetensors"
    assert main([str(tiny_weights), str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("xreid-convert: error: output: cannot write ")
    assert str(out) in err and ".tmp" not in err and "\n" not in err


def test_convert_disk_full_names_the_output(tmp_path, tiny_weights, monkeypatch, capsys):
    import errno

    from xreid.convert import main

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "w.safetensors"
    monkeypatch.setattr(os, "replace", full)
    assert main([str(tiny_weights), str(out)]) == 1
    err = capsys.readouterr().err
    assert f"could not write {out} (No space left on device)" in err
    assert list(tmp_path.glob(".*.tmp")) == []


def test_converted_weights_respect_the_umask(tmp_path, tiny_weights):
    from xreid.convert import convert_checkpoint

    old = os.umask(0o022)
    try:
        convert_checkpoint(tiny_weights, tmp_path / "a.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.safetensors").stat().st_mode) == 0o644


def test_convert_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    from xreid.convert import main

    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"\xff" * 100)
    assert main([str(bad), str(tmp_path / "o.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "garbage.safetensors" in err
    with pytest.raises(ValueError, match="garbage.safetensors"):
        main([str(bad), str(tmp_path / "o.safetensors"), "--debug"])


# ------------------------------------------------------------------------ train_vvi.py CLI
def run_cli(capsys, *args):
    code = cli().main(["--no-progress", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("content", "match"), [
    ("{not json", r"--config: .*bad\.json is not valid JSON \(.* at line 1, column 2\)"),
    ("[1, 2]", r"--config: expected a mapping of options in .*bad\.json, got a list"),
    ('{"lr": -1}', r"--config .*bad\.json: optim\.lr: expected a value in \(0\.0, inf\], got -1"),
    ('{"bogus": 1}', r"--config .*bad\.json: config: unknown option 'bogus'"),
])
def test_bad_config_file_names_the_file(tmp_path, capsys, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, err = run_cli(capsys, "--config", str(path), "--output-dir", str(tmp_path / "o"))
    assert code == 2
    assert err.startswith("train_vvi.py: error: ") and err.count("\n") == 1
    assert __import__("re").search(match, err), err


def test_missing_config_file(tmp_path, capsys):
    code, err = run_cli(capsys, "--config", str(tmp_path / "nope.json"))
    assert code == 2 and f"--config: no such file {tmp_path / 'nope.json'}" in err


@pytest.mark.parametrize(("args", "match"), [
    (["--device", "foo"], "device: expected auto, cpu, cuda or cuda:N, got 'foo'"),
    (["--threads", "-2"], "threads: expected a value in [1, inf] or None, got -2"),
    (["--max-grad-norm", "-1"], "max_grad_norm: expected a value in (0.0, inf] or None"),
    (["--milestones", "0"], "milestones: expected strictly increasing epochs >= 1, got [0]"),
    (["--eval-only"], "--eval-only needs --checkpoint PATH"),
])
def test_bad_options_are_one_line_usage_errors(tmp_path, capsys, args, match):
    code, err = run_cli(capsys, "--output-dir", str(tmp_path / "o"), *args)
    assert code == 2
    assert err == f"train_vvi.py: error: {match}\n" if match.startswith("--") else match in err
    assert err.startswith("train_vvi.py: error: ") and err.count("\n") == 1


def test_argparse_errors_use_the_same_prefix_and_exit_2(capsys):
    assert cli().main(["--lr", "abc"]) == 2
    assert capsys.readouterr().err == ("train_vvi.py: error: --optim.lr: Expected a <class "
                                       "'float'>. Got value: abc\n")


def test_convert_usage_errors_are_one_line(capsys):
    from xreid.convert import main

    with pytest.raises(SystemExit) as info:
        main(["in.pt"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("xreid-convert: error: ") and err.count("\n") == 1


def test_runtime_errors_exit_1_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = ["--device", "cuda", "--output-dir", str(tmp_path / "o")]
    code, err = run_cli(capsys, *args)
    assert code == 1
    assert err == ("train_vvi.py: error: device: 'cuda' asks for CUDA, but no CUDA device is "
                   "available (use --device cpu or auto)\n")
    with pytest.raises(ValueError, match="no CUDA device is available"):
        cli().main(["--no-progress", "--debug", *args])


def test_eval_only_with_a_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "ck.pt"
    bad.write_bytes(b"garbage")
    code, err = run_cli(capsys, "--eval-only", "--checkpoint", str(bad), "--output-dir",
                        str(tmp_path / "o"), "--root", str(tmp_path.parent / "synthetic-data"),
                        "--synthetic-train-ids", "8", "--synthetic-test-ids", "6",
                        "--img-size", "32", "16")
    assert code == 1 and err.count("\n") == 1 and f"cannot read {bad}: Unsupported operand" in err

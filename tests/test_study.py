"""The ablation CLIs end to end with a tiny budget: train_vvi.py --variant and study.py
(runs, resume/skip, study.json, study.md, the figure PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY_SETS = ["synthetic_train_ids=8", "synthetic_test_ids=6", "img_size=[32,16]",
             "num_frames=3", "ids_per_batch=2", "clips_per_modality=1", "epochs=1",
             "iters_per_epoch=1", "eval_batch_size=32", "memory_batch_size=64",
             "embed_dim=32", "depth=1", "num_heads=2", "patch_size=8", "weights=null"]


def _import(name: str):
    """The module behind ``examples/<name>.py`` (the scripts only call its ``main``)."""
    import importlib

    module = {"train_vvi": "xreid.cli.train_script", "study": "xreid.experiments.study"}[name]
    return importlib.import_module(module)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    # the same cached tiny synthetic dataset (same generator options) as test_engine.py's
    return str(tmp_path_factory.getbasetemp() / "synthetic-data")


def test_train_vvi_variant_is_applied_and_recorded(tmp_path, data_root):
    train_vvi = _import("train_vvi")
    out = tmp_path / "run"
    args = ["--no-progress", "--variant", "tab5/4", "--root", data_root, "--output-dir",
            str(out), "--synthetic-train-ids", "8", "--synthetic-test-ids", "6",
            "--img-size", "32", "16", "--num-frames", "3", "--ids-per-batch", "2",
            "--clips-per-modality", "1", "--epochs", "1", "--iters-per-epoch", "1",
            "--embed-dim", "32", "--depth", "1", "--num-heads", "2", "--patch-size", "8",
            "--model.weights", "null", "--no-eval-before"]
    assert train_vvi.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    for cfg in (metrics["config"], config):
        assert cfg["variant"] == "tab5/4"
        model = cfg["model"]
        assert (model["use_sii"], model["use_lii"], model["use_cii"]) == (False, False, True)
    assert 0.0 <= metrics["after"]["i2v"]["mAP"] <= 1.0
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if r["event"] == "iteration"]
    assert steps and "cmcl" in steps[0] and "cpcl" in steps[0]


def test_train_vvi_unknown_variant_is_a_clear_error(tmp_path, capsys):
    train_vvi = _import("train_vvi")
    try:
        rc = train_vvi.main(["--variant", "tab5/9", "--output-dir", str(tmp_path)])
    except ValueError as exc:  # the script may also report it as a one-line error
        message = str(exc)
    else:
        assert rc != 0
        message = capsys.readouterr().err
    assert "tab5/9" in message and "tab5/8" in message and "fig5/s0" in message


def test_study_runs_resumes_and_summarises(tmp_path, data_root, capsys):
    study = _import("study")
    out = tmp_path / "study"
    argv = ["--study", "fig5/s0", "tab4/vanilla", "--output-dir", str(out), "--no-progress",
            "--set", f"root={data_root}", *TINY_SETS]
    assert study.main(argv) == 0
    data = json.loads((out / "study.json").read_text())
    assert [(r["variant"], r["status"]) for r in data["runs"]] == [
        ("fig5/s0", "trained"), ("tab4/vanilla", "trained")]
    for r in data["runs"]:
        assert r["config"]["variant"] == r["variant"]
        assert {"before", "after"} <= set(r["metrics"])
    assert data["runs"][1]["config"]["model"]["use_memory"] is False
    after = data["summary"]["after"]["fig5/s0"]["i2v/rank1"]
    assert after["n"] == 1 and 0.0 <= after["mean"] <= 1.0
    md = (out / "study.md").read_text()
    assert "| pixels |" in md and "| untrained |" in md
    # the synthetic runs hold identities out: the validation table comes first
    assert md.index("## Validation") < md.index("## Test")
    val = data["summary"]["validation"]["after"]["fig5/s0"]["i2v/mAP"]["mean"]
    assert val == data["runs"][0]["metrics"]["validation"]["after"]["i2v"]["mAP"]
    assert "`fig5/s0`" in md and "`tab4/vanilla`" in md
    pixels = data["summary"]["pixels"]["fig5/s0"]["i2v/mAP"]["mean"]
    assert pixels == data["runs"][0]["metrics"]["baselines"]["pixels"]["i2v"]["mAP"]
    assert "I2V R-1 | I2V mAP | V2I R-1 | V2I mAP" in md
    # paper numbers, labelled with their dataset
    assert "| `tab4/vanilla` | Vanilla | HITSZ-VCM | 53.9 | 44.0 | 55.9 | 42.0 |" in md
    assert (out / "fig5.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = json.loads((out / "runs" / "fig5-s0" / "seed0" / "metrics.json").read_text())

    # resume: finished runs are skipped; a run that lost its metrics continues from its
    # final checkpoint and reproduces them
    (out / "runs" / "fig5-s0" / "seed0" / "metrics.json").unlink()
    capsys.readouterr()
    assert study.main(argv) == 0
    data = json.loads((out / "study.json").read_text())
    assert [r["status"] for r in data["runs"]] == ["trained", "skipped (finished before)"]
    again = json.loads((out / "runs" / "fig5-s0" / "seed0" / "metrics.json").read_text())
    assert again["after"] == first["after"] and again["before"] == first["before"]
    captured = capsys.readouterr()
    assert "resumed at epoch 1" in captured.out + captured.err

    # a finished run with another configuration is not silently reused
    changed = [a if not a.startswith("iters_per_epoch") else "iters_per_epoch=2"
               for a in argv]
    assert study.main(changed) == 2
    assert "finished run with a different configuration" in capsys.readouterr().err
    # ... nor an interrupted one
    (out / "runs" / "fig5-s0" / "seed0" / "metrics.json").unlink()
    assert study.main(changed) == 2
    assert "interrupted run with a different configuration" in capsys.readouterr().err


def test_study_list_and_argument_errors(capsys):
    study = _import("study")
    assert study.main(["--list"]) == 0
    listed = capsys.readouterr().out
    for name in ("tab3/baseline", "tab4/cross-modal-collaboration", "tab5/8", "fig4/s4",
                 "fig5/s0", "tab4/textual-prompts"):
        assert name in listed
    assert study.main(["--study", "tab9"]) == 2
    assert "unknown name 'tab9'" in capsys.readouterr().err
    assert study.main(["--study", "tab5/1", "--set", "bogus=1"]) == 2
    assert "--set" in capsys.readouterr().err
    assert study.main(["--study", "tab5/1", "--iterations", "3"]) == 2
    assert "--iterations" in capsys.readouterr().err


def test_stride_notes_flag_degenerate_strides_for_short_clips():
    from xreid.engine import TrainConfig
    from xreid.engine.variants import get_variant

    study = _import("study")
    plans = [(get_variant(n), 0, TrainConfig.from_preset("demo", variant=n))
             for n in ("fig4/s3", "fig4/s4", "fig5/s3", "fig5/s4")]
    notes = study.stride_notes(plans)  # the demo preset has T = 4 frames
    assert len(notes) == 2
    assert "`fig4/s4`: SII stride 4 >= T = 4" in notes[0]
    assert "`fig5/s4`: LII stride 4 acts modulo T = 4 frames, i.e. as S = 0" in notes[1]


def test_stored_numbers_name_their_dataset():
    """Table 3 carries the paper's HITSZ-VCM and BUPTCampus rows, each labelled."""
    from xreid.engine.variants import study_variants

    study = _import("study")
    md = study.render_markdown("t", study_variants("tab3"), [], "s", [], [])
    assert "| `tab3/mii` | + MII | HITSZ-VCM | 73.4 | 60.5 | 76.1 | 59.6 |" in md
    assert "| `tab3/mii` | + MII | BUPTCampus | 68.2 | 68.5 | 68.8 | 65.9 |" in md
    assert "| `tab3/baseline` | Baseline | BUPTCampus | 61.2 | 58.6 | 61.7 | 57.3 |" in md
    assert "| `tab3/cpc` | + CPC | BUPTCampus | 63.6 | 62.6 | 64.4 | 61.2 |" in md


def test_list_shows_every_new_variant_on_one_line(capsys):
    study = _import("study")
    assert study.main(["--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    for name in ("cpcl/paper", "cpcl/memory", "cmcl/sii", "cmcl/lii", "cmcl/v2i", "cmcl/i2v",
                 "baselines/pcl", "baselines/textual-prompts-xreid", "code/detach-mii",
                 "code/imagenet-norm", "code/epoch-300"):
        lines = [line for line in out if line.split() and line.split()[0] == name]
        assert len(lines) == 1 and len(lines[0].split()) > 3, name


@pytest.mark.parametrize(("sets", "message"), [
    (["img_size=[64"], "data.img_size: expected tuple[int, int]"),
    (["optim.lr=0"], "optim.lr: expected a value in (0.0, inf]"),
    (["bogus=1"], "--set: expected KEY=VALUE with KEY an option"),
])
def test_bad_set_is_one_line_exit_2(tmp_path, capsys, sets, message):
    study = _import("study")
    assert study.main(["--study", "tab5/1", "--output-dir", str(tmp_path), "--set", *sets]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err

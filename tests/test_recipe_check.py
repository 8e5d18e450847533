"""examples/recipe_check.py: --set validation, the cross-dataset table (fake metrics), reuse."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from xreid.engine import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def recipe():
    from xreid.experiments import recipe_check

    return recipe_check


def _metrics(r1: float, ap: float) -> dict:
    one = {"rank1": r1, "mAP": ap}
    return {"i2v": one, "v2i": one}


@pytest.mark.parametrize(("argv", "message"), [
    (["--set", "bogus=1"], "--set: expected KEY=VALUE with KEY an option"),
    (["--set", "lr=0"], "optim.lr: expected a value in (0.0, inf], got 0"),
    (["--set", "optim.lr=0"], "optim.lr: expected a value in (0.0, inf], got 0"),
    (["--set", "img_size=[64"], "data.img_size: expected tuple[int, int]"),
    (["--seeds", "-1"], "run.seed: expected a value in [0, inf], got -1"),
])
def test_bad_set_is_one_line(recipe, tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.setattr(recipe, "make_dataset", lambda name, data_dir: ("hitsz-vcm", tmp_path))
    assert recipe.main([*argv, "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recipe_check.py: error: ") and err.count("\n") == 1
    assert message in err, err


def test_table_means_over_seeds_then_datasets(recipe):
    def run(after):
        part = {"after": _metrics(*after), "baselines": {"pixels": _metrics(0.1, 0.2),
                                                          "untrained": _metrics(0.0, 0.05)}}
        # the test part must never leak into the validation table
        return {**{k: {"i2v": {"rank1": 9, "mAP": 9}, "v2i": {"rank1": 9, "mAP": 9}}
                   if k == "after" else v for k, v in part.items()}, "validation": part}

    results = {"a": [run((0.5, 0.6)), run((0.3, 0.4))], "b": [run((0.2, 0.2))]}
    text = recipe.table(results, "validation")
    assert "| a | trained | 40.0 ± 14.1 | 50.0 ± 14.1 |" in text
    # mean over datasets of the per-dataset means: (0.4 + 0.2) / 2 and (0.5 + 0.2) / 2
    assert "| **mean, procedural** | trained | 30.0 ± 14.1 | 35.0 ± 21.2 |" in text
    assert "| **mean, procedural** | pixels | 10.0 ± 0.0 | 20.0 ± 0.0 |" in text
    assert "900.0" in recipe.table(results, "test")
    report = recipe.report(results)
    assert report.index("## Validation") < report.index("## Test")


def test_mannequin_datasets_are_a_separate_group(recipe):
    part = {"after": _metrics(0.5, 0.5), "baselines": {"pixels": _metrics(0.1, 0.1),
                                                        "pretrained": _metrics(0.2, 0.2)}}
    run = {**part, "validation": part}
    text = recipe.table({"bupt-40ids": [run], "mannequin-vcm-48ids": [run]}, "validation")
    assert "| **mean, procedural** | pretrained |" in text
    assert "| **mean, transfer (mannequin)** | trained | 50.0 ± 0.0 |" in text


def test_finished_run_is_reused_only_with_the_same_options(recipe, tmp_path, monkeypatch):
    monkeypatch.setattr(recipe, "make_dataset", lambda name, data_dir: ("hitsz-vcm", tmp_path))
    out = tmp_path / "runs"
    args = argparse.Namespace(data_dir=str(tmp_path), threads=1, output_dir=str(out))
    run_dir = out / "vcm-16ids-3cams" / "seed0"
    run_dir.mkdir(parents=True)
    cfg = TrainConfig.from_preset("demo", dataset="hitsz-vcm", root=str(tmp_path), seed=0,
                                  output_dir=str(run_dir), lr=1e-3,
                                  val_ids=recipe.DATASETS["vcm-16ids-3cams"][3])
    # recorded on another machine with other threads: still the same run
    recorded = cfg.to_dict()
    recorded["run"]["threads"] = 4
    done = run_dir / "metrics.json"
    done.write_text(json.dumps({"config": recorded, "after": "kept"}))

    def run(overrides):
        return recipe.run_recipe(recipe.recipe_config("vcm-16ids-3cams", args, overrides, 0))

    assert run({"optim": {"lr": 1e-3}})["after"] == "kept"
    # another learning rate must not be reported under this one's name
    with pytest.raises(SystemExit, match=r"metrics.json was trained with other options: "
                                         r"optim\.lr=0\.001 \(this check: 0\.0005\)"):
        run({"optim": {"lr": 5e-4}})
    # an option the old run does not record is not compared
    del recorded["data"]["erasing_p"]
    done.write_text(json.dumps({"config": recorded, "after": "kept"}))
    assert run({"optim": {"lr": 1e-3}, "data": {"erasing_p": 0.0}})["after"] == "kept"
    # the flat configuration of an earlier version is compared through its new names
    flat = {"lr": 1e-3, "threads": 4, "erasing_p": 0.5, "output_dir": "elsewhere"}
    done.write_text(json.dumps({"config": flat, "after": "kept"}))
    assert run({"optim": {"lr": 1e-3}})["after"] == "kept"
    with pytest.raises(SystemExit, match=r"optim\.lr=0\.001 \(this check: 0\.0005\)"):
        run({"optim": {"lr": 5e-4}})


@pytest.mark.parametrize("text, why", [("{not json", "unreadable file"),
                                       ('{"after": 1}', 'with its "config"; got none')])
def test_unreadable_finished_run_is_one_line(recipe, tmp_path, monkeypatch, text, why):
    monkeypatch.setattr(recipe, "make_dataset", lambda name, data_dir: ("hitsz-vcm", tmp_path))
    args = argparse.Namespace(data_dir=str(tmp_path), threads=1, output_dir=str(tmp_path / "r"))
    run_dir = tmp_path / "r" / "bupt-40ids" / "seed3"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(text)
    with pytest.raises(SystemExit, match=r"recipe_check.py: error: .*seed3.metrics.json: "
                                         r"expected a finished run's metrics") as exc:
        recipe.run_recipe(recipe.recipe_config("bupt-40ids", args, {}, 3))
    assert why in str(exc.value) and "\n" not in str(exc.value)

"""``xreid train`` / ``examples/train_vvi.py`` configuration: sections, flags of earlier
versions, config files, ``--print-config`` round trip, and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from xreid.cli.train import train_main as main
from xreid.engine import TrainConfig, build_trainer
from xreid.engine.sections import FLAT_OPTIONS

PROG = "train_vvi.py"


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv, prog=PROG)
    out, err = capsys.readouterr()
    return code, out, err


def printed(argv: list[str], capsys) -> dict:
    code, out, err = run(["--print-config", *argv], capsys)
    assert code == 0, err
    return yaml.safe_load(out)


# old flag -> (section, field, expected value)
OLD_FLAGS = [
    (["--lr", "5e-4"], "optim", "lr", 5e-4),
    (["--epochs", "3"], "optim", "epochs", 3),
    (["--milestones", "3", "5"], "optim", "milestones", [3, 5]),
    (["--img-size", "32", "16"], "data", "img_size", [32, 16]),
    (["--use-cameras"], "data", "use_cameras", True),
    (["--no-use-cii"], "model", "use_cii", False),
    (["--no-cii-query-residual"], "model", "cii_query_residual", False),
    (["--cmcl-stop-gradient", "anchor"], "model", "cmcl_stop_gradient", "anchor"),
    (["--num-heads", "6"], "model", "backbone_heads", 6),
    (["--cpcl-weight", "0.5"], "loss", "cpcl", 0.5),
    (["--memory-init", "every_epoch"], "loss", "memory_init", "every_epoch"),
    (["--text-prompts"], "prompts", "enabled", True),
    (["--prompt-stage1-epochs", "2"], "prompts", "stage1_epochs", 2),
    (["--device", "cpu"], "run", "device", "cpu"),
    (["--output-dir", "somewhere"], "run", "output_dir", "somewhere"),
    (["--seed=3"], "run", "seed", 3),
    (["--max-grad-norm", "1.5"], "optim", "max_grad_norm", 1.5),
]


@pytest.mark.parametrize(("argv", "section", "field", "value"), OLD_FLAGS)
def test_flags_of_earlier_versions_keep_working(argv, section, field, value, capsys):
    assert printed(argv, capsys)[section][field] == value


def test_every_flat_option_has_a_section_field():
    cfg = TrainConfig().to_dict()
    for old, dotted in FLAT_OPTIONS.items():
        section, field = dotted.split(".")
        assert field in cfg[section], old


def test_dotted_flags_with_dashes_or_underscores(capsys):
    a = printed(["--model.cii-query-residual", "false", "--optim.lr", "5e-4"], capsys)
    b = printed(["--model.cii_query_residual=false", "--optim.lr=5e-4"], capsys)
    assert a == b
    assert a["model"]["cii_query_residual"] is False and a["optim"]["lr"] == 5e-4


def test_precedence_preset_variant_file_flags(tmp_path, capsys):
    conf = tmp_path / "c.yaml"
    conf.write_text("model:\n  use_lii: true\n  sii_depth: 3\noptim:\n  lr: 0.002\n")
    d = printed(["--preset", "official", "--variant", "tab5/3", "--data.root", "/d",
                 "--config", str(conf), "--optim.lr", "0.003"], capsys)
    assert d["model"]["hard_selection"] == "cross_modal"  # variant over the preset's "any"
    assert d["model"]["use_sii"] is False  # the variant's
    assert d["model"]["use_lii"] is True and d["model"]["sii_depth"] == 3  # file over variant
    assert d["optim"]["lr"] == 0.003  # flag over file
    assert d["optim"]["iters_per_epoch"] == 300  # the preset's
    assert d["preset"] == "official" and d["variant"] == "tab5/3"


def test_print_config_reproduces_the_configuration(tmp_path, capsys):
    argv = ["--preset", "paper", "--data.root", "/d", "--optim.lr", "1e-5", "--no-use-cii"]
    first = printed(argv, capsys)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(first))
    again = printed(["--config", str(path)], capsys)
    assert again == first
    # and the resolved configuration is the same object as the library builds
    assert TrainConfig.from_dict(first) == TrainConfig.from_preset(
        "paper", root="/d", lr=1e-5, use_cii=False)


def test_a_flat_config_json_of_an_earlier_version_is_converted(tmp_path, capsys):
    old = {"lr": 5e-4, "model_preset": "official", "use_cii": True, "frame_id_weight": 0.25,
           "num_frames": 4, "epochs": 3}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    d = printed(["--config", str(path)], capsys)
    assert d["optim"]["lr"] == 5e-4 and d["optim"]["epochs"] == 3
    assert d["model"]["sii_depth"] == 2 and d["model"]["hard_selection"] == "any"  # official
    assert d["model"]["use_cii"] is True  # the explicit value over the model preset
    assert d["loss"]["frame_id_per_frame"] == 0.25  # the old explicit weight was per frame


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(("argv", "message"), [
    (["--model-preset", "official"], "--model-preset was removed: its head options are the "
                                     "model section of --preset NAME"),
    (["--loss-preset", "paper"], "--loss-preset was removed"),
    (["--img-size", "60", "30"], "data.img_size: expected multiples of the patch size 8"),
    (["--patch-size", "7"], "data.img_size: expected multiples of the patch size 7"),
    (["--num-heads", "3", "--embed-dim", "100"],
     "model.embed_dim: expected a multiple of backbone_heads (3), got 100"),
    (["--device", "gpu0"], "run.device: expected auto, cpu, cuda or cuda:N, got 'gpu0'"),
    (["--optim.lr", "abc"], "--optim.lr:"),
    (["--optim.lr", "0"], "optim.lr: expected a value in (0.0, inf], got 0"),
    (["--run.seed", "-1"], "run.seed: expected a value in [0, inf], got -1"),
    (["--data.img_size", "[64"], "--data.img_size:"),
    (["--bogus", "1"], "unrecognized arguments: --bogus"),
    (["--preset", "nope"], "argument --preset: invalid choice"),
    (["--variant", "tab9/1"], "variant: unknown name 'tab9/1'"),
    (["--checkpoint", "x.pt"], "--checkpoint is read only with --eval-only"),
])
def test_bad_command_lines_are_one_line_exit_2(argv, message, capsys):
    code, _out, err = run(["--print-config", *argv], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"{PROG}: error: "), err
    assert message in err, err


@pytest.mark.parametrize(("name", "data", "message"), [
    ("bom.json", b'\xef\xbb\xbf{"lr": 0.001}', "starts with a UTF-8 byte-order mark"),
    ("latin.yaml", b"optim:\n  lr: 0.001 # caf\xe9\n", "is not UTF-8 text"),
    ("ms.json", b'{"milestones": 5}', "optim.milestones: expected tuple[int, ...]"),
    ("broken.json", b'{"lr": ', "is not valid JSON"),
    ("broken.yaml", b"optim: [1,\n", "is not valid YAML"),
    ("list.yaml", b"- 1\n- 2\n", "expected a mapping of options"),
    ("section.yaml", b"optim: 3\n", "section 'optim' must be a mapping, got 3"),
    ("unknown.yaml", b"optim:\n  lrr: 1\n", "unknown option(s) ['lrr'] in section 'optim'"),
])
def test_bad_config_files_are_one_line_exit_2(tmp_path, name, data, message, capsys):
    path = _write(tmp_path / name, data)
    code, _out, err = run(["--print-config", "--config", path], capsys)
    assert code == 2
    assert err.count("\n") == 1 and path in err and message in err, err


def test_missing_config_file(tmp_path, capsys):
    code, _, err = run(["--print-config", "--config", str(tmp_path / "no.yaml")], capsys)
    assert code == 2 and "--config: no such file" in err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ckpt")
    cfg = TrainConfig.from_preset(
        "demo", root=str(tmp / "data"), synthetic_train_ids=8, synthetic_test_ids=6,
        img_size=(32, 16), num_frames=3, ids_per_batch=2, clips_per_modality=1, epochs=1,
        iters_per_epoch=1, eval_before=False, output_dir=str(tmp / "run"))
    trainer = build_trainer(cfg)
    trainer.save_checkpoint()
    return tmp / "run" / "checkpoint.pt"


def test_resume_conflicts_exit_2_through_flags_and_config(checkpoint, tmp_path, capsys):
    code, _, err = run(["--resume", str(checkpoint), "--optim.lr", "0.5", "--print-config"],
                       capsys)
    assert code == 2 and "cannot change --optim.lr (checkpoint 0.0003, given 0.5)" in err, err
    code, _, err = run(["--resume", str(checkpoint), "--lr", "0.5", "--print-config"], capsys)
    assert code == 2 and "--optim.lr" in err
    saved = TrainConfig.load(checkpoint.parent / "config.json") if (
        checkpoint.parent / "config.json").exists() else None
    base = saved.to_dict() if saved else printed(["--resume", str(checkpoint)], capsys)
    base["optim"]["lr"] = 0.5
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump(base))
    code, _, err = run(["--resume", str(checkpoint), "--config", str(conf), "--print-config"],
                       capsys)
    assert code == 2 and "cannot change --optim.lr (checkpoint 0.0003, given 0.5)" in err, err
    code, _, err = run(["--resume", str(checkpoint), "--preset", "paper", "--print-config"],
                       capsys)
    assert code == 2 and "cannot change --preset (checkpoint 'demo', given 'paper')" in err
    # resumable options may change
    d = printed(["--resume", str(checkpoint), "--optim.epochs", "4", "--run.device", "cpu"],
                capsys)
    assert d["optim"]["epochs"] == 4


def test_installed_command_has_train(capsys):
    from xreid.cli import main as xreid_main

    assert xreid_main(["train", "--print-config", "--optim.lr", "2e-3"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["optim"]["lr"] == 2e-3


def test_a_new_model_option_is_one_field_and_its_use(capsys):
    """model.camera_coef: the field (ModelConfig), its use (the model spec), nothing else."""
    from xreid.engine import build_model

    d = printed(["--model.camera_coef", "0.5", "--data.use_cameras", "true"], capsys)
    cfg = TrainConfig.from_dict(d)
    model = build_model(cfg, 4, 3)
    assert model.backbone.camera_coef == 0.5
    assert build_model(TrainConfig(), 4, 3).backbone.camera_coef == 1.0
    code, _out, err = run(["--print-config", "--model.camera_coef", "nan"], capsys)
    assert code == 2 and "--model.camera_coef:" in err and err.count("\n") == 1

"""Every field of every section of :class:`TrainConfig` is validated: a table of bad values per
field, checked to cover all fields (a new field without a bad-value case fails this test).

The table is keyed by the flat names of earlier versions where a field had one (converted with
``FLAT_OPTIONS``) and by ``section.field`` otherwise; errors name ``section.field``."""

from __future__ import annotations

import dataclasses

import pytest

from xreid.engine import TrainConfig
from xreid.engine.sections import FLAT_OPTIONS, SECTIONS

BAD: dict[str, list[object]] = {
    "dataset": ["vcm"],
    "root": ["", 3],
    "synthetic_seed": [-1, 1.5],
    "synthetic_train_ids": [0, "8"],
    "synthetic_test_ids": [0, True],
    "min_len": [0],
    "val_ids": [-1, 1.5, True],
    "img_size": [(0, 16), (32,), (32.5, 16)],
    "num_frames": [0, 2.0],
    "ids_per_batch": [0],
    "clips_per_modality": [0],
    "normalization": ["none"],
    "flip_p": [-0.1, 1.5, float("nan")],
    "pad": [-1],
    "erasing_p": [1.01, -0.5],
    "num_workers": [-1],
    "use_cameras": ["yes", 1],
    "backbone": ["", "resnet50"],
    "weights": ["", 5],
    "patch_size": [0],
    "embed_dim": [0, -8],
    "depth": [0],
    "num_heads": [0],
    "model.num_heads": [0],
    "model.lii_depth": [0],
    "model.frame_logits": ["yes"],
    "model.mlp_ratio": [0.0],
    "model.fold_div": [0],
    "model.drop_path": [1.0, -0.1],
    "loss.margin": [-0.1],
    "loss.frame_id": [-1.0],
    "model.camera_coef": [float("nan"), -1.0],
    "lii_stride": [-1],
    "sii_depth": [0],
    "use_lii": ["false"],
    "use_cii": [0],
    "cii_query_residual": ["no"],
    "cmcl_stop_gradient": ["both", 1],
    "cmcl_branches": ["short", 1],
    "cmcl_directions": ["v2v", True],
    "cii_depth": [0, -1, 1.5, True],
    "cpcl_form": ["printed", 0],
    "memory_shared": ["yes", 1],
    "prompt_template": ["A photo of a person.", 3],
    "detach_mii": ["true"],
    "freeze_patch_embed": [None],
    "grad_checkpointing": ["no"],
    "label_smoothing": [1.0, -0.1],
    "memory_init": ["never"],
    "memory_batch_size": [0],
    "epochs": [0, -3],
    "iters_per_epoch": [0],
    "lr": [0.0, -1e-4, float("inf")],
    "warmup_epochs": [-1],
    "warmup_factor": [0.0, -0.1, 2.0],
    "milestones": [(0,), (-5,), (30, 20), (10, 10)],
    "gamma": [0.0, -0.1, 1.5],
    "weight_decay": [-1e-4],
    "bias_lr_factor": [-1.0],
    "classifier_lr_factor": [-10.0],
    "head_lr_factor": [-1.0],
    "max_grad_norm": [-1.0, 0.0],
    "device": ["foo", "cuda:x", "gpu", ""],
    "threads": [0, -2],
    "amp": ["fp8"],
    "compile": ["yes"],
    "seed": [-1, 0.5],
    "deterministic": [2],
    "eval_batch_size": [0],
    "eval_sampling": ["random"],
    "eval_before": ["no"],
    "rerank": [1],
    "output_dir": ["", None],
    "save_every": [0],
    "log_every": [0],
    "run.log": [("bogus",), "jsonl", ("jsonl", 3)],
    "preset": ["tiny"],
    "extra": [[1, 2]],
    # ablation switches (docs/ablations.md)
    "use_sii": ["no"],
    "sii_stride": [0, 1.5],
    "use_memory": [1],
    "hard_selection": ["hardest"],
    "memory_collaboration": ["yes"],
    "memory_momentum": [-0.1, 1.0],
    "memory_temperature": [0.0, -0.05],
    "cpcl_weight": [-1.0],
    "triplet_weight": [-0.5],
    "id_weight": [-1.0],
    "cmcl_weight": [-2.0],
    "frame_id_weight": [-0.1],
    "variant": ["tab9/1", 3],
    # textual prompts (docs/textual-prompts.md)
    "text_prompts": ["yes"],
    "text_weights": ["", 7],
    "prompt_stage1_epochs": [-1, 1.5],
    "prompt_stage1_lr": [0.0, -1e-3],
    "prompt_stage1_batch_size": [0],
    "prompt_stage1_i2t": ["some"],
    "prompt_similarity": ["l2"],
    "prompt_i2t_weight": [-1.0],
    # recipe (docs/training.md)
    "random_init": ["yes"],
    "pixel_baseline": [1],
}

GOOD: dict[str, list[object]] = {
    "threads": [None, 1, 4],
    "max_grad_norm": [None, 0.5],
    "device": ["auto", "cpu", "cuda", "cuda:3"],
    "warmup_factor": [1.0, 1e-3],
    "gamma": [1.0, 0.1],
    "milestones": [(), (30, 50)],
    "erasing_p": [0.0, 1.0],
    "lii_stride": [0, 2],
    "bias_lr_factor": [0.0],
    "min_len": [None, 1, 12],
}


TOP = ("preset", "variant", "extra")


def _dotted(name: str) -> str:
    return FLAT_OPTIONS.get(name, name)


def _with(name: str, value: object) -> TrainConfig:
    """The demo configuration with one field set (no validation yet)."""
    cfg = TrainConfig()
    dotted = _dotted(name)
    if dotted in TOP:
        setattr(cfg, dotted, value)
        return cfg
    section, field = dotted.split(".")
    setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **{field: value}))
    return cfg


def test_every_field_has_a_bad_value_case():
    names = {f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    names |= set(TOP)
    covered = {_dotted(k) for k in BAD}
    assert names - covered == set(), "add bad values for the new fields to BAD"
    assert covered - names == set()


@pytest.mark.parametrize(("name", "value"),
                         [(k, v) for k, values in BAD.items() for v in values])
def test_bad_value_is_refused_naming_the_field(name, value):
    cfg = _with(name, value)
    with pytest.raises(ValueError, match=rf"^{_dotted(name)}: expected") as info:
        cfg.validate()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("name", "value"),
                         [(k, v) for k, values in GOOD.items() for v in values])
def test_good_values_are_accepted(name, value):
    _with(name, value).validate()


def test_removed_flat_options_are_refused_by_name():
    with pytest.raises(ValueError, match=r"model_preset: expected one of \['paper', "
                       r"'official'\], got 'tiny'"):
        TrainConfig.from_dict({"model_preset": "tiny"})
    with pytest.raises(ValueError, match=r"unknown option 'bogus'"):
        TrainConfig.from_dict({"lr": 1e-3, "bogus": 1})
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['bogus'\] in section 'optim'"):
        TrainConfig.from_dict({"optim": {"bogus": 1}})


def test_presets_validate():
    for name in ("demo", "paper", "official"):
        TrainConfig.from_preset(name, root="/data/x").validate()


def test_every_test_named_in_the_reliability_table_exists():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "reliability.md").read_text()
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", doc))
    defined = set()
    for path in (root / "tests").glob("test_reliability_*.py"):
        defined |= set(re.findall(r"^def (test_[a-z0-9_]+)", path.read_text(), re.M))
    assert len(named) >= 40
    assert named - defined == set(), "docs/reliability.md names tests that do not exist"
    assert defined - named == set(), "tests missing from the table in docs/reliability.md"

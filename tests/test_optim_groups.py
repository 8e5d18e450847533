"""Per-parameter learning rates: every group of the official preset against the authors' rule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xreid.engine import TrainConfig
from xreid.engine.build import build_model
from xreid.engine.optim import build_optimizer


def _authors_factor(name: str) -> float:
    """The authors' rule, restated on xreid's names: bias x2; classifier x10; every parameter
    of the SII/MII branch (their ``TSM`` keys: the blocks, ``bn_TSM_*``, ``classifier_TSM_*``)
    x10; factors compound."""
    f = 2.0 if name.endswith("bias") else 1.0
    if name.startswith("classifier"):
        f *= 10.0
    if name.startswith(("mii.", "cii.", "bn_mii", "classifier_mii")):
        f *= 10.0
    return f


@pytest.mark.parametrize("preset", ["official", "paper"])
def test_every_group_lr(preset):
    cfg = TrainConfig.from_preset(preset, backbone="tiny", root="unused")
    model = build_model(cfg, 7, 3)
    opt = build_optimizer(model, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                          bias_lr_factor=cfg.optim.bias_lr_factor,
                          classifier_lr_factor=cfg.optim.classifier_lr_factor,
                          head_lr_factor=cfg.optim.head_lr_factor)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(lrs) == trainable
    for name, lr in lrs.items():
        assert lr == pytest.approx(cfg.optim.lr * _authors_factor(name), rel=1e-12), name
    # the three cases the review named, spelled out
    assert lrs["classifier_mii.weight"] == pytest.approx(100 * cfg.optim.lr)
    assert lrs["bn_mii.weight"] == pytest.approx(10 * cfg.optim.lr)
    assert lrs["classifier_clip.weight"] == pytest.approx(10 * cfg.optim.lr)
    assert "bn_mii.bias" not in lrs  # BNNeck bias frozen


def test_roles_follow_modules_not_names():
    cfg = TrainConfig.from_preset("official", backbone="tiny", root="unused")
    model = build_model(cfg, 5, 3)
    roles = model.parameter_roles()
    assert roles["classifier_mii.weight"] == {"classifier", "head"}
    assert roles["bn_mii.weight"] == {"head"}
    assert roles["bn_sequence.weight"] == frozenset()
    assert all(not r for n, r in roles.items() if n.startswith("backbone."))


def test_model_without_roles():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    opt = build_optimizer(net, lr=1.0, bias_lr_factor=3.0)
    assert [g["lr"] for g in opt.param_groups] == [1.0, 3.0, 1.0, 3.0]
    with pytest.raises(ValueError, match="parameter_roles"):
        build_optimizer(net, lr=1.0, classifier_lr_factor=10.0)
    assert isinstance(opt, torch.optim.Adam)


def test_no_weight_decay_is_honoured_only_on_request():
    cfg = TrainConfig.from_preset("official", backbone="tiny", root="unused")
    model = build_model(cfg, 5, 3)
    names = model.no_weight_decay()
    assert {"backbone.cls_token", "backbone.pos_embed"} <= names
    params = dict(model.named_parameters())
    assert names <= set(params)  # every declared name is a real parameter
    default = build_optimizer(model, lr=1.0, weight_decay=0.5)
    assert all(g["weight_decay"] == 0.5 for g in default.param_groups)  # the authors' rule
    opt = build_optimizer(model, lr=1.0, weight_decay=0.5, exclude_no_weight_decay=True)
    decay = {g["name"]: g["weight_decay"] for g in opt.param_groups}
    assert {n for n, wd in decay.items() if wd == 0.0} == names & set(decay)
    assert all(wd == 0.5 for n, wd in decay.items() if n not in names)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in default.param_groups]
    with pytest.raises(ValueError, match="no_weight_decay"):
        build_optimizer(nn.Linear(2, 2), lr=1.0, exclude_no_weight_decay=True)


def test_compile_targets_and_projected_features():
    cfg = TrainConfig.from_preset("paper", backbone="tiny", root="unused")
    model = build_model(cfg, 5, 3).eval()
    assert model.compile_targets() == [model.backbone, model.mii]
    video = torch.randn(2, 4, 3, *cfg.data.img_size)
    with torch.no_grad():
        proj = model.projected_features(video)
        clip = model.clip_features(video)
    assert torch.equal(proj, clip[:, -proj.shape[1]:])
    bare = build_model(TrainConfig.from_preset("paper", backbone="tiny", root="unused",
                                               use_sii=False, use_lii=False), 5, 3)
    assert bare.mii is None and bare.compile_targets() == [bare.backbone]

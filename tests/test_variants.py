"""Named ablation variants: registry, the paper's row semantics, one training step each."""

from __future__ import annotations

import math

import pytest
import torch

from xreid import INFRARED, VISIBLE, XReIDLoss
from xreid.engine import TrainConfig, build_model, train_step
from xreid.engine.variants import (
    STUDIES,
    Variant,
    get_variant,
    list_variants,
    register_variant,
    study_variants,
    unregister_variant,
)

ALL = [v.name for v in list_variants()]
# weights=None: a smaller architecture than the demo's pre-trained encoder, from scratch
TINY = dict(img_size=(32, 16), num_frames=3, embed_dim=32, depth=1, num_heads=2,
            patch_size=8, weights=None)
C = 4  # identities


# ----------------------------------------------------------------------------- registry
def test_every_paper_row_and_point_is_registered():
    expected = (
        ["tab3/baseline", "tab3/cpc", "tab3/mii"]
        + ["tab4/vanilla", "tab4/textual-prompts", "tab4/visual-memories",
           "tab4/cross-modal-update",
           "tab4/cross-modal-collaboration", "tab4/cpc"]
        + [f"tab5/{i}" for i in range(1, 9)]
        + [f"fig4/s{s}" for s in range(1, 5)]
        + [f"fig5/s{s}" for s in range(0, 5)]
    )
    assert ALL[: len(expected)] == expected
    assert all(get_variant(n).description for n in expected)
    # the textual-prompts row has its place in Table 4's study, between Vanilla and Visual
    # Memories, and is skipped until someone registers it
    assert STUDIES["tab4"][1] == "tab4/textual-prompts"
    if "tab4/textual-prompts" not in ALL:
        assert [v.name for v in study_variants("tab4")] == [
            n for n in STUDIES["tab4"] if n != "tab4/textual-prompts"]


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"variant: unknown name 'tab5/9'.*tab5/8"):
        get_variant("tab5/9")
    with pytest.raises(ValueError, match=r"variant: unknown name.*fig5/s0"):
        TrainConfig.from_preset("demo", variant="nope")
    with pytest.raises(ValueError, match="study: expected one of"):
        study_variants("tab9")


def test_register_variant_checks_and_later_registration():
    with pytest.raises(ValueError, match="already registered"):
        register_variant(Variant("tab5/1", "again", {}))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['bogus'\] in section 'model'"):
        register_variant(Variant("mine/a", "x", {"model": {"bogus": 1}}))
    with pytest.raises(ValueError, match=r"unknown option 'memory_momentum' \(now "
                       r"model.memory_momentum\)"):
        register_variant(Variant("mine/a", "x", {"memory_momentum": 0.5}))
    with pytest.raises(ValueError, match="<study>/<row>"):
        register_variant(Variant("plain", "x", {}))
    with pytest.raises(TypeError, match="Variant"):
        register_variant({"name": "mine/a"})  # type: ignore[arg-type]
    v = register_variant(Variant("mine/momentum", "CPC with mu = 0.5",
                                 {"model": {"memory_momentum": 0.5}}))
    try:
        assert get_variant("mine/momentum") is v and v in list_variants()
        cfg = TrainConfig.from_preset("demo", variant="mine/momentum")
        assert cfg.model.memory_momentum == 0.5 and cfg.variant == "mine/momentum"
    finally:
        assert unregister_variant("mine/momentum") is v
    assert "mine/momentum" not in [x.name for x in list_variants()]
    with pytest.raises(ValueError, match="unknown name"):
        unregister_variant("mine/momentum")


@pytest.mark.parametrize("preset", ["demo", "paper", "official"])
def test_variant_sits_between_preset_and_explicit_options(preset):
    cfg = TrainConfig.from_preset(preset, variant="tab5/3", root="/data/vcm")
    assert (cfg.model.use_sii, cfg.model.use_lii, cfg.model.use_cii) == (False, True, False)
    assert cfg.model.hard_selection == "cross_modal"  # also over the official preset's "any"
    assert cfg.variant == "tab5/3" and cfg.to_dict()["variant"] == "tab5/3"
    explicit = TrainConfig.from_preset(preset, variant="tab5/3", root="/data/vcm",
                                       use_cii=True)
    assert explicit.model.use_cii is True
    # a saved config reloads as it is (the variant is not applied a second time)
    assert TrainConfig.from_dict(explicit.to_dict()) == explicit


TABLE5 = {1: "", 2: "S", 3: "L", 4: "C", 5: "SC", 6: "LC", 7: "SL", 8: "SLC"}


@pytest.mark.parametrize("row", range(1, 9))
def test_table5_rows(row):
    o = get_variant(f"tab5/{row}").overrides["model"]
    assert (o["use_sii"], o["use_lii"], o["use_cii"]) == tuple(c in TABLE5[row] for c in "SLC")
    assert (o["use_memory"], o["hard_selection"], o["memory_collaboration"]) == (
        True, "cross_modal", True)  # on top of CPC
    assert (o["sii_stride"], o["lii_stride"]) == (1, 2)


def test_table3_and_table4_rows():
    rows = {
        "tab4/vanilla": (False, None, None),
        "tab4/visual-memories": (True, "same_modality", False),
        "tab4/cross-modal-update": (True, "cross_modal", False),
        "tab4/cross-modal-collaboration": (True, "same_modality", True),
        "tab4/cpc": (True, "cross_modal", True),
        "tab3/baseline": (True, "same_modality", False),
        "tab3/cpc": (True, "cross_modal", True),
    }
    for name, (memory, update, collab) in rows.items():
        o = get_variant(name).overrides.get("model", {})
        assert o["use_memory"] is memory, name
        assert o.get("hard_selection") == update and o.get("memory_collaboration") == collab
        assert not (o["use_sii"] or o["use_lii"] or o["use_cii"]), name
    assert get_variant("tab3/mii").overrides == get_variant("tab5/8").overrides
    assert get_variant("tab3/baseline").paper == get_variant("tab4/visual-memories").paper


def test_figure_points():
    for s in range(1, 5):
        o = get_variant(f"fig4/s{s}").overrides["model"]
        assert o["sii_stride"] == s and o["lii_stride"] == 2 and get_variant(f"fig4/s{s}").x == s
        assert o["use_sii"] and o["use_lii"] and o["use_cii"]
    for s in range(0, 5):
        o = get_variant(f"fig5/s{s}").overrides["model"]
        assert o["lii_stride"] == s and o["sii_stride"] == 1 and get_variant(f"fig5/s{s}").x == s


# ------------------------------------------------------------- every variant trains a step
def _batch(p: int = 2):
    g = torch.Generator().manual_seed(0)
    ids = torch.arange(p)
    return {
        "video": torch.randn(2 * p, 3, 3, 32, 16, generator=g),
        "label": torch.cat([ids, ids]),
        "modality": torch.tensor([VISIBLE] * p + [INFRARED] * p),
        "camera": torch.zeros(2 * p, dtype=torch.long),
    }


@pytest.mark.parametrize("name", ALL)
def test_every_variant_builds_and_trains_one_step(name):
    cfg = TrainConfig.from_preset("demo", variant=name, use_cameras=True, **TINY)
    torch.manual_seed(0)
    model = build_model(cfg, C, 2)
    o = get_variant(name).overrides.get("model", {})
    assert (model.memory is not None) == o.get("use_memory", True)
    has_mii = cfg.model.use_sii or cfg.model.use_lii
    assert (model.mii is not None) == has_mii
    assert (model.cii is not None) == cfg.model.use_cii
    if has_mii and cfg.model.use_sii:
        assert model.mii.sii.stride == cfg.model.sii_stride
    if has_mii and cfg.model.use_lii:
        assert model.mii.lii.stride == cfg.model.lii_stride
    if model.memory is not None:
        assert model.memory.hard_selection == cfg.model.hard_selection
        assert model.memory.collaboration == cfg.model.memory_collaboration
        g = torch.Generator().manual_seed(1)
        model.memory.initialize(torch.randn(2 * C, model.memory.dim, generator=g),
                                torch.arange(C).repeat(2),
                                torch.tensor([VISIBLE] * C + [INFRARED] * C))
    before = None if model.memory is None else model.memory.visible.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    logs = train_step(model, _batch(), XReIDLoss.paper(), optimizer)
    assert all(math.isfinite(v) for v in logs.values())
    assert ("cpcl" in logs) == (model.memory is not None)
    assert ("cmcl" in logs) == cfg.model.use_cii
    if before is not None:
        assert not torch.equal(model.memory.visible, before)  # the update ran
    model.eval()
    with torch.no_grad():
        emb = model.embed(_batch()["video"])
    assert emb.shape == (4, model.embedding_dim)

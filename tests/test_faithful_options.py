"""Issue 23's options: CMCL branches and directions, CII depth, the refusal of no-op CII
configurations, PCL's single memory, the modality-naming prompt template, and the registry
entries that go with them. Each equation is checked against a slow loop written here."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from xreid import INFRARED, VISIBLE, CrossModalPrototypeMemory, XReID, build_backbone
from xreid.engine import TrainConfig
from xreid.engine.variants import STUDIES, get_variant, list_variants

C = 3


def _model(**kw) -> XReID:
    torch.manual_seed(0)
    backbone = build_backbone("tiny", img_size=(32, 16), embed_dim=32, depth=1, num_heads=2,
                              patch_size=8)
    return XReID(backbone, C, **kw).train()


def _batch(p: int = 3):
    g = torch.Generator().manual_seed(0)
    ids = torch.arange(p) % C
    video = torch.randn(2 * p, 3, 3, 32, 16, generator=g)
    modality = torch.tensor([VISIBLE] * p + [INFRARED] * p)
    return video, modality, torch.cat([ids, ids])


# --------------------------------------------------------------------- CMCL readings (Eq. 9)
@pytest.mark.parametrize("branches", ["both", "sii", "lii"])
@pytest.mark.parametrize("directions", ["both", "v2i", "i2v"])
def test_cmcl_pairs_follow_branches_and_directions(branches, directions):
    """Every selected (branch, direction) pair is (O-bar, CII(O-bar, other modality's
    patches)), in branch-major, v2i-first order; nothing else is computed."""
    model = _model(cmcl_branches=branches, cmcl_directions=directions)
    video, modality, labels = _batch()
    out = model(video, modality, labels=labels)
    vis, ir = (modality == VISIBLE).nonzero().flatten(), (modality == INFRARED).nonzero().flatten()
    tokens = model.backbone(video).tokens
    patches = tokens[:, :, 1:]
    expected = []
    for name, feat in (("sii", out.mii.short), ("lii", out.mii.long)):
        if branches not in ("both", name):
            continue
        anchor = feat.mean(dim=1)
        for d, q, k in (("v2i", vis, ir), ("i2v", ir, vis)):
            if directions in ("both", d):
                # one CII call per pair (the model batches them all into one call)
                expected.append((anchor[q], model.cii(anchor[q], patches[k])))
    assert len(out.cmcl_pairs) == len(expected)
    for (a, o), (ea, eo) in zip(out.cmcl_pairs, expected):
        torch.testing.assert_close(a, ea)
        torch.testing.assert_close(o, eo, rtol=1e-5, atol=1e-5)


def test_cmcl_default_is_four_pairs_summed():
    """The default reading (both branches, both directions) is unchanged: four pairs, and the
    loss term is the sum of Eq. 9 over them, each the mean over the P pairs of ||a - o||^2."""
    from xreid import XReIDLoss

    model = _model()
    assert (model.config.cmcl_branches, model.config.cmcl_directions) == ("both", "both")
    video, modality, labels = _batch()
    with torch.no_grad():
        out = model(video, modality, labels=labels)
    assert len(out.cmcl_pairs) == 4
    assert list(out.extras) == ["cii_short_v2i", "cii_short_i2v", "cii_long_v2i",
                                "cii_long_i2v"]
    ref = 0.0
    for a, o in out.cmcl_pairs:
        a64, o64 = a.double(), o.double()
        ref += sum(float(((a64[i] - o64[i]) ** 2).sum()) for i in range(a.shape[0])) / a.shape[0]
    term = XReIDLoss.paper()(out, labels).terms["cmcl"]
    assert float(term) == pytest.approx(ref, rel=1e-5)


def test_cmcl_branch_must_be_on_and_values_are_checked():
    with pytest.raises(ValueError, match="cmcl_branches.*use_lii=False"):
        _model(use_lii=False, cmcl_branches="lii")
    with pytest.raises(ValueError, match="cmcl_directions"):
        _model(cmcl_directions="both-ways")
    with pytest.raises(ValueError, match="cmcl_branches"):
        _model(cmcl_branches="short")
    with pytest.raises(ValueError, match="form"):
        _model(use_memory=False, cpcl_form="printed")
    # without MII the sequence feature is the anchor whatever the branch option
    m = _model(use_sii=False, use_lii=False, cmcl_branches="lii", cmcl_directions="i2v")
    video, modality, labels = _batch()
    assert len(m(video, modality, labels=labels).cmcl_pairs) == 1


def test_cii_depth_is_an_option():
    assert len(_model(cii_depth=2).cii.blocks) == 2
    assert len(_model().cii.blocks) == 1
    with pytest.raises(ValueError, match="cii_depth"):
        _model(cii_depth=0)


# ------------------------------------------------------------ no-op variants are refused
def test_cii_without_an_effect_is_refused(tmp_path):
    root = str(tmp_path)
    # Table 5 row 4 on the official preset: detached tokens, no MII -> CMCL reaches only CII
    with pytest.raises(ValueError, match=r"use_cii: with detach_mii true and no MII branch"):
        TrainConfig.from_preset("official", variant="tab5/4", root=root)
    with pytest.raises(ValueError, match="variant tab5/4"):
        TrainConfig.from_preset("demo", variant="tab5/4", detach_mii=True, root=root)
    with pytest.raises(ValueError, match="use_cii"):
        TrainConfig.from_preset("official", use_cii=True, use_sii=False, root=root)
    # the control of docs/modules.md (CII built, CMCL weight 0) stays allowed
    TrainConfig.from_preset("demo", variant="tab5/8", cmcl_weight=0.0, root=root)
    # on official, the CII rows bring CMCL's weight (the loss preset's is 0)
    assert TrainConfig.from_preset("official", root=root).cmcl_weight is None
    # a CII row with MII on the official preset is a real change (CMCL trains the MII heads)
    cfg = TrainConfig.from_preset("official", variant="tab5/8", root=root)
    assert cfg.cmcl_weight == 1.0 and cfg.resolved_model_option("detach_mii") is True
    # rows without CII and the presets themselves are untouched
    for preset in ("demo", "paper", "official"):
        TrainConfig.from_preset(preset, root=root)
        TrainConfig.from_preset(preset, variant="tab5/1", root=root)


# ----------------------------------------------------------- PCL's single memory (its code)
def _pcl_reference(init_f, init_y, steps, momentum, tau):
    """One memory of identity centroids (raw-feature mean, normalised) updated, per identity
    in the batch, with the batch sample least similar to it; loss = mean CE(cos / tau)."""
    c = int(init_y.max()) + 1
    mem = torch.stack([F.normalize(init_f[init_y == k].double().mean(0), dim=0)
                       for k in range(c)])
    losses = []
    for f, y in steps:
        f64 = F.normalize(f.double(), dim=1)
        losses.append(sum(-torch.log_softmax(f64[i] @ mem.t() / tau, 0)[y[i]]
                          for i in range(len(y))) / len(y))
        for k in sorted(set(y.tolist())):
            rows = [i for i in range(len(y)) if y[i] == k]
            sims = [float(f64[i] @ mem[k]) for i in rows]
            hard = rows[sims.index(min(sims))]
            new = momentum * mem[k] + (1 - momentum) * f64[hard]
            mem[k] = new / new.norm()
    return mem, [float(v) for v in losses]


def test_shared_memory_is_pcls_single_memory():
    g = torch.Generator().manual_seed(5)
    d = 6
    init_f = torch.randn(12, d, generator=g)
    init_y = torch.arange(C).repeat(4)
    init_m = torch.tensor([VISIBLE, INFRARED]).repeat_interleave(6)
    mem = CrossModalPrototypeMemory(C, d, momentum=0.2, hard_selection="any",
                                    collaboration=False, shared=True)
    mem.initialize(init_f, init_y, init_m)
    steps, got = [], []
    for _ in range(3):
        f = torch.randn(8, d, generator=g)
        y = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
        m = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
        got.append(0.5 * float(mem(f, y, m)))  # baselines/pcl's cpcl weight 0.5
        mem.update(f, y, m)
        assert torch.equal(mem.visible, mem.infrared)  # one memory
        steps.append((f, y))
    want_mem, want = _pcl_reference(init_f, init_y, steps, 0.2, 0.05)
    torch.testing.assert_close(mem.visible.double(), want_mem, rtol=1e-5, atol=1e-6)
    assert got == pytest.approx(want, rel=1e-5)
    assert "shared=True" in repr(mem)


def test_shared_initialisation_needs_no_both_modalities():
    mem = CrossModalPrototypeMemory(2, 3, shared=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a shared memory has no "missing modality" warning
        mem.initialize(torch.eye(3)[:2], torch.tensor([0, 1]), torch.tensor([0, 0]))
    torch.testing.assert_close(mem.infrared, mem.visible)
    with pytest.raises(ValueError, match="shared"):
        CrossModalPrototypeMemory(2, 3, shared="yes")


def test_pcl_variant_follows_pcls_code(tmp_path):
    cfg = TrainConfig.from_preset("demo", variant="baselines/pcl", root=str(tmp_path))
    assert cfg.memory_shared and cfg.hard_selection == "any"
    assert cfg.memory_init == "every_epoch" and cfg.memory_momentum == 0.2
    assert cfg.triplet_weight == 0.0 and cfg.id_weight == 0.25 and cfg.label_smoothing == 0.1
    assert not (cfg.use_sii or cfg.use_lii or cfg.use_cii)
    # the paper-text reading stays: two per-modality memories
    base = get_variant("tab3/baseline").overrides
    assert base["hard_selection"] == "same_modality" and "memory_shared" not in base


# ------------------------------------------------------------- the paper's prompt template
def test_template_names_the_modality():
    from xreid.prompts import PromptLearner
    from xreid.prompts.learner import tokenize_template
    from xreid.prompts.text_tower import TextTowerConfig, build_text_tower

    tower = build_text_tower(TextTowerConfig.tiny())
    learner = PromptLearner(2, tower.token_embedding,
                            template="A {modality} video of a X X X X person.")
    out = learner(torch.tensor([0, 1]), torch.tensor([1, 1]))
    for m, word in ((0, "visible"), (1, "infrared")):
        tokens, start, n_ctx = tokenize_template(f"A {word} video of a X X X X person.")
        emb = tower.token_embedding(tokens)
        torch.testing.assert_close(out[m, :start], emb[:start])
        torch.testing.assert_close(out[m, start:start + n_ctx], learner.ctx[m, 1])
        torch.testing.assert_close(out[m, start + n_ctx:], emb[start + n_ctx:])
    assert not torch.equal(out[0, :start], out[1, :start])
    with pytest.raises(ValueError, match="template"):
        PromptLearner(2, tower.token_embedding, template="A {modality} video of a person.")


# ------------------------------------------------------------------------- the registry
def test_table3_carries_both_datasets():
    assert get_variant("tab3/baseline").paper_bupt == (61.2, 58.6, 61.7, 57.3)
    assert get_variant("tab3/cpc").paper_bupt == (63.6, 62.6, 64.4, 61.2)
    assert get_variant("tab3/mii").paper_bupt == (68.2, 68.5, 68.8, 65.9)
    assert all(v.paper_bupt is None for v in list_variants() if v.study != "tab3")


def test_new_variants_are_listed_and_build(tmp_path):
    for study in ("baselines", "cpcl", "cmcl", "code"):
        assert STUDIES[study]
        for name in STUDIES[study]:
            assert get_variant(name).description
            TrainConfig.from_preset("paper", variant=name, root=str(tmp_path))
    cfg = TrainConfig.from_preset("paper", variant="code/epoch-300", root=str(tmp_path))
    assert (cfg.epochs, cfg.iters_per_epoch) == (30, 300)
    assert TrainConfig.from_preset("paper", variant="code/detach-mii",
                                   root=str(tmp_path)).resolved_model_option("detach_mii")
    assert TrainConfig.from_preset("paper", variant="code/imagenet-norm",
                                   root=str(tmp_path)).normalization == "imagenet"
    for name in STUDIES["cmcl"]:  # the readings of Eq. 9 keep the rest of the full model
        o = get_variant(name).overrides
        assert o["use_sii"] and o["use_lii"] and o["use_cii"] and o["cmcl_weight"] == 1.0
    assert math.isclose(get_variant("baselines/pcl").overrides["cpcl_weight"], 0.5)


# --------------------------------------------------------- SII stride: edge frames (docs)
@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_edge_frames_keep_their_own_channels(stride):
    """As documented for S >= 2: frames t < S keep fold 1, frames t >= T - S keep fold 2."""
    from xreid import temporal_shift

    t_len, d = 10, 8
    x = torch.arange(t_len, dtype=torch.float32).view(1, t_len, 1, 1).expand(1, t_len, 2, d)
    out = temporal_shift(x, fold_div=4, stride=stride)[0, :, 0]  # (T, D): the source frame
    f = d // 4
    for t in range(t_len):
        assert (out[t, :f] == (t if t < stride else t - stride)).all()
        assert (out[t, f:2 * f] == (t if t >= t_len - stride else t + stride)).all()
        assert (out[t, 2 * f:] == t).all()

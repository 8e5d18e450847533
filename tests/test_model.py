"""XReID model: composition, gradients, inference embedding, presets and input errors."""

from __future__ import annotations

import copy

import pytest
import torch
from tolerance import rounding_tol, vit_roundings

from xreid import INFRARED, VISIBLE, XReID, XReIDLoss, build_backbone
from xreid.models.output import XReIDOutput

C = 5  # identities
T = 3  # frames
IMG = (32, 16)


# roundings on the longest chain of the tiny model at IMG with T frames: backbone (patch 8x8x3,
# D 96, depth 3, 1 + 8 tokens), then MII / CII blocks over D (and the T frames)
_ROUNDINGS = vit_roundings(patch_inputs=8 * 8 * 3, dim=96, depth=3, tokens=9,
                           extra=2 * (10 * 96 + 2 * 9 * T))


def _backbone(num_cameras: int = 3):
    return build_backbone("tiny", img_size=IMG, num_cameras=num_cameras)


def _model(preset: str = "paper", **kw) -> XReID:
    torch.manual_seed(0)
    return XReID.from_preset(_backbone(), C, preset, **kw)


def _batch(p: int = 2, k: int = 2, seed: int = 0):
    """Sampler-ordered batch: P*K visible clips (identity-major), then the same for infrared."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.arange(p).repeat_interleave(k)
    labels = torch.cat([ids, ids])
    modality = torch.tensor([VISIBLE] * (p * k) + [INFRARED] * (p * k))
    video = torch.randn(2 * p * k, T, 3, *IMG, generator=g)
    cameras = torch.randint(0, 3, (2 * p * k,), generator=g)
    return video, labels, modality, cameras


def _init_memory(model: XReID, video, labels, modality):
    model.eval()
    with torch.no_grad():
        feats = model.memory_features(video)
    # make every identity known in both modalities
    all_labels = torch.arange(C).repeat(2)
    all_mod = torch.tensor([VISIBLE] * C + [INFRARED] * C)
    feats = torch.cat([feats, torch.randn(2 * C, feats.shape[1])])
    model.memory.initialize(feats, torch.cat([labels, all_labels]), torch.cat([modality, all_mod]))
    model.train()


@pytest.mark.parametrize("preset", ["paper", "official"])
def test_every_trainable_parameter_gets_a_gradient(preset):
    model = _model(preset)
    video, labels, modality, cameras = _batch()
    _init_memory(model, video, labels, modality)
    loss_fn = XReIDLoss.paper() if preset == "paper" else XReIDLoss.official(num_frames=T)
    out = model(video, modality, cameras, labels)
    assert isinstance(out, XReIDOutput)
    result = loss_fn(out, labels, model.memory)
    result.total.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert [n for n, p in trainable if p.grad is None] == []  # DDP-safe: all in the graph
    # the key LayerNorm's bias shifts every score of a head equally (softmax ignores it), so
    # its exact gradient is zero; every other parameter must actually move
    zero = [n for n, p in trainable if not torch.any(p.grad != 0)]
    assert all(n.endswith("norm_k.bias") for n in zero), zero
    assert torch.isfinite(result.total)


def test_training_output_shapes_and_cii_pairs_match_a_direct_call():
    # float64: the reference recomputes on sub-batches, whose float32 roundings may differ
    model = _model("paper").double()
    video, labels, modality, cameras = _batch(p=2, k=2)
    video = video.double()
    out = model(video, modality, cameras, labels)
    b, d = video.shape[0], model.embed_dim
    assert out.sequence.shape == (b, d)
    assert out.projected.shape == (b, model.proj_dim)
    assert out.memory_feature.shape == (b, d + model.proj_dim)
    assert [f.shape[0] for f in out.triplet_features] == [b, b, b]
    assert all(lg.shape == (b, C) for lg in out.logits)
    assert out.mii is not None and out.mii.short.shape == (b, T, d)
    # 2 branches (SII, LII) x 2 directions
    assert len(out.cmcl_pairs) == 4
    # reference: visible clips' SII sequence feature queries the paired infrared patches
    tokens = model.backbone(video, cameras).tokens
    short_mean = model.mii(tokens).short.mean(1)
    vis = torch.arange(4)
    ir = torch.arange(4, 8)
    ref = model.cii(short_mean[vis], tokens[ir][:, :, 1:])
    tol = rounding_tol(torch.float64, _ROUNDINGS)
    torch.testing.assert_close(out.extras["cii_short_v2i"], ref, **tol)
    torch.testing.assert_close(out.cmcl_pairs[0][0], short_mean[vis], **tol)
    ref_rev = model.cii(short_mean[ir], tokens[vis][:, :, 1:])
    torch.testing.assert_close(out.extras["cii_short_i2v"], ref_rev, **tol)


def test_official_preset_structure():
    model = _model("official")
    assert model.cii is None
    assert model.config.sii_depth == 2 and not model.config.use_lii
    video, labels, modality, cameras = _batch()
    out = model(video, modality, cameras, labels)
    assert out.cmcl_pairs == ()
    assert len(out.frame_logits) == 2
    assert all(f.shape == (video.shape[0] * T, C) for f in out.frame_logits)


def test_detach_mii_blocks_backbone_gradient_from_mii_losses():
    model = _model("paper", detach_mii=True)
    video, labels, modality, cameras = _batch()
    out = model(video, modality, cameras, labels)
    out.mii.feature.sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert any(p.grad is not None for p in model.mii.parameters())
    model.zero_grad()
    model2 = _model("paper", detach_mii=False)
    out2 = model2(video, modality, cameras, labels)
    out2.mii.feature.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model2.backbone.parameters())


def test_embedding_is_deterministic_and_batch_independent():
    model = _model("paper").eval()
    video, _, _, cameras = _batch()
    with torch.no_grad():
        full = model.embed(video, cameras)
        again = model(video, cameras=cameras)
        single = torch.cat([model.embed(video[i:i + 1], cameras[i:i + 1])
                            for i in range(video.shape[0])])
    assert full.shape == (video.shape[0], model.embedding_dim)
    assert model.embedding_dim == 2 * model.embed_dim + model.proj_dim
    torch.testing.assert_close(full, again, rtol=0, atol=0)
    # one clip at a time: other kernel blocking, so other float32 roundings
    torch.testing.assert_close(full, single, **rounding_tol(torch.float32, _ROUNDINGS))


def test_embedding_matches_its_definition():
    model = _model("paper").eval()
    video, _, _, _ = _batch()
    with torch.no_grad():
        emb = model.embed(video)
        ft = model.backbone(video)
        seq = ft.tokens[:, :, 0].mean(1)
        proj = ft.projected.mean(1)
        mii = model.mii(ft.tokens).feature
        ref = torch.cat([model.bn_sequence(seq), model.bn_projected(proj), model.bn_mii(mii)], 1)
    torch.testing.assert_close(emb, ref)


def test_state_dict_round_trip_includes_memory():
    model = _model("paper")
    video, labels, modality, cameras = _batch()
    _init_memory(model, video, labels, modality)
    model(video, modality, cameras, labels)  # BN running stats move
    clone = _model("paper")
    clone.load_state_dict(copy.deepcopy(model.state_dict()))
    assert torch.equal(clone.memory.visible, model.memory.visible)
    model.eval()
    clone.eval()
    with torch.no_grad():
        torch.testing.assert_close(clone.embed(video, cameras), model.embed(video, cameras))


def test_cpu_bf16_autocast_close_to_fp32():
    model = _model("paper")
    video, labels, modality, cameras = _batch()
    _init_memory(model, video, labels, modality)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(video, modality, cameras, labels)
        loss = XReIDLoss.paper()(out, labels, model.memory).total
    loss.backward()
    assert torch.isfinite(loss)
    model.eval()
    with torch.no_grad():
        ref = model.embed(video)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.embed(video)
    assert low.dtype in (torch.bfloat16, torch.float32)
    cos = torch.nn.functional.cosine_similarity(low.float(), ref, dim=1)
    assert bool((cos > 0.98).all()), cos


def test_torch_compile_embed_matches_eager():
    model = _model("paper").eval()
    video, _, _, cameras = _batch(p=1, k=1)
    compiled = torch.compile(model.embed, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(video, cameras), model.embed(video, cameras))


def test_forward_paired_equals_concatenated_forward():
    model = _model("paper")
    twin = copy.deepcopy(model)  # the BNNecks' running statistics move with every forward
    video, labels, modality, cameras = _batch(p=2, k=1)
    torch.manual_seed(1)
    out = model.forward_paired(video[:2], video[2:], labels=labels[:2],
                               visible_cameras=cameras[:2], infrared_cameras=cameras[2:])
    ref = twin(video, modality, cameras, labels)
    torch.testing.assert_close(out.memory_feature, ref.memory_feature)


def test_input_errors_name_the_argument():
    model = _model("paper")
    video, labels, modality, cameras = _batch()
    with pytest.raises(ValueError, match="video"):
        model(video[0], modality, cameras, labels)
    with pytest.raises(ValueError, match="infrared"):
        model.forward_paired(video[:2], video[2:4, :2])
    with pytest.raises(ValueError, match="cameras"):
        model(video, modality, cameras + 10, labels)
    with pytest.raises(ValueError, match="modality"):
        model(video, None, cameras, labels)
    with pytest.raises(ValueError, match="modality"):
        model(video, torch.zeros_like(modality), cameras, labels)
    with pytest.raises(ValueError, match="labels"):
        half = labels.shape[0] // 2  # visible ids [0,0,1,1] vs infrared [1,1,0,0]
        model(video, modality, cameras, torch.cat([labels[:half], labels[:half].flip(0)]))
    with pytest.raises(ValueError, match="labels"):
        model(video, modality, cameras, labels + C)
    with pytest.raises(ValueError, match="preset"):
        XReID.from_preset(_backbone(), C, "nope")
    with pytest.raises(ValueError, match="num_cameras"):
        XReID(_backbone(3), C, num_cameras=5)
    no_cam = XReID(build_backbone("tiny", img_size=IMG), C).eval()
    with pytest.raises(ValueError, match="cameras"):
        no_cam.embed(video, cameras)


# ----------------------------------------------------------------------------- ablations
def _assert_every_parameter_learns(model, out, labels, modality):
    result = XReIDLoss.paper()(out, labels, model.memory, modality)
    result.total.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert [n for n, p in trainable if p.grad is None] == []
    return result


def test_model_without_mii_and_without_memory():
    model = _model("paper", use_sii=False, use_lii=False, use_cii=False, use_memory=False)
    assert model.mii is None and model.memory is None and model.cii is None
    assert not hasattr(model, "bn_mii") and not hasattr(model, "classifier_mii")
    assert model.embedding_dim == model.embed_dim + model.proj_dim
    video, labels, modality, cameras = _batch()
    out = model(video, modality, cameras, labels)
    assert out.mii is None and len(out.triplet_features) == 2 and len(out.logits) == 1
    assert out.cmcl_pairs == ()
    result = _assert_every_parameter_learns(model, out, labels, modality)
    assert set(result.terms) == {"triplet", "id"}  # Table 4 "Vanilla": ID + triplet
    model.eval()
    with torch.no_grad():
        emb = model.embed(video)
        ft = model.backbone(video)
        ref = torch.cat([model.bn_sequence(ft.tokens[:, :, 0].mean(1)),
                         model.bn_projected(ft.projected.mean(1))], 1)
    assert emb.shape == (video.shape[0], model.embedding_dim)
    torch.testing.assert_close(emb, ref)
    # state dict round trip of the reduced model
    clone = _model("paper", use_sii=False, use_lii=False, use_cii=False, use_memory=False)
    clone.load_state_dict(model.state_dict())
    clone.eval()
    with torch.no_grad():
        torch.testing.assert_close(clone.embed(video), emb)
    assert not any(k.startswith(("memory.", "mii.")) for k in model.state_dict())


def test_cii_without_mii_queries_the_sequence_feature():
    # Table 5 row 4: CII on, SII and LII off
    model = _model("paper", use_sii=False, use_lii=False)
    video, labels, modality, cameras = _batch(p=2, k=2)
    out = model(video, modality, cameras, labels)
    tol = rounding_tol(torch.float32, _ROUNDINGS)
    assert model.mii is None and len(out.cmcl_pairs) == 2  # one branch x 2 directions
    tokens = model.backbone(video, cameras).tokens
    sequence = tokens[:, :, 0].mean(1)
    vis, ir = torch.arange(4), torch.arange(4, 8)
    torch.testing.assert_close(out.cmcl_pairs[0][0], sequence[vis], **tol)
    torch.testing.assert_close(out.cmcl_pairs[1][0], sequence[ir], **tol)
    ref = model.cii(sequence[vis], tokens[ir][:, :, 1:])
    torch.testing.assert_close(out.extras["cii_sequence_v2i"], ref, **tol)
    _init_memory(model, video, labels, modality)
    out = model(video, modality, cameras, labels)
    result = _assert_every_parameter_learns(model, out, labels, modality)
    assert {"cpcl", "triplet", "id", "cmcl"} == set(result.terms)


def test_lii_only_model_and_sii_stride():
    model = _model("paper", use_sii=False)
    assert model.mii.sii is None and model.mii.lii is not None
    video, labels, modality, cameras = _batch()
    out = model(video, modality, cameras, labels)
    assert out.mii.short is None and len(out.cmcl_pairs) == 2
    assert set(out.extras) == {"cii_long_v2i", "cii_long_i2v"}
    assert model.embedding_dim == 2 * model.embed_dim + model.proj_dim
    strided = _model("paper", sii_stride=3)
    assert strided.mii.sii.stride == 3 and "sii_stride=3" in repr(strided)
    # frame-level logits (official preset) fall back to LII's per-frame output without SII
    official = _model("official", use_sii=False, use_lii=True)
    out = official(video, modality, cameras, labels)
    assert len(out.frame_logits) == 2
    assert all(f.shape == (video.shape[0] * T, C) for f in out.frame_logits)


def test_memory_options_reach_the_memory():
    model = _model("paper", hard_selection="same_modality", memory_collaboration=False)
    assert model.memory.hard_selection == "same_modality"
    assert model.memory.collaboration is False
    video, labels, modality, cameras = _batch()
    _init_memory(model, video, labels, modality)
    out = model(video, modality, cameras, labels)
    with pytest.raises(ValueError, match="modality"):  # own-modality CPCL needs modality
        XReIDLoss.paper()(out, labels, model.memory)
    result = _assert_every_parameter_learns(model, out, labels, modality)
    assert "cpcl" in result.terms
    with pytest.raises(ValueError, match="hard_selection"):
        _model("paper", hard_selection="nearest")


def test_cii_query_residual_option_reaches_cii():
    from xreid.engine import TrainConfig
    from xreid.engine.build import build_model

    cfg = TrainConfig.from_preset("demo", cii_query_residual=False)
    model = build_model(cfg, 4, 3)
    assert model.cii is not None and model.cii.query_residual is False
    assert build_model(TrainConfig.from_preset("demo"), 4, 3).cii.query_residual is True


def _cmcl_gradients(side: str) -> tuple[dict[str, torch.Tensor], torch.Tensor, XReIDOutput]:
    """Gradients of CMCL alone (Eq. 9 summed over the pairs) for one stop-gradient side.

    In float64: the linearity check below compares sums of gradients accumulated in different
    orders, which float32 only reproduces to ~1e-6 relative, machine-dependently."""
    from xreid.losses import CMCL

    model = _model("paper", cmcl_stop_gradient=side).double()
    video, labels, modality, cameras = _batch()
    out = model(video.double(), modality, cameras, labels)
    loss = sum(CMCL()(a, b) for a, b in out.cmcl_pairs)
    loss.backward()
    grads = {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
             for n, p in model.named_parameters()}
    return grads, loss.detach(), out


def test_cmcl_stop_gradient_sides():
    """"none": CMCL reaches CII and the encoder; "interaction": not CII (O_CMII is a
    constant target), still the encoder through Ō; "anchor": CII and the encoder through
    CII's inputs. The value of Eq. 9 is the same on every side."""
    g_none, l_none, _ = _cmcl_gradients("none")
    g_int, l_int, out_int = _cmcl_gradients("interaction")
    g_anc, l_anc, out_anc = _cmcl_gradients("anchor")
    torch.testing.assert_close(l_int, l_none)
    torch.testing.assert_close(l_anc, l_none)

    def norm(grads, prefix):
        return sum(float(g.norm()) for n, g in grads.items() if n.startswith(prefix))

    assert norm(g_none, "cii.") > 0 and norm(g_none, "backbone.") > 0
    assert norm(g_int, "cii.") == 0 and norm(g_int, "backbone.") > 0
    assert norm(g_anc, "cii.") > 0 and norm(g_anc, "backbone.") > 0
    assert all(not b.requires_grad for _, b in out_int.cmcl_pairs)
    assert all(not a.requires_grad and b.requires_grad for a, b in out_anc.cmcl_pairs)
    # the encoder gradient of "none" is the sum of the two one-sided ones (linearity); in
    # float64 the only difference is summation order, ~1e-16 relative per term
    for name in g_none:
        if name.startswith("backbone."):
            torch.testing.assert_close(g_none[name], g_int[name] + g_anc[name],
                                       atol=1e-12, rtol=1e-9)


def test_cmcl_stop_gradient_option_reaches_the_model_and_is_checked():
    from xreid.engine import TrainConfig
    from xreid.engine.build import build_model

    cfg = TrainConfig.from_preset("demo", cmcl_stop_gradient="anchor")
    assert build_model(cfg, 4, 3).config.cmcl_stop_gradient == "anchor"
    assert build_model(TrainConfig.from_preset("demo"), 4, 3).config.cmcl_stop_gradient == "none"
    with pytest.raises(ValueError, match="cmcl_stop_gradient"):
        _model("paper", cmcl_stop_gradient="both")
    with pytest.raises(ValueError, match="cmcl_stop_gradient"):
        TrainConfig.from_preset("demo", cmcl_stop_gradient="both")

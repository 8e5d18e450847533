"""SII, LII, MII, CII and CMCL: loop references, locality properties that prove Eqs. 5-9,
absorbed vs explicit, gradients, autocast, torch.compile, state dicts and validation."""

from __future__ import annotations

import copy

import pytest
import torch
from tolerance import rounding_tol
from torch import nn

import xreid
from xreid import CII, CMCL, LII, MII, SII, MIIOutput
from xreid.layers.attention import set_attention_impl

B, T, N, D, H = 2, 4, 5, 16, 4
F = D // 4  # fold of Eq. 5


def tokens64(seed: int = 0, b: int = B, t: int = T) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 1 + N, D, generator=g, dtype=torch.float64)


def randomize(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.LayerNorm):
                sub.weight.uniform_(0.5, 1.5)
                sub.bias.normal_(0, 0.3)
    return module


def run_blocks(blocks, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """One frame through stacked blocks, explicit K/V (block correctness: test_attention)."""
    q, k = query[None], keys[None]
    for block in blocks:
        block.attn.impl = "explicit"
        q = block(q, k)
    return q[0]


def shift_ref(patches: torch.Tensor, t: int, stride: int = 1) -> torch.Tensor:
    """Eq. 5 for frame t of one clip (T, N, D), time stride S, replicate padding."""
    n = patches.shape[0]
    prev = t - stride if t - stride >= 0 else t  # a missing neighbour copies the frame
    nxt = t + stride if t + stride < n else t
    return torch.cat([patches[prev, :, :F], patches[nxt, :, F : 2 * F],
                      patches[t, :, 2 * F :]], dim=-1)


def changed_frames(out_a: torch.Tensor, out_b: torch.Tensor) -> list[int]:
    """Frames (dim 1) whose output changed, for clip 0; other clips must be untouched."""
    diff = (out_a - out_b).abs()
    assert diff[1:].max() == 0, "another clip's output changed"
    return [t for t in range(out_a.shape[1]) if diff[0, t].max() > 1e-9]


# ----------------------------------------------------------------------------------------
# SII (Eqs. 5-6)


@pytest.mark.parametrize("depth", [1, 2])
def test_sii_matches_frame_loop_reference(depth):
    sii = randomize(SII(D, H, depth=depth)).double()
    tokens = tokens64()
    out = sii(tokens)
    ref_blocks = copy.deepcopy(sii.blocks)
    for b in range(B):
        for t in range(T):
            ref = run_blocks(ref_blocks, tokens[b, t, 0], shift_ref(tokens[b, :, 1:], t))
            torch.testing.assert_close(out[b, t], ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("stride", [2, 3, 4])
def test_sii_stride_matches_frame_loop_reference(stride):
    sii = randomize(SII(D, H, stride=stride)).double()
    assert sii.stride == stride and f"stride={stride}" in repr(sii)
    tokens = tokens64()
    out = sii(tokens)
    ref_blocks = copy.deepcopy(sii.blocks)
    for b in range(B):
        for t in range(T):
            ref = run_blocks(ref_blocks, tokens[b, t, 0],
                             shift_ref(tokens[b, :, 1:], t, stride))
            torch.testing.assert_close(out[b, t], ref, rtol=0, atol=1e-10)


# Which SII outputs (frames of clip 0) must change when frame j's input is perturbed, T = 4.
# [CLS] j -> output j. Patch channels [0, D/4) of frame j are read by frame j+1 (and by
# frame 0 itself, replicate padding); [D/4, D/2) by frame j-1 (and by the last frame
# itself); [D/2, D) by frame j only.
SII_LOCALITY = {
    # j: (cls, [0, D/4), [D/4, D/2), [D/2, D))
    0: ([0], [0, 1], [], [0]),
    1: ([1], [2], [0], [1]),
    2: ([2], [3], [1], [2]),
    3: ([3], [], [2, 3], [3]),
}


@pytest.mark.parametrize("j", range(T))
def test_sii_locality(j):
    sii = randomize(SII(D, H)).double()
    tokens = tokens64()
    base = sii(tokens)

    def changed(token_slice, channels) -> list[int]:
        x = tokens.clone()
        x[0, j, token_slice, channels] += 1.0
        return changed_frames(sii(x), base)

    cls, first, second, rest = SII_LOCALITY[j]
    assert changed(0, slice(None)) == cls
    assert changed(slice(1, None), slice(0, F)) == first
    assert changed(slice(1, None), slice(F, 2 * F)) == second
    assert changed(slice(1, None), slice(2 * F, D)) == rest


def test_sii_zero_padding_and_single_frame():
    sii = randomize(SII(D, H, padding="zero")).double()
    tokens = tokens64()
    x = tokens.clone()
    x[0, 0, 1:, :F] += 1.0  # frame 0's first fold only reaches frame 1 under zero padding
    assert changed_frames(sii(x), sii(tokens)) == [1]
    one = tokens64(t=1)
    out = SII(D, H).double()(one)
    assert out.shape == (B, 1, D) and torch.isfinite(out).all()


# ----------------------------------------------------------------------------------------
# LII (Eq. 7)


@pytest.mark.parametrize("stride", [0, 1, 2, -1, 6])
def test_lii_matches_loop_reference(stride):
    lii = randomize(LII(D, H, stride=stride)).double()
    tokens = tokens64()
    out = lii(tokens)
    ref_blocks = copy.deepcopy(lii.blocks)
    for b in range(B):
        for u in range(T):
            ref = run_blocks(ref_blocks, tokens[b, u, 0], tokens[b, (u + stride) % T, 1:])
            torch.testing.assert_close(out[b, u], ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("stride", [0, 2, 3])
def test_lii_locality(stride):
    lii = randomize(LII(D, H, stride=stride)).double()
    tokens = tokens64()
    base = lii(tokens)
    for j in range(T):
        x = tokens.clone()
        x[0, j, 1:] += 1.0  # patches of frame j: only output (j - S) mod T
        assert changed_frames(lii(x), base) == [(j - stride) % T]
        x = tokens.clone()
        x[0, j, 0] += 1.0  # [CLS] of frame j: only output j
        assert changed_frames(lii(x), base) == [j]


# ----------------------------------------------------------------------------------------
# MII (Eq. 8)


def test_mii_feature_is_mean_of_short_plus_long():
    mii = randomize(MII(D, H, lii_stride=1, sii_depth=2)).double()
    tokens = tokens64()
    out = mii(tokens)
    assert isinstance(out, MIIOutput)
    assert out.feature.shape == (B, D) and out.short.shape == out.long.shape == (B, T, D)
    torch.testing.assert_close(out.feature, (out.short + out.long).mean(dim=1), rtol=0,
                               atol=1e-12)
    torch.testing.assert_close(out.short, mii.sii(tokens), rtol=0, atol=0)
    torch.testing.assert_close(out.long, mii.lii(tokens), rtol=0, atol=0)
    assert mii.lii.stride == 1 and len(mii.sii.blocks) == 2


def test_mii_without_lii():
    mii = MII(D, H, use_lii=False).double()
    out = mii(tokens64())
    assert out.long is None and mii.lii is None and not mii.use_lii
    torch.testing.assert_close(out.feature, out.short.mean(dim=1), rtol=0, atol=0)


def test_mii_without_sii_and_sii_stride():
    mii = randomize(MII(D, H, use_sii=False, lii_stride=3)).double()
    tokens = tokens64()
    out = mii(tokens)
    assert out.short is None and mii.sii is None and not mii.use_sii and mii.use_lii
    torch.testing.assert_close(out.long, mii.lii(tokens), rtol=0, atol=0)
    torch.testing.assert_close(out.feature, out.long.mean(dim=1), rtol=0, atol=0)
    # the SII stride reaches the SII block
    strided = MII(D, H, sii_stride=3)
    assert strided.sii.stride == 3 and MII(D, H).sii.stride == 1
    # the LII-only MII has no SII parameters, and every parameter it has is in the graph
    lii_only = MII(D, H, use_sii=False)
    assert not any(n.startswith("sii.") for n, _ in lii_only.named_parameters())
    lii_only(tokens64().float()).feature.square().sum().backward()
    assert all(p.grad is not None for p in lii_only.parameters())


def test_mii_needs_at_least_one_branch():
    with pytest.raises(ValueError, match="use_sii/use_lii: expected at least one"):
        MII(D, H, use_sii=False, use_lii=False)


# ----------------------------------------------------------------------------------------
# CII (Fig. 3d)


def cii_reference(cii: CII, query: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """Per clip and frame: full self-attention blocks over [query; patches_t], token 0."""
    outs = []
    for b in range(query.shape[0]):
        frames = []
        for t in range(patches.shape[1]):
            x = torch.cat([query[b, None], patches[b, t]], dim=0)[None]
            for block in cii.blocks:
                x = block.forward_tokens(x)
            frames.append(x[0, 0])
        outs.append(torch.stack(frames).mean(0))
    return torch.stack(outs)


@pytest.mark.parametrize("depth", [1, 2])
def test_cii_matches_self_attention_reference(depth):
    cii = randomize(CII(D, H, depth=depth)).double()
    query = torch.randn(B, D, dtype=torch.float64)
    patches = torch.randn(B, T, N, D, dtype=torch.float64)
    torch.testing.assert_close(cii(query, patches), cii_reference(cii, query, patches),
                               rtol=0, atol=1e-10)


@pytest.mark.parametrize("depth", [1, 2])
def test_cii_invariances_and_batch_independence(depth):
    cii = randomize(CII(D, H, depth=depth)).double()
    query = torch.randn(B, D, dtype=torch.float64)
    patches = torch.randn(B, T, N, D, dtype=torch.float64)
    out = cii(query, patches)
    frames = torch.randperm(T)
    torch.testing.assert_close(cii(query, patches[:, frames]), out, rtol=0, atol=1e-12)
    shuffled = torch.stack([torch.stack([patches[b, t, torch.randperm(N)] for t in range(T)])
                            for b in range(B)])
    torch.testing.assert_close(cii(query, shuffled), out, rtol=0, atol=1e-12)
    # row b depends only on row b: alone, or next to different clips, it is the same
    torch.testing.assert_close(cii(query[:1], patches[:1]), out[:1], rtol=0, atol=1e-12)
    other = patches.clone()
    other[1] = torch.randn(T, N, D, dtype=torch.float64)
    torch.testing.assert_close(cii(query, other)[0], out[0], rtol=0, atol=1e-12)
    assert not torch.allclose(cii(query, other)[1], out[1])


# ----------------------------------------------------------------------------------------
# CMCL (Eq. 9)


def test_cmcl_equals_formula():
    a = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    ref = sum(float(((a[i] - b[i]) ** 2).sum().detach()) for i in range(6)) / 6
    loss = CMCL()(a, b)
    assert loss.dim() == 0 and abs(float(loss.detach()) - ref) < 1e-12
    ga, gb = torch.autograd.grad(loss, (a, b))
    torch.testing.assert_close(ga, 2 * (a - b) / 6)
    torch.testing.assert_close(gb, -2 * (a - b) / 6)
    assert abs(float(CMCL("sum")(a, b).detach()) - 6 * ref) < 1e-10
    assert CMCL("none")(a, b).shape == (6,)
    assert float(CMCL()(a, a).detach()) == 0.0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert CMCL()(a.float().bfloat16(), b.float().bfloat16()).dtype == torch.float32


def test_cmcl_validation():
    with pytest.raises(ValueError, match=r"b: expected the shape of a \(3, 4\)"):
        CMCL()(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="a: expected a 2-D"):
        CMCL()(torch.randn(3), torch.randn(3))
    with pytest.raises(ValueError, match="reduction"):
        CMCL("max")


# ----------------------------------------------------------------------------------------
# all modules: absorbed vs explicit, gradients, autocast, compile, state dicts, validation


def make_all():
    return {
        "SII": (SII(D, H, depth=2), lambda m, x, q, p: m(x)),
        "LII": (LII(D, H, stride=2), lambda m, x, q, p: m(x)),
        "MII": (MII(D, H), lambda m, x, q, p: m(x).feature),
        "CII": (CII(D, H, depth=2), lambda m, x, q, p: m(q, p)),
    }


def inputs(dtype=torch.float32, requires_grad=False):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, 1 + N, D, generator=g, dtype=dtype)
    q = torch.randn(B, D, generator=g, dtype=dtype)
    p = torch.randn(B, T, N, D, generator=g, dtype=dtype)
    return [t.requires_grad_(requires_grad) for t in (x, q, p)]


# roundings on the longest chain: per block LayerNorm over D, scores over D, softmax and values
# over 1 + N tokens, projection over D, FFN over D and 4D (CII: depth 2); gradients add up
# B x T x (1 + N) rows
_ROUNDINGS = 2 * (2 * D + 2 * (1 + N) + 6 * D) + B * T * (1 + N)


@pytest.mark.parametrize(("dtype", "tol"), [
    (torch.float64, rounding_tol(torch.float64, _ROUNDINGS)["atol"]),
    (torch.float32, rounding_tol(torch.float32, _ROUNDINGS)["atol"]),
])
def test_modules_absorbed_equals_explicit(dtype, tol):
    for name, (module, call) in make_all().items():
        module = randomize(module).to(dtype)
        explicit = set_attention_impl(copy.deepcopy(module), "explicit")
        results = []
        for m in (module, explicit):
            x, q, p = inputs(dtype, requires_grad=True)
            out = call(m, x, q, p)
            grads = torch.autograd.grad(out, [x, q, p, *m.parameters()], torch.ones_like(out),
                                        allow_unused=True)
            results.append((out, grads))
        torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=tol, msg=name)
        for ga, ge in zip(results[0][1], results[1][1], strict=True):
            assert (ga is None) == (ge is None)
            if ga is not None:
                torch.testing.assert_close(ga, ge, rtol=tol, atol=tol, msg=name)


def test_every_parameter_gets_a_gradient_and_inputs_unchanged():
    for name, (module, call) in make_all().items():
        x, q, p = inputs(requires_grad=True)
        before = [t.detach().clone() for t in (x, q, p)]
        versions = [t._version for t in (x, q, p)]
        call(module, x, q, p).square().sum().backward()
        for pname, param in module.named_parameters():
            assert param.grad is not None, (name, pname)
            if not pname.endswith("norm_k.bias"):  # exactly zero: see test_attention.py
                assert param.grad.abs().max() > 1e-6, (name, pname)
        assert [t._version for t in (x, q, p)] == versions
        assert all(torch.equal(t.detach(), b) for t, b in zip((x, q, p), before, strict=True))


def test_bf16_autocast_close_to_fp32():
    for name, (module, call) in make_all().items():
        x, q, p = inputs()
        ref = call(module, x, q, p)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = call(module, x, q, p)
        assert torch.isfinite(out).all(), name
        err = (out.float() - ref).norm() / ref.norm()
        assert err < 3e-2, (name, float(err))


def test_torch_compile_eager_fullgraph():
    # MII covers SII and LII (and their custom autograd Functions); forward and backward
    x, q, p = inputs()
    mii = MII(D, H)
    compiled = torch.compile(mii, backend="eager", fullgraph=True)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, ref = compiled(x1), mii(x2)
    torch.testing.assert_close(out.feature, ref.feature)
    out.feature.sum().backward()
    ref.feature.sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    cii = CII(D, H)
    compiled_cii = torch.compile(cii, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled_cii(q, p), cii(q, p))


@pytest.mark.slow
def test_torch_compile_inductor():
    x, _, _ = inputs(requires_grad=True)
    mii = MII(D, H)
    compiled = torch.compile(mii)
    out = compiled(x).feature
    torch.testing.assert_close(out, mii(x).feature, **rounding_tol(torch.float32, _ROUNDINGS))
    out.sum().backward()
    assert x.grad is not None


def test_state_dict_round_trip():
    x, q, p = inputs()
    for name, (module, call) in make_all().items():
        module = randomize(module).eval()
        fresh, _ = make_all()[name]
        fresh.load_state_dict(module.state_dict())
        assert torch.equal(call(fresh.eval(), x, q, p), call(module, x, q, p)), name


def test_aliases_and_top_level_names():
    assert xreid.SII is xreid.ShortTermInteraction
    assert xreid.LII is xreid.LongTermInteraction
    assert xreid.MII is xreid.MultiGranularityInteraction
    assert xreid.CII is xreid.CrossModalInteraction
    assert xreid.CMCL is xreid.CrossModalConstraintLoss


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: SII(D, H)(torch.randn(B, 1 + N, D)), r"tokens: expected a 4-D tensor"),
        (lambda: SII(D, H)(torch.randn(B, T, 1 + N, 8)), r"tokens: .*got shape \(2, 4, 6, 8\)"),
        (lambda: LII(D, H)(torch.randn(B, T, 1, D)), r"tokens: .*N >= 1"),
        (lambda: MII(D, H)(torch.randn(B, T, 1 + N, 8)), "tokens"),
        (lambda: CII(D, H)(torch.randn(B, 8), torch.randn(B, T, N, D)), r"query: .*\(B, D\)"),
        (lambda: CII(D, H)(torch.randn(B, D), torch.randn(3, T, N, D)), r"patches: .*\(3, 4"),
        (lambda: CII(D, H)(torch.randn(B, D), torch.randn(B, T, D)), "patches: expected a 4-D"),
        (lambda: SII(D, H, fold_div=1), "fold_div"),
        (lambda: SII(D, H, depth=0), "depth"),
        (lambda: LII(D, H, stride=1.5), "stride"),
        (lambda: SII(D, H, stride=0), "stride: expected an int >= 1"),
        (lambda: MII(D, H, sii_stride=2.0), "stride"),
        (lambda: MII(D, 5), "num_heads"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# CII without the query's residual connection (the CMCL shortcut, issue "CMCL can be satisfied
# by CII alone")
@pytest.mark.parametrize("depth", [1, 2])
def test_cii_without_query_residual_matches_reference(depth):
    cii = randomize(CII(D, H, depth=depth, query_residual=False)).double()
    query = torch.randn(B, D, dtype=torch.float64)
    patches = torch.randn(B, T, N, D, dtype=torch.float64)
    outs = []
    for b in range(B):
        frames = []
        for t in range(T):
            x = torch.cat([query[b, None], patches[b, t]], dim=0)[None]
            for block in cii.blocks[:-1]:
                x = block.forward_tokens(x)
            frames.append(cii.blocks[-1].forward_tokens(x)[0, 0] - x[0, 0])
        outs.append(torch.stack(frames).mean(0))
    torch.testing.assert_close(cii(query, patches), torch.stack(outs), rtol=0, atol=1e-10)


def test_cii_query_residual_shortcut():
    """With the residual, zeroing CII's output projections makes Eq. 9 exactly 0 for any
    input; without it the constraint still depends on the features."""
    query = torch.randn(B, D)
    patches = torch.randn(B, T, N, D)
    for residual, expect_zero in ((True, True), (False, False)):
        cii = CII(D, H, query_residual=residual)
        with torch.no_grad():
            for block in cii.blocks:
                block.attn.proj.weight.zero_()
                block.attn.proj.bias.zero_()
                block.mlp.fc2.weight.zero_()
                block.mlp.fc2.bias.zero_()
        loss = ((query - cii(query, patches)) ** 2).sum(1).mean()
        assert (float(loss.detach()) < 1e-10) == expect_zero, (residual, float(loss.detach()))
    with pytest.raises(ValueError, match="query_residual"):
        CII(D, H, query_residual="no")

"""temporal_shift (Eq. 5) and split_frame_tokens against a slow loop reference."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xreid import temporal_shift
from xreid.layers.temporal_shift import split_frame_tokens


def loop_shift(
    x: torch.Tensor, fold_div: int = 4, padding: str = "replicate", stride: int = 1
) -> torch.Tensor:
    """Eq. 5 (time stride S = ``stride``) written element by element: obviously correct, slow."""
    b_, t_, n_, d_ = x.shape
    f = d_ // fold_div
    out = x * 0  # zeros that stay in the autograd graph even if nothing is copied
    for b in range(b_):
        for t in range(t_):
            for n in range(n_):
                for c in range(d_):
                    if c < f:
                        src = t - stride
                    elif c < 2 * f:
                        src = t + stride
                    else:
                        src = t
                    if 0 <= src < t_:
                        out[b, t, n, c] = x[b, src, n, c]
                    elif padding == "replicate":
                        out[b, t, n, c] = x[b, t, n, c]
                    # "zero": a missing neighbour stays 0
    return out


@settings(max_examples=30)
@given(
    b=st.integers(1, 2),
    t=st.integers(1, 7),
    n=st.integers(1, 3),
    d=st.integers(1, 13),
    fold_div=st.integers(2, 6),
    padding=st.sampled_from(["replicate", "zero"]),
    stride=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_matches_loop_reference(b, t, n, d, fold_div, padding, stride, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, n, d, generator=g)
    if d < fold_div:  # no channel would move: refused instead of a silent no-op
        with pytest.raises(ValueError, match=rf"expected D >= fold_div={fold_div}"):
            temporal_shift(x, fold_div, padding, stride=stride)
        return
    out = temporal_shift(x, fold_div, padding, stride=stride)
    assert torch.equal(out, loop_shift(x, fold_div, padding, stride))
    # the backward is the exact adjoint: <shift(x), g> == <x, shift^T(g)>
    x64 = x.double().requires_grad_()
    grad_out = torch.randn(b, t, n, d, generator=g, dtype=torch.float64)
    (gx,) = torch.autograd.grad(temporal_shift(x64, fold_div, padding, stride), x64, grad_out)
    (gx_ref,) = torch.autograd.grad(loop_shift(x64, fold_div, padding, stride), x64, grad_out)
    assert torch.equal(gx, gx_ref)


def test_paper_equation_5_channels():
    # D = 8, f = 2: channels [0, 2) from t-1, [2, 4) from t+1, [4, 8) own
    x = torch.arange(4, dtype=torch.float32).view(1, 4, 1, 1).expand(1, 4, 1, 8)
    out = temporal_shift(x)[0, :, 0]
    assert out[:, 0].tolist() == [0, 0, 1, 2]  # previous frame, first copies itself
    assert out[:, 2].tolist() == [1, 2, 3, 3]  # next frame, last copies itself
    assert out[:, 4].tolist() == [0, 1, 2, 3]  # own frame


def test_not_the_official_in_place_bug():
    # the official in-place copy sends frame 0's first fold to every frame (docs/differences.md)
    x = torch.randn(2, 6, 3, 8)
    out = temporal_shift(x)
    for t in range(1, 6):
        assert torch.equal(out[:, t, :, :2], x[:, t - 1, :, :2])


def test_zero_padding():
    x = torch.randn(2, 3, 4, 8) + 5.0
    out = temporal_shift(x, padding="zero")
    assert torch.equal(out[:, 0, :, :2], torch.zeros(2, 4, 2))
    assert torch.equal(out[:, -1, :, 2:4], torch.zeros(2, 4, 2))
    assert torch.equal(out[:, 1:, :, :2], x[:, :-1, :, :2])
    assert torch.equal(out[:, :-1, :, 2:4], x[:, 1:, :, 2:4])
    assert torch.equal(out[..., 4:], x[..., 4:])


def test_single_frame():
    x = torch.randn(2, 1, 3, 8)
    assert torch.equal(temporal_shift(x), x)
    zero = temporal_shift(x, padding="zero")  # both neighbours missing
    assert torch.equal(zero[..., :4], torch.zeros(2, 1, 3, 4))
    assert torch.equal(zero[..., 4:], x[..., 4:])


def test_never_mutates_input_and_returns_new_tensor():
    x = torch.randn(2, 4, 3, 8, requires_grad=True)
    before, version = x.detach().clone(), x._version
    out = temporal_shift(x)
    out.backward(torch.randn_like(out))
    assert x._version == version
    assert torch.equal(x.detach(), before)
    assert out.data_ptr() != x.data_ptr() and out.is_contiguous()


def test_non_contiguous_input():
    base = torch.randn(2, 3, 8, 5)  # (B, T, D, N) -> view as (B, T, N, D)
    x = base.transpose(2, 3)
    assert not x.is_contiguous()
    assert torch.equal(temporal_shift(x), loop_shift(x.contiguous()))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int64])
def test_dtypes_bit_exact(dtype):
    x = (torch.randn(2, 3, 2, 8) * 10).to(dtype)
    out = temporal_shift(x)
    assert out.dtype == dtype
    assert torch.equal(out, loop_shift(x))


@pytest.mark.parametrize("padding", ["replicate", "zero"])
@pytest.mark.parametrize("t", [1, 2, 4])
def test_gradcheck(padding, t):
    x = torch.randn(1, t, 2, 8, dtype=torch.float64, requires_grad=True)
    fn = lambda v: temporal_shift(v, 4, padding)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("padding", ["replicate", "zero"])
@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_gradcheck_strides(padding, stride):
    # T = 5 covers 2S < T, S < T < 2S and (stride 4 on the 3-frame clip) T <= S
    for t in (5, 3):
        x = torch.randn(1, t, 1, 8, dtype=torch.float64, requires_grad=True)
        fn = lambda v: temporal_shift(v, 4, padding, stride=stride)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


def test_stride_two_channels():
    # D = 8, f = 2, S = 2, T = 5: frame t reads t-2 / t+2, the edges copy themselves
    x = torch.arange(5, dtype=torch.float32).view(1, 5, 1, 1).expand(1, 5, 1, 8)
    out = temporal_shift(x, stride=2)[0, :, 0]
    assert out[:, 0].tolist() == [0, 1, 0, 1, 2]
    assert out[:, 2].tolist() == [2, 3, 4, 3, 4]
    assert out[:, 4].tolist() == [0, 1, 2, 3, 4]
    zero = temporal_shift(x, padding="zero", stride=2)[0, :, 0]
    assert zero[:, 0].tolist() == [0, 0, 0, 1, 2]
    assert zero[:, 2].tolist() == [2, 3, 4, 0, 0]


@pytest.mark.parametrize("t", [1, 2, 3])
def test_clip_not_longer_than_stride(t):
    x = torch.randn(2, t, 3, 8)
    assert torch.equal(temporal_shift(x, stride=3), x)  # every neighbour missing: identity
    zero = temporal_shift(x, padding="zero", stride=3)
    assert torch.equal(zero[..., :4], torch.zeros(2, t, 3, 4))
    assert torch.equal(zero[..., 4:], x[..., 4:])


def test_stride_one_is_the_default():
    x = torch.randn(2, 4, 3, 8)
    assert torch.equal(temporal_shift(x, stride=1), temporal_shift(x))


def test_boundary_gradient_accumulation():
    x = torch.zeros(1, 3, 1, 4, requires_grad=True)  # f = 1
    temporal_shift(x).backward(torch.ones(1, 3, 1, 4))
    g = x.grad[0, :, 0]
    assert g[:, 0].tolist() == [2, 1, 0]  # frame 0 feeds out[0] and out[1]; last feeds none
    assert g[:, 1].tolist() == [0, 1, 2]
    assert g[:, 2:].eq(1).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"x": torch.zeros(2, 3, 4)}, "x: expected a 4-D tensor"),
        ({"x": torch.zeros(1, 2, 3, 4), "fold_div": 1}, "fold_div"),
        ({"x": torch.zeros(1, 2, 3, 4), "fold_div": 2.0}, "fold_div"),
        ({"x": torch.zeros(1, 2, 3, 4), "padding": "circular"}, "padding"),
        ({"x": torch.zeros(1, 2, 3, 4), "stride": 0}, "stride: expected an int >= 1, got 0"),
        ({"x": torch.zeros(1, 2, 3, 4), "stride": -1}, "stride"),
        ({"x": torch.zeros(1, 2, 3, 4), "stride": 1.5}, "stride"),
        ({"x": torch.zeros(1, 2, 3, 4), "stride": True}, "stride"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        temporal_shift(**kwargs)


def test_torch_compile_eager_fullgraph():
    fn = torch.compile(lambda v: temporal_shift(v).square().sum(), backend="eager",
                       fullgraph=True)
    x = torch.randn(2, 3, 4, 8, requires_grad=True)
    (g,) = torch.autograd.grad(fn(x), x)
    (g_ref,) = torch.autograd.grad(temporal_shift(x).square().sum(), x)
    assert torch.equal(g, g_ref)


@pytest.mark.slow
def test_torch_compile_inductor():
    fn = torch.compile(lambda v: temporal_shift(v).sin().sum(), fullgraph=True)
    x = torch.randn(2, 3, 4, 8, requires_grad=True)
    (g,) = torch.autograd.grad(fn(x), x)
    (g_ref,) = torch.autograd.grad(temporal_shift(x).sin().sum(), x)
    torch.testing.assert_close(g, g_ref)


def test_autocast_keeps_dtype():
    x = torch.randn(2, 3, 4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = temporal_shift(x)
    assert out.dtype == torch.float32 and torch.equal(out, loop_shift(x))


# ----------------------------------------------------------------------------------------
# split_frame_tokens: ([CLS], shifted patches) with a fused backward


@pytest.mark.parametrize(("fold_div", "stride"), [(None, 1), (4, 1), (3, 1), (4, 2), (4, 3)])
@pytest.mark.parametrize("padding", ["replicate", "zero"])
def test_split_frame_tokens_matches_slicing(fold_div, stride, padding):
    tokens = torch.randn(1, 4, 3, 8, dtype=torch.float64, requires_grad=True)
    cls, patches = split_frame_tokens(tokens, fold_div, padding, stride)
    assert torch.equal(cls, tokens[:, :, 0])
    ref = tokens[:, :, 1:] if fold_div is None else loop_shift(tokens[:, :, 1:], fold_div,
                                                               padding, stride)
    assert torch.equal(patches, ref)
    g_cls, g_patches = torch.randn_like(cls), torch.randn_like(patches)
    (grad,) = torch.autograd.grad((cls, patches), tokens, (g_cls, g_patches))
    (grad_ref,) = torch.autograd.grad((tokens[:, :, 0], ref), tokens, (g_cls, g_patches))
    assert torch.equal(grad, grad_ref)
    fn = lambda v: split_frame_tokens(v, fold_div, padding, stride)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (tokens,))
    assert torch.autograd.gradgradcheck(fn, (tokens,))


def test_split_frame_tokens_validation_and_no_mutation():
    with pytest.raises(ValueError, match="tokens"):
        split_frame_tokens(torch.zeros(2, 3, 1, 8))
    with pytest.raises(ValueError, match="tokens: expected a 4-D"):
        split_frame_tokens(torch.zeros(3, 1, 8))
    tokens = torch.randn(2, 3, 5, 8, requires_grad=True)
    version = tokens._version
    cls, patches = split_frame_tokens(tokens, 4)
    (cls.sum() + patches.sum()).backward()
    assert tokens._version == version
    assert cls.data_ptr() != tokens.data_ptr()

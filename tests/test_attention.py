"""SingleQueryAttention / SingleQueryBlock against a slow manual reference."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from tolerance import rounding_tol
from torch import nn

from xreid import SingleQueryAttention, SingleQueryBlock
from xreid.layers.attention import DropPath, set_attention_impl

D, H = 16, 4


def layer_norm(x: torch.Tensor, ln: nn.LayerNorm) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def ref_attention(attn: SingleQueryAttention, q_in, k_in, v_in) -> torch.Tensor:
    """Loop over rows and heads; K and V computed for every token."""
    m_, d = q_in.shape
    dh = d // attn.num_heads
    rows = []
    for m in range(m_):
        q = q_in[m] @ attn.q.weight.T
        k = k_in[m] @ attn.k.weight.T
        v = v_in[m] @ attn.v.weight.T
        heads = []
        for h in range(attn.num_heads):
            sl = slice(h * dh, (h + 1) * dh)
            a = torch.softmax(k[:, sl] @ q[sl] / math.sqrt(dh), dim=0)
            heads.append(a @ v[:, sl])
        rows.append(torch.cat(heads))
    return torch.stack(rows) @ attn.proj.weight.T + attn.proj.bias


def ref_block(block: SingleQueryBlock, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Pre-norm block, per the documented key_norm table, with explicit concatenation."""
    if block.self_attend:
        keys = torch.cat([query[:, None], keys], dim=1)
    q_in = layer_norm(query, block.norm1)
    if block.key_norm == "separate":
        k_in, v_in = layer_norm(keys, block.norm_k), keys
    elif block.key_norm == "shared":
        k_in = v_in = layer_norm(keys, block.norm1)
    else:
        k_in = v_in = keys
    x = query + ref_attention(block.attn, q_in, k_in, v_in)
    h = layer_norm(x, block.norm2) @ block.mlp.fc1.weight.T + block.mlp.fc1.bias
    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))  # exact GELU
    return x + h @ block.mlp.fc2.weight.T + block.mlp.fc2.bias


def randomize(module: nn.Module) -> nn.Module:
    """Non-trivial LayerNorm affine parameters so norm placement is actually tested."""
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.LayerNorm):
                sub.weight.uniform_(0.5, 1.5)
                sub.bias.normal_(0, 0.3)
    return module


MODES = [
    ("separate", False),
    ("shared", False),
    ("none", False),
    ("shared", True),
    ("separate", True),
]


@pytest.mark.parametrize(("key_norm", "self_attend"), MODES)
@pytest.mark.parametrize("impl", ["absorbed", "explicit"])
def test_block_matches_manual_reference(key_norm, self_attend, impl):
    block = randomize(SingleQueryBlock(D, H, key_norm=key_norm, self_attend=self_attend,
                                       impl=impl)).double()
    query = torch.randn(3, D, dtype=torch.float64)
    keys = torch.randn(3, 5, D, dtype=torch.float64)
    torch.testing.assert_close(block(query, keys), ref_block(block, query, keys),
                               rtol=0, atol=1e-10)


def _outputs_and_grads(module, query, keys):
    query = query.clone().requires_grad_()
    keys = keys.clone().requires_grad_()
    out = module(query, keys)
    params = list(module.parameters())
    grads = torch.autograd.grad(out, [query, keys, *params], torch.ones_like(out))
    return out, grads


# roundings on the longest chain of one block: LayerNorm over D, scores over D, softmax and
# values over 8 keys, projection over D, FFN over D and 4D; gradients add up 4 x 8 rows
_BLOCK_ROUNDINGS = 2 * D + 8 + 8 + D + D + 4 * D + 4 * 8


@pytest.mark.parametrize(("dtype", "tol"), [
    (torch.float64, rounding_tol(torch.float64, _BLOCK_ROUNDINGS)["atol"]),
    (torch.float32, rounding_tol(torch.float32, _BLOCK_ROUNDINGS)["atol"]),
])
@pytest.mark.parametrize(("key_norm", "self_attend"), MODES)
def test_absorbed_equals_explicit(key_norm, self_attend, dtype, tol):
    absorbed = randomize(SingleQueryBlock(D, H, key_norm=key_norm,
                                          self_attend=self_attend)).to(dtype)
    explicit = set_attention_impl(copy.deepcopy(absorbed), "explicit")
    query = torch.randn(4, D, dtype=dtype)
    keys = torch.randn(4, 7, D, dtype=dtype)
    out_a, grads_a = _outputs_and_grads(absorbed, query, keys)
    out_e, grads_e = _outputs_and_grads(explicit, query, keys)
    torch.testing.assert_close(out_a, out_e, rtol=0, atol=tol)
    for ga, ge in zip(grads_a, grads_e, strict=True):
        torch.testing.assert_close(ga, ge, rtol=tol, atol=tol)


def test_attention_extra_token_equals_concatenation():
    attn = SingleQueryAttention(D, H).double()
    q = torch.randn(3, D, dtype=torch.float64)
    k, v = torch.randn(2, 3, 5, D, dtype=torch.float64).unbind(0)
    ek, ev = torch.randn(2, 3, D, dtype=torch.float64).unbind(0)
    ref = ref_attention(attn, q, torch.cat([ek[:, None], k], 1), torch.cat([ev[:, None], v], 1))
    for impl in ("absorbed", "explicit"):
        attn.impl = impl
        out = attn(q, k, v, extra_key=ek, extra_value=ev)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(attn(q, k, v), ref_attention(attn, q, k, v), rtol=0, atol=1e-10)


@pytest.mark.parametrize("key_norm", ["shared", "separate"])
def test_forward_tokens_is_full_self_attention(key_norm):
    block = randomize(SingleQueryBlock(D, H, key_norm=key_norm, self_attend=True)).double()
    tokens = torch.randn(2, 6, D, dtype=torch.float64)
    full = block.forward_tokens(tokens)
    # every row l is its own single query over all L tokens (itself included)
    for i in range(6):
        others = torch.cat([tokens[:, :i], tokens[:, i + 1 :]], dim=1)
        torch.testing.assert_close(full[:, i], block(tokens[:, i], others), rtol=0,
                                   atol=1e-10)


def test_every_parameter_gets_a_gradient():
    for key_norm, self_attend in MODES:
        block = randomize(SingleQueryBlock(D, H, key_norm=key_norm,
                                           self_attend=self_attend)).double()
        q, k = torch.randn(3, D, dtype=torch.float64), torch.randn(3, 4, D, dtype=torch.float64)
        block(q, k).square().sum().backward()
        for name, p in block.named_parameters():
            assert p.grad is not None, (key_norm, name)
            if name == "norm_k.bias":
                # adds q~_h . beta to every score of head h: softmax is shift-invariant, so
                # this (official-layout) parameter has an exactly zero gradient
                assert p.grad.abs().max() < 1e-12
            else:
                assert p.grad.abs().max() > 1e-6, (key_norm, name)


def test_separate_key_norm_leaves_values_unnormalised():
    # official SII/LII: values are the raw tokens, so scaling the keys' tokens by c scales
    # the attention output (before proj) by c, while LN_k makes the weights scale-free
    block = SingleQueryBlock(D, H, key_norm="separate", eps=0.0).double()
    q = torch.randn(2, D, dtype=torch.float64)
    k = torch.randn(2, 5, D, dtype=torch.float64)
    qn = block.norm1(q)
    o1 = block.attn(qn, block.norm_k(k), k) - block.attn.proj.bias
    o3 = block.attn(qn, block.norm_k(3 * k), 3 * k) - block.attn.proj.bias
    torch.testing.assert_close(o3, 3 * o1, rtol=1e-9, atol=1e-9)


def test_state_dict_round_trip_and_shared_between_impls():
    block = randomize(SingleQueryBlock(D, H))
    q, k = torch.randn(3, D), torch.randn(3, 5, D)
    clone = SingleQueryBlock(D, H, impl="explicit")
    clone.load_state_dict(block.state_dict())
    tol = rounding_tol(torch.float32, _BLOCK_ROUNDINGS)
    torch.testing.assert_close(clone(q, k), block(q, k), **tol)
    assert set(block.state_dict()) == set(clone.state_dict())
    buffer = __import__("io").BytesIO()
    torch.save(block.state_dict(), buffer)
    buffer.seek(0)
    again = SingleQueryBlock(D, H)
    again.load_state_dict(torch.load(buffer))
    assert torch.equal(again(q, k), block(q, k))


def test_bf16_autocast_close_to_fp32():
    block = randomize(SingleQueryBlock(64, 4, self_attend=True, key_norm="shared"))
    q, k = torch.randn(4, 64), torch.randn(4, 20, 64)
    ref = block(q, k)
    for impl in ("absorbed", "explicit"):
        set_attention_impl(block, impl)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = block(q, k)
        assert torch.isfinite(out).all()
        err = (out.float() - ref).norm() / ref.norm()
        assert err < 2e-2, (impl, err)


def test_dropout_and_drop_path():
    block = SingleQueryBlock(D, H, drop=0.5, attn_drop=0.5, drop_path=0.5)
    q, k = torch.randn(8, D), torch.randn(8, 5, D)
    block.eval()
    ref = block(q, k)
    clean = SingleQueryBlock(D, H).eval()
    clean.load_state_dict(block.state_dict())
    assert torch.equal(ref, clean(q, k))  # no dropout in eval
    block.train()
    out = block(q, k)
    out.sum().backward()
    assert torch.isfinite(out).all() and not torch.equal(out, ref)
    # drop path zeroes whole rows of a branch and rescales the survivors
    dp = DropPath(0.5).train()
    x = torch.ones(1000, 3)
    y = dp(x)
    assert set(y[:, 0].tolist()) <= {0.0, 2.0} and (y == y[:, :1]).all()
    assert 300 < int((y[:, 0] == 0).sum()) < 700
    assert torch.equal(dp.eval()(x), x)


def test_inputs_not_modified():
    block = SingleQueryBlock(D, H, self_attend=True)
    q = torch.randn(3, D, requires_grad=True)
    k = torch.randn(3, 5, D, requires_grad=True)
    versions = (q._version, k._version)
    block(q, k).sum().backward()
    assert (q._version, k._version) == versions


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda b: b(torch.randn(3, 8), torch.randn(3, 5, D)), r"query: .*\(M, D\)"),
        (lambda b: b(torch.randn(3, D), torch.randn(3, 5, 8)), r"keys: .*\(M, N, D\)"),
        (lambda b: b(torch.randn(3, D), torch.randn(2, 5, D)), r"keys: .*got shape \(2, 5, 16\)"),
        (lambda b: b(torch.randn(3, 1, D), torch.randn(3, 5, D)), "query: expected a 2-D"),
        (lambda b: b.attn(torch.randn(3, D), torch.randn(3, 5, D), torch.randn(3, 4, D)),
         "values"),
        (lambda b: b.attn(torch.randn(3, D), torch.randn(3, 0, D)), "keys"),
        (lambda b: b.attn(torch.randn(3, D), torch.randn(3, 2, D),
                          extra_key=torch.randn(3, D)), "extra_key"),
    ],
)
def test_bad_shapes_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call(SingleQueryBlock(D, H))


def test_bad_options_raise():
    with pytest.raises(ValueError, match="num_heads"):
        SingleQueryAttention(10, 4)
    with pytest.raises(ValueError, match="impl"):
        SingleQueryAttention(D, H, impl="flash")
    with pytest.raises(ValueError, match="key_norm"):
        SingleQueryBlock(D, H, key_norm="post")
    with pytest.raises(ValueError, match="drop_path"):
        SingleQueryBlock(D, H, drop_path=1.0)
    with pytest.raises(ValueError, match="impl"):
        set_attention_impl(SingleQueryBlock(D, H), "fast")


@pytest.mark.parametrize("impl", ["absorbed", "explicit"])
def test_torch_compile_eager_fullgraph(impl):
    block = SingleQueryBlock(D, H, impl=impl, self_attend=True)
    q, k = torch.randn(3, D), torch.randn(3, 5, D)
    compiled = torch.compile(block, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(q, k), block(q, k))


def test_fused_key_norm_function_gradcheck():
    # the hand-written backward of the "separate" fast path, against finite differences
    from xreid.layers.attention import _KeyNormAttention

    g = torch.Generator().manual_seed(3)
    q_abs = torch.randn(1, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = (torch.randn(1, 3, 4, generator=g, dtype=torch.float64) * 2 + 1).requires_grad_()
    weight = torch.rand(4, generator=g, dtype=torch.float64).add_(0.5).requires_grad_()
    bias = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    fn = lambda q, v, w, b: _KeyNormAttention.apply(q, v, w, b, 1e-5)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q_abs, y, weight, bias))
    assert torch.autograd.gradcheck(lambda q, v: fn(q, v, None, None), (q_abs, y))
    # reference: LayerNorm keys, raw values, plain softmax attention per head
    out = _KeyNormAttention.apply(q_abs, y, weight, bias, 1e-5)
    z = torch.nn.functional.layer_norm(y, (4,), weight, bias, 1e-5)
    ref = torch.softmax(q_abs @ z.transpose(1, 2), dim=-1) @ y
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_separate_fast_path_is_used_and_falls_back():
    block = randomize(SingleQueryBlock(D, H, key_norm="separate")).double()
    q = torch.randn(3, D, dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, 5, D, dtype=torch.float64, requires_grad=True)
    out = block(q, k)
    assert _first_node_named(out, "KeyNormAttention") is not None
    # under autocast, in bfloat16 and with attention dropout the plain path runs
    block = block.float()
    qf, kf = q.detach().float(), k.detach().float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _first_node_named(block(qf, kf), "KeyNormAttention") is None
    assert _first_node_named(block.bfloat16()(qf.bfloat16(), kf.bfloat16()),
                             "KeyNormAttention") is None
    dropping = SingleQueryBlock(D, H, attn_drop=0.1)
    assert _first_node_named(dropping(qf, kf), "KeyNormAttention") is None
    assert _first_node_named(dropping.eval()(qf, kf), "KeyNormAttention") is not None


def _first_node_named(tensor: torch.Tensor, name: str):
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if name in type(node).__name__:
            return node
        stack.extend(n for n, _ in node.next_functions)
    return None

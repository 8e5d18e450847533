"""Single-query multi-head attention and the shared pre-norm block behind SII, LII and CII.

Every interaction module of X-ReID's MII has exactly one query per frame: SII (Eq. 6) and
LII (Eq. 7) let a [CLS] token attend to N patch tokens (MHCA + FFN), and CII (Fig. 3d) runs
MHSA + FFN over ``[query; patches]`` but keeps token 0 only, which is single-query attention
over the ``1 + N`` tokens. One block, :class:`SingleQueryBlock`, serves all three::

    x   = query + DropPath(Attn(LN1(query), keys', values'))        # MHCA / MHSA, Eqs. 6-7
    out = x + DropPath(FFN(LN2(x)))                                  # FFN

``key_norm`` chooses what the keys and values are (``keys`` are the raw patch tokens):

==============  =======================  ===================  ==============================
``key_norm``    keys' (fed to ``W_k``)   values' (``W_v``)    used by
==============  =======================  ===================  ==============================
``"separate"``  ``LN_k(keys)`` (own LN)  ``keys`` (raw)       SII, LII (official X-ReID code,
                                                              ``SP_TPM.CrossAttention``)
``"shared"``    ``LN1(keys)``            ``LN1(keys)``        CII (standard pre-norm block)
``"none"``      ``keys``                 ``keys``             already-normalised tokens
==============  =======================  ===================  ==============================

``self_attend=True`` adds the query token itself as key/value token 0, normalised like the
other keys, which makes the block a pre-norm *self*-attention block over ``[query; keys]``
whose token-0 output is returned (CII). With ``"separate"``, ``LN_k``'s bias shifts every
score of a head by the same amount, which softmax ignores: it is kept for the official
parameter layout, and its gradient is exactly zero.

Fast path (``impl="absorbed"``, the default). With one query per row, the K and V
projections of all N tokens dominate the cost, and both fold exactly into the query side
(per head h; W_k, W_v have no bias)::

    scores_h = (W_q,h q) . (W_k,h z_j) / sqrt(d_h) = (W_k,h^T W_q,h q / sqrt(d_h)) . z_j
    out_h    = sum_j a_hj W_v,h y_j = W_v,h (sum_j a_hj y_j)

so the block computes ``q~ = W_k,h^T q_h`` (M, h, D), ``scores = q~ z^T`` (M, h, N), the
softmax, ``pooled = a y`` (M, h, D) and ``W_v,h pooled_h``: K and V are never formed per
token (about 36x fewer multiply-adds at the paper's shapes). For ``"separate"`` in float32/64
the key LayerNorm is also folded in (:class:`_KeyNormAttention`, a hand-written backward that
produces the key and value gradients of the raw tokens in one pass). ``impl="explicit"``
computes K and V for every token (then ``scaled_dot_product_attention``); it is the
reference for tests and benchmarks. Both read the same parameters (``q``, ``k``, ``v``:
``Linear(D, D, bias=False)``; ``proj``: ``Linear(D, D)`` with bias), so one state dict
serves either path. The fused ``"separate"`` node (and CPU SDPA) support first-order
gradients only.

Shapes: ``M`` rows (frames folded into the batch), ``N`` key tokens, ``D`` channels.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from xreid._torch_utils import autocast_enabled
from xreid._validation import check_positive_int, check_tensor

__all__ = [
    "AttentionImpl",
    "DropPath",
    "KeyNorm",
    "Mlp",
    "SingleQueryAttention",
    "SingleQueryBlock",
    "make_blocks",
    "set_attention_impl",
]

AttentionImpl = Literal["absorbed", "explicit"]
KeyNorm = Literal["separate", "shared", "none"]
_IMPLS = ("absorbed", "explicit")
_KEY_NORMS = ("separate", "shared", "none")


def _check_impl(impl: str) -> str:
    if impl not in _IMPLS:
        raise ValueError(f"impl: expected one of {_IMPLS}, got {impl!r}")
    return impl


def _check_heads(dim: int, num_heads: int) -> None:
    if dim <= 0 or num_heads <= 0 or dim % num_heads:
        raise ValueError(
            f"num_heads: expected a positive divisor of dim={dim}, got {num_heads}"
        )


def _check_rate(value: float, name: str) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name}: expected a rate in [0, 1), got {value}")
    return value


def _softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim, accumulated in at least float32 (bf16/fp16 safe)."""
    acc = torch.promote_types(scores.dtype, torch.float32)
    return torch.softmax(scores, dim=-1, dtype=acc).to(scores.dtype)


class _KeyNormAttention(torch.autograd.Function):
    """Absorbed single-query attention over raw tokens ``y`` with keys ``LN_k(y)`` and values
    ``y`` (the official ``"separate"`` form), with a hand-written backward.

    Forward: ``z = LN_k(y)`` (native kernel, also giving ``mu``, ``r = rstd``), scores
    ``z q~^T``, softmax over the N keys, ``pooled = a^T y``; ``z`` is not kept for backward.
    Backward: with ``qg = q~ * g`` and ``e = dscores * r``, the gradient of ``y`` from the key
    path (through ``z``, ``mu`` and ``r``) and from the value path is::

        dy_j = sum_h e_jh qg_h + sum_h a_jh grad_h + c1_j + c2_j y_j
        c2_j = -(r_j^2 / D) sum_h dscores_jh s_jh,    c1_j = -(1/D) sum_h e_jh sum(qg_h) - c2_j mu_j

    (``s = z q~^T - q~ . beta``), written with one ``bmm`` over stacked operands and one
    in-place ``addcmul``: no gradient for ``z``, no LayerNorm-backward buffer and no sum of
    two full-size gradients. ``beta`` shifts every score of a head equally, so its gradient
    is exactly zero. Float32/float64 only (``c1 + c2 y`` cancels when ``|mu| >> std``:
    relative error ``eps * |mu| / std``, fine in float32, not in bfloat16); the caller falls
    back to the plain path otherwise.

    Inputs ``q_abs (M, h, D)``, ``y (M, N, D)``, LayerNorm ``weight``/``bias`` (D,) or None;
    output ``(M, h, D)``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        q_abs: torch.Tensor,
        y: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        eps: float,
    ) -> torch.Tensor:
        z, mu, rstd = torch.native_layer_norm(y, [y.shape[-1]], weight, bias, eps)
        scores = torch.bmm(z, q_abs.transpose(1, 2))  # (M, N, h)
        del z
        attn = torch.softmax(scores, dim=1)  # over the N keys
        if bias is not None:  # s = scores without the (softmax-inert) q~ . beta term
            scores = scores - (q_abs @ bias).unsqueeze(1)
        ctx.save_for_backward(q_abs, y, weight, mu.squeeze(-1), rstd.squeeze(-1), scores, attn)
        ctx.has_bias = bias is not None
        return torch.bmm(attn.transpose(1, 2), y)  # (M, h, D)

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, None]:
        q_abs, y, weight, mu, r, scores, attn = ctx.saved_tensors
        d = y.shape[-1]
        qg = q_abs if weight is None else q_abs * weight  # (M, h, D)
        # softmax backward (attn, scores: (M, N, h))
        d_attn = torch.bmm(y, grad.transpose(1, 2))
        d_scores = attn * (d_attn - (attn * d_attn).sum(dim=1, keepdim=True))
        e = d_scores * r.unsqueeze(-1)
        # the key LayerNorm statistics mu_j and r_j
        d_mu = -(e * qg.sum(dim=-1).unsqueeze(1)).sum(dim=-1)  # (M, N)
        c2 = (-1.0 / d) * r.square() * (d_scores * scores).sum(dim=-1)
        c1 = d_mu / d - c2 * mu
        lhs = torch.cat([e, attn, c1.unsqueeze(-1)], dim=-1)  # (M, N, 2h+1)
        rhs = torch.cat([qg, grad, torch.ones_like(qg[:, :1])], dim=1)  # (M, 2h+1, D)
        grad_y = torch.bmm(lhs, rhs).addcmul_(c2.unsqueeze(-1), y)
        # sum_j dscores_jh * normalised y_j (without the affine part)
        y_hat = torch.bmm(e.transpose(1, 2), y) - (e * mu.unsqueeze(-1)).sum(dim=1)[..., None]
        grad_q = y_hat if weight is None else y_hat * weight
        grad_w = None if weight is None else (y_hat * q_abs).sum(dim=(0, 1))
        grad_b = grad.new_zeros(d) if ctx.has_bias else None
        return grad_q, grad_y, grad_w, grad_b, None


# DropPath and Mlp equal timm.layers' (tests/test_timm_equivalence.py) but stay here: timm
# imports torchvision, and xreid.layers needs torch only.
class DropPath(nn.Module):
    """Stochastic depth per sample (dim 0 of the input): zero a residual branch with
    probability ``p`` in training and rescale the survivors by ``1 / (1 - p)``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = _check_rate(p, "drop_path")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """Transformer FFN: ``fc2(drop(GELU(fc1(x))))`` then dropout; ``(*, D) -> (*, D)``."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(_check_rate(drop, "drop"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class SingleQueryAttention(nn.Module):
    """Multi-head attention of one query per row over that row's N tokens (MHCA of Eqs. 6-7).

    ``forward(query (M, D), keys (M, N, D), values (M, N, D) | None) -> (M, D)``: the inputs
    are what enters ``W_q``, ``W_k`` and ``W_v`` (normalise them before, as the block does);
    ``values`` defaults to ``keys``. ``extra_key``/``extra_value`` ``(M, D)`` add one more
    token in front of the N (CII's query attending to itself) without concatenating tensors
    of size ``(M, 1 + N, D)``. ``key_norm_layer`` (a ``LayerNorm(D)``) is applied to
    ``keys`` before ``W_k`` (values stay as given); in the absorbed path, for float32/64
    without autocast or attention dropout and with ``values is keys``, attention and key
    LayerNorm run as one autograd node (:class:`_KeyNormAttention`): the normalised keys
    are neither kept for backward nor differentiated through.

    Args:
        dim: channels ``D``. num_heads: heads ``h`` (``D % h == 0``).
        attn_drop: dropout on the attention weights. proj_drop: dropout after ``proj``.
        impl: ``"absorbed"`` (fast, default) or ``"explicit"`` (K/V per token; reference).
            May be changed after construction (``module.impl = "explicit"``).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        impl: AttentionImpl = "absorbed",
    ) -> None:
        super().__init__()
        _check_heads(dim, num_heads)
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.impl: str = _check_impl(impl)
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(_check_rate(attn_drop, "attn_drop"))
        self.proj_drop = nn.Dropout(_check_rate(proj_drop, "proj_drop"))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, impl={self.impl!r}"

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor | None = None,
        *,
        extra_key: torch.Tensor | None = None,
        extra_value: torch.Tensor | None = None,
        key_norm_layer: nn.LayerNorm | None = None,
    ) -> torch.Tensor:
        check_tensor(query, "query", ndim=2, dims={1: self.dim}, layout="(M, D)")
        m = query.shape[0]
        check_tensor(keys, "keys", ndim=3, dims={0: m, 2: self.dim}, layout="(M, N, D)")
        if values is None:
            values = keys
        else:
            check_tensor(values, "values", ndim=3, dims={0: m, 1: keys.shape[1], 2: self.dim},
                         layout="(M, N, D)")
        if (extra_key is None) != (extra_value is None):
            raise ValueError("extra_key: expected extra_key and extra_value together or neither")
        if extra_key is not None and extra_value is not None:
            check_tensor(extra_key, "extra_key", ndim=2, dims={0: m, 1: self.dim},
                         layout="(M, D)")
            check_tensor(extra_value, "extra_value", ndim=2, dims={0: m, 1: self.dim},
                         layout="(M, D)")
        if keys.shape[1] == 0 and extra_key is None:
            raise ValueError(f"keys: expected at least one token (M, N>=1, D), "
                             f"got shape {tuple(keys.shape)}")
        if key_norm_layer is not None:
            if self._can_fuse_key_norm(query, keys, values, extra_key, key_norm_layer):
                out = self._absorbed_key_norm(query, keys, key_norm_layer)
                return self.proj_drop(self.proj(out))
            keys = key_norm_layer(keys)
        if self.impl == "absorbed":
            out = self._absorbed(query, keys, values, extra_key, extra_value)
        else:
            out = self._explicit(query, keys, values, extra_key, extra_value)
        return self.proj_drop(self.proj(out))

    def _can_fuse_key_norm(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        extra_key: torch.Tensor | None,
        norm: nn.LayerNorm,
    ) -> bool:
        return (
            self.impl == "absorbed"
            and values is keys
            and extra_key is None
            and not (self.training and self.attn_drop.p > 0)
            and tuple(norm.normalized_shape) == (self.dim,)
            and keys.dtype in (torch.float32, torch.float64)
            and query.dtype == keys.dtype
            and self.k.weight.dtype == keys.dtype
            and not autocast_enabled(keys.device.type)
        )

    def _absorbed_key_norm(
        self, query: torch.Tensor, keys: torch.Tensor, norm: nn.LayerNorm
    ) -> torch.Tensor:
        """Absorbed attention over raw ``keys`` (also the values) with ``norm`` folded into
        the scores."""
        m, d, h = query.shape[0], self.dim, self.num_heads
        q = (self.q(query) * self.scale).view(m, h, self.head_dim)
        q_abs = torch.einsum("mhc,hcd->mhd", q, self.k.weight.view(h, self.head_dim, d))
        pooled = _KeyNormAttention.apply(q_abs, keys, norm.weight, norm.bias, norm.eps)
        out = torch.einsum("mhd,hcd->mhc", pooled, self.v.weight.view(h, self.head_dim, d))
        return out.reshape(m, d)

    def _absorbed(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        extra_key: torch.Tensor | None,
        extra_value: torch.Tensor | None,
    ) -> torch.Tensor:
        m, d, h = query.shape[0], self.dim, self.num_heads
        q = (self.q(query) * self.scale).view(m, h, self.head_dim)
        # fold W_k into the query: q~[m, h, :] = W_k,h^T q[m, h]            (M, h, D)
        q_abs = torch.einsum("mhc,hcd->mhd", q, self.k.weight.view(h, self.head_dim, d))
        # (M, N, D) @ (M, D, h): the gradient w.r.t. keys comes out contiguous (M, N, D)
        scores = torch.bmm(keys, q_abs.transpose(1, 2)).transpose(1, 2)  # (M, h, N)
        if extra_key is not None and extra_value is not None:
            s0 = torch.bmm(q_abs, extra_key.unsqueeze(-1))  # (M, h, 1)
            attn = self.attn_drop(_softmax(torch.cat([s0, scores], dim=-1)))
            # sum_j a_j y_j with y = [extra_value; values]                  (M, h, D)
            pooled = torch.baddbmm(attn[..., :1] * extra_value.unsqueeze(1),
                                   attn[..., 1:], values)
        else:
            attn = self.attn_drop(_softmax(scores))
            pooled = torch.bmm(attn, values)  # (M, h, D)
        # fold W_v after pooling: out[m, h] = W_v,h pooled[m, h]            (M, h, d_h)
        out = torch.einsum("mhd,hcd->mhc", pooled, self.v.weight.view(h, self.head_dim, d))
        return out.reshape(m, d)

    # Same signature as _absorbed on purpose: _explicit is the reference path (K/V per
    # token) that the tests compare the fast path with, option for option.
    def _explicit(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        extra_key: torch.Tensor | None,
        extra_value: torch.Tensor | None,
    ) -> torch.Tensor:
        m, h = query.shape[0], self.num_heads
        if extra_key is not None and extra_value is not None:
            keys = torch.cat([extra_key.unsqueeze(1), keys], dim=1)
            values = torch.cat([extra_value.unsqueeze(1), values], dim=1)
        q = self.q(query).view(m, h, 1, self.head_dim)
        k = self.k(keys).view(m, -1, h, self.head_dim).transpose(1, 2)  # (M, h, N, d_h)
        v = self.v(values).view(m, -1, h, self.head_dim).transpose(1, 2)
        p = self.attn_drop.p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=self.scale)
        return out.reshape(m, self.dim)


class SingleQueryBlock(nn.Module):
    """Pre-norm attention block with one query per row: the MHCA/MHSA + FFN of Eqs. 6-7 and
    Fig. 3(d).

    ``forward(query (M, D), keys (M, N, D)) -> (M, D)``::

        x   = query + DropPath(Attn(LN1(query), keys', values'))
        out = x + DropPath(FFN(LN2(x)))

    where ``keys'``/``values'`` follow ``key_norm`` (module docstring table) and
    ``self_attend=True`` prepends the query token to them (CII).

    Args:
        dim, num_heads: width ``D`` and heads ``h``.
        mlp_ratio: FFN hidden width ``= int(D * mlp_ratio)``; GELU (exact).
        key_norm: ``"separate"`` (extra LayerNorm on keys, raw values; official SII/LII),
            ``"shared"`` (LN1 on keys and values; a standard pre-norm block), or ``"none"``.
        self_attend: add the query token as key/value token 0 (MHSA over ``[query; keys]``,
            token 0 kept).
        drop: dropout in the FFN and after the attention projection.
        attn_drop: dropout on attention weights. drop_path: stochastic depth rate.
        impl: ``"absorbed"`` (default) or ``"explicit"``; see :class:`SingleQueryAttention`.
        eps: LayerNorm epsilon.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        key_norm: KeyNorm = "separate",
        self_attend: bool = False,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        impl: AttentionImpl = "absorbed",
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if key_norm not in _KEY_NORMS:
            raise ValueError(f"key_norm: expected one of {_KEY_NORMS}, got {key_norm!r}")
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio: expected a positive number, got {mlp_ratio}")
        self.dim = dim
        self.key_norm: str = key_norm
        self.self_attend = bool(self_attend)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm_k = nn.LayerNorm(dim, eps=eps) if key_norm == "separate" else None
        self.attn = SingleQueryAttention(
            dim, num_heads, attn_drop=attn_drop, proj_drop=drop, impl=impl
        )
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, max(1, int(dim * mlp_ratio)), drop=drop)

    def extra_repr(self) -> str:
        return f"key_norm={self.key_norm!r}, self_attend={self.self_attend}"

    def _keys_values(
        self, tokens: torch.Tensor, tokens_n1: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys, values) entering W_k/W_v for raw ``tokens``; ``tokens_n1`` = LN1(tokens)
        when already computed."""
        if self.norm_k is not None:  # "separate": own LayerNorm on keys, raw values
            return self.norm_k(tokens), tokens
        if self.key_norm == "shared":
            normed = self.norm1(tokens) if tokens_n1 is None else tokens_n1
            return normed, normed
        return tokens, tokens

    def forward(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        check_tensor(query, "query", ndim=2, dims={1: self.dim}, layout="(M, D)")
        check_tensor(keys, "keys", ndim=3, dims={0: query.shape[0], 2: self.dim},
                     layout="(M, N, D)")
        q_n = self.norm1(query)
        extra_k = extra_v = None
        if self.self_attend:
            extra_k, extra_v = self._keys_values(query, q_n)
        if self.norm_k is not None:  # "separate": the attention applies (or folds) LN_k
            attn = self.attn(q_n, keys, keys, extra_key=extra_k, extra_value=extra_v,
                             key_norm_layer=self.norm_k)
        else:
            k_in, v_in = self._keys_values(keys)
            attn = self.attn(q_n, k_in, v_in, extra_key=extra_k, extra_value=extra_v)
        x = query + self.drop_path(attn)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The same block as a full self-attention block: every token is a query.

        ``(M, L, D) -> (M, L, D)``; row ``[:, 0]`` of the result equals
        ``forward(tokens[:, 0], tokens[:, 1:])`` when ``self_attend=True``. Used by CII with
        ``depth > 1`` (the earlier blocks must update the patch tokens too) and as the
        "full self-attention" reference in tests and benchmarks. Always K/V per token.
        """
        check_tensor(tokens, "tokens", ndim=3, dims={2: self.dim}, layout="(M, L, D)")
        attn = self.attn
        m, n, h, dh = tokens.shape[0], tokens.shape[1], attn.num_heads, attn.head_dim
        t_n = self.norm1(tokens)
        k_in, v_in = self._keys_values(tokens, t_n)
        q = attn.q(t_n).view(m, n, h, dh).transpose(1, 2)
        k = attn.k(k_in).view(m, n, h, dh).transpose(1, 2)
        v = attn.v(v_in).view(m, n, h, dh).transpose(1, 2)
        p = attn.attn_drop.p if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=attn.scale)
        o = attn.proj_drop(attn.proj(o.transpose(1, 2).reshape(m, n, self.dim)))
        x = tokens + self.drop_path(o)
        return x + self.drop_path(self.mlp(self.norm2(x)))


def make_blocks(
    dim: int,
    num_heads: int,
    depth: int,
    *,
    mlp_ratio: float,
    key_norm: KeyNorm,
    self_attend: bool,
    drop: float,
    attn_drop: float,
    drop_path: float,
    attn_impl: AttentionImpl,
) -> nn.ModuleList:
    """``depth`` identical :class:`SingleQueryBlock` s in a ``ModuleList`` (the block stack
    of SII, LII and CII); the other arguments are those of :class:`SingleQueryBlock`."""
    check_positive_int(depth, "depth")
    return nn.ModuleList(
        SingleQueryBlock(
            dim,
            num_heads,
            mlp_ratio=mlp_ratio,
            key_norm=key_norm,
            self_attend=self_attend,
            drop=drop,
            attn_drop=attn_drop,
            drop_path=drop_path,
            impl=attn_impl,
        )
        for _ in range(depth)
    )


def set_attention_impl(module: nn.Module, impl: AttentionImpl) -> nn.Module:
    """Set ``impl`` on every :class:`SingleQueryAttention` inside ``module``; returns it."""
    _check_impl(impl)
    for sub in module.modules():
        if isinstance(sub, SingleQueryAttention):
            sub.impl = impl
    return module

"""Long-term Information Interaction, LII (paper Eq. 7, Fig. 3c).

The [CLS] token of frame u queries the patch tokens of frame ``(u + S) mod T`` (stride S,
circular; the paper's example S = 2 pairs ``z^cls_{t-2}`` with ``z^p_t``)::

    z^cls_u <- FFN(MHCA(query = z^cls_u, key = value = z^p_{(u+S) mod T}))       (7)

Shapes: ``tokens (B, T, 1+N, D) -> (B, T, D)``; ``output[:, u]`` belongs to frame u.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from xreid._validation import check_module_input
from xreid.layers.attention import AttentionImpl, KeyNorm, make_blocks
from xreid.layers.short_term import check_frame_tokens
from xreid.layers.temporal_shift import split_frame_tokens

__all__ = ["LII", "LongTermInteraction"]


class LongTermInteraction(nn.Module):
    """LII: ``output[:, u] = block(query = CLS of frame u, kv = patches of frame (u+S) mod T)``.

    ``forward(tokens (B, T, 1+N, D)) -> (B, T, D)``. ``stride`` is taken modulo T, so
    ``stride=0`` (or any multiple of T) pairs each frame with itself and negative strides
    look backwards. The patches are not permuted: the (small) [CLS] tokens are rolled by S
    before the block and the outputs rolled back after it.

    Note: the official code defines (but never calls) an LII that pairs the CLS of frame
    ``(t+1) mod T`` with the patches of frame t, i.e. ``stride=-1`` here.

    Args:
        dim, num_heads: token width and attention heads.
        stride: temporal step S (2 in the paper). depth: stacked blocks (query chained,
            same keys). mlp_ratio: FFN width ratio.
        key_norm: key/value normalisation (``"separate"`` = official form; see
            :class:`~xreid.layers.attention.SingleQueryBlock`).
        drop, attn_drop, drop_path: dropout rates. attn_impl: ``"absorbed"`` or ``"explicit"``.
    """

    # The block keywords (mlp_ratio, key_norm, drop, attn_drop, drop_path, attn_impl) repeat
    # in SII, LII, CII and MII on purpose: each module is usable alone and hands them to
    # make_blocks.
    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        stride: int = 2,
        depth: int = 1,
        mlp_ratio: float = 4.0,
        key_norm: KeyNorm = "separate",
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        attn_impl: AttentionImpl = "absorbed",
    ) -> None:
        super().__init__()
        if isinstance(stride, bool) or not isinstance(stride, int):
            raise ValueError(f"stride: expected an int, got {stride!r}")
        self.dim = dim
        self.stride = stride
        self.blocks = make_blocks(
            dim, num_heads, depth, mlp_ratio=mlp_ratio, key_norm=key_norm, self_attend=False,
            drop=drop, attn_drop=attn_drop, drop_path=drop_path, attn_impl=attn_impl,
        )

    def extra_repr(self) -> str:
        return f"dim={self.dim}, stride={self.stride}"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        check_frame_tokens(tokens, self.dim)
        check_module_input(tokens, "tokens", self)
        b, t = tokens.shape[:2]
        s = self.stride % t
        # Pair row w (patches of frame w) with the CLS of frame (w - S) mod T, then roll the
        # outputs back so that output u = f(CLS_u, patches_{(u+S) mod T}).
        # (index gathers without torch.roll or %: they also export to ONNX with a dynamic T)
        cls, patches = split_frame_tokens(tokens)
        frames = torch.arange(t, device=tokens.device)
        if s:
            back = frames - s  # (u - S) mod T for 0 <= S < T
            cls = cls.index_select(1, torch.where(back < 0, back + t, back))
        query = rearrange(cls, "b t d -> (b t) d")
        keys = rearrange(patches, "b t n d -> (b t) n d")
        for block in self.blocks:  # Eq. 7
            query = block(query, keys)
        out = rearrange(query, "(b t) d -> b t d", b=b, t=t)
        if not s:
            return out
        ahead = frames + s  # (u + S) mod T
        return out.index_select(1, torch.where(ahead >= t, ahead - t, ahead))


LII = LongTermInteraction

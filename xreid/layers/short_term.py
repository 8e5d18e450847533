"""Short-term Information Interaction, SII (paper Eqs. 5-6, Fig. 3a-b).

For every frame t of a clip, the patch tokens exchange channel folds with the adjacent
frames (Eq. 5, :func:`~xreid.layers.temporal_shift.temporal_shift`) and the frame's own
[CLS] token queries the reconstructed patches (MHCA, then FFN; Eq. 6)::

    z^p_t  = [z^p_{t-1}(1 : D/4); z^p_{t+1}(D/4+1 : D/2); z^p_t(D/2+1 : D)]     (5)
    z^cls_t <- FFN(MHCA(query = z^cls_t, key = value = z^p_t))               (6)

With a time stride S (``stride``, Fig. 4) the folds come from frames t - S and t + S.

Shapes: ``tokens (B, T, 1+N, D) -> (B, T, D)``; token 0 of each frame is [CLS].
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from xreid._validation import check_module_input, check_tensor, shape_str
from xreid.layers.attention import AttentionImpl, KeyNorm, make_blocks
from xreid.layers.temporal_shift import check_shift_args, split_frame_tokens

__all__ = ["SII", "ShortTermInteraction", "check_frame_tokens"]


def check_frame_tokens(tokens: object, dim: int, name: str = "tokens") -> torch.Tensor:
    """Validate ViT frame tokens ``(B, T, 1+N, D)`` with ``D == dim`` and ``N >= 1``."""
    x = check_tensor(tokens, name, ndim=4, dims={3: dim}, layout="(B, T, 1+N, D)")
    if x.shape[1] < 1 or x.shape[2] < 2:
        raise ValueError(
            f"{name}: expected T >= 1 frames and a [CLS] token plus N >= 1 patch tokens "
            f"(B, T, 1+N, D), got shape {shape_str(x)}"
        )
    return x


class ShortTermInteraction(nn.Module):
    """SII: per frame, [CLS] attends to its temporally shifted patch tokens (Eqs. 5-6).

    ``forward(tokens (B, T, 1+N, D)) -> (B, T, D)``.

    The shift acts on the patch tokens exactly as they arrive; all normalisation happens
    after it, inside the block. Frames are folded into the batch, so every frame is one row
    of :class:`~xreid.layers.attention.SingleQueryBlock`. With ``depth > 1`` the blocks are
    stacked on the query (block i+1's query is block i's output) and all of them attend to
    the same shifted patches, as in the official code (two blocks there; one in the paper).

    Args:
        dim: token width ``D``. num_heads: attention heads.
        fold_div: ``D // fold_div`` channels come from each neighbour (4 in Eq. 5).
        depth: number of stacked blocks. mlp_ratio: FFN width ratio.
        padding: ``"replicate"`` (paper) or ``"zero"`` at the first/last frame.
        stride: time stride S >= 1 of the shift: the folds come from frames ``t - S`` and
            ``t + S`` (Eq. 5 is S = 1; the paper's Fig. 4 compares S = 1..4).
        key_norm: key/value normalisation of the block; ``"separate"`` (default) is the
            official form: LN1 on the query, an extra LayerNorm on the keys, raw values.
        drop, attn_drop, drop_path: dropout rates (0 by default, as in the official code).
        attn_impl: ``"absorbed"`` (fast) or ``"explicit"`` (K/V per patch; reference).
    """

    # The block keywords (mlp_ratio, key_norm, drop, attn_drop, drop_path, attn_impl) repeat
    # in SII, LII, CII and MII on purpose: each module is usable alone and hands them to
    # make_blocks.
    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        fold_div: int = 4,
        depth: int = 1,
        mlp_ratio: float = 4.0,
        padding: str = "replicate",
        stride: int = 1,
        key_norm: KeyNorm = "separate",
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        attn_impl: AttentionImpl = "absorbed",
    ) -> None:
        super().__init__()
        check_shift_args(fold_div, padding, stride)
        self.dim = dim
        self.fold_div = fold_div
        self.padding = padding
        self.stride = stride
        self.blocks = make_blocks(
            dim, num_heads, depth, mlp_ratio=mlp_ratio, key_norm=key_norm, self_attend=False,
            drop=drop, attn_drop=attn_drop, drop_path=drop_path, attn_impl=attn_impl,
        )

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, fold_div={self.fold_div}, padding={self.padding!r}, "
                f"stride={self.stride}")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        check_frame_tokens(tokens, self.dim)
        check_module_input(tokens, "tokens", self)
        b, t = tokens.shape[:2]
        # [CLS] tokens and temporally shifted patches (Eq. 5) in one autograd node
        cls, shifted = split_frame_tokens(tokens, self.fold_div, self.padding, self.stride)
        query = rearrange(cls, "b t d -> (b t) d")
        keys = rearrange(shifted, "b t n d -> (b t) n d")
        for block in self.blocks:  # Eq. 6
            query = block(query, keys)
        return rearrange(query, "(b t) d -> b t d", b=b, t=t)


SII = ShortTermInteraction

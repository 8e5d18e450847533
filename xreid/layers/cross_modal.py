"""Cross-Modality Information Interaction, CII (paper Fig. 3d).

A sequence feature of one modality, ``query = Ō`` (e.g. the TAP of the visible clip's LII or
SII output), is concatenated with the patch tokens of each frame t of the same identity's
clip in the other modality; MHSA + FFN run over ``[Ō; z^p_t]`` (N + 1 tokens), token 0 is
kept (``Ô_t``) and averaged over the frames::

    Ô_t    = [MHSA + FFN]([Ō; z^p_t])[0]
    O_CMII = Mean_t(Ô_t)

Shapes: ``query (B, D)``, ``patches (B, T, N, D) -> (B, D)``. CII is used only in training,
together with :class:`~xreid.losses.cmcl.CrossModalConstraintLoss` (Eq. 9).

``query_residual=False`` drops the residual connection of the query token in the last block,
``Ô_t = [MHSA + FFN]([Ō; z^p_t])[0] - Ō``: with the residual, Eq. 9's ``Ō - O_CMII`` is CII's
own update and shrinking CII's output projections satisfies it whatever the encoder learns;
without it, ``O_CMII`` must rebuild ``Ō`` from the attention over the other modality's
tokens (see ``docs/modules.md``, "CII and the CMCL shortcut").

Only token 0 of the self-attention output is kept, so with ``depth=1`` CII is exactly
single-query attention of the (LN1-normalised) query over the ``1 + N`` tokens, computed by
:class:`~xreid.layers.attention.SingleQueryBlock` with ``self_attend=True`` and
``key_norm="shared"``: the query token joins the keys/values through ``extra_key`` /
``extra_value``, so ``[Ō; z^p_t]`` is never materialised and K/V are never computed per
patch. With ``depth > 1`` the first ``depth - 1`` blocks are full self-attention blocks
(every token updated; the concatenation is formed once) and the last is single-query.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import nn

from xreid._validation import check_module_input, check_tensor, shape_str
from xreid.layers.attention import AttentionImpl, KeyNorm, make_blocks

__all__ = ["CII", "CrossModalInteraction"]


class CrossModalInteraction(nn.Module):
    """CII: per frame, MHSA + FFN over ``[query; patches[:, t]]``, keep token 0, average over T.

    ``forward(query (B, D), patches (B, T, N, D)) -> (B, D)``. Row b of ``query`` interacts
    only with row b of ``patches``; the result is invariant to the order of the frames and
    of the patches (no positional information is added).

    Args:
        dim, num_heads: token width and attention heads.
        depth: stacked self-attention blocks (1 in the paper). mlp_ratio: FFN width ratio.
        key_norm: ``"shared"`` (default): a standard pre-norm block, keys and values are
            LN1 of all tokens including the query token. ``"separate"``/``"none"`` as in
            :class:`~xreid.layers.attention.SingleQueryBlock`.
        drop, attn_drop, drop_path: dropout rates. attn_impl: ``"absorbed"`` or ``"explicit"``
            (the last block; earlier blocks of ``depth > 1`` always compute K/V per token).
        query_residual: keep the residual connection of the query token in the last block
            (True, the paper's standard block); False returns the block's update only.
    """

    # The block keywords (mlp_ratio, key_norm, drop, attn_drop, drop_path, attn_impl) repeat
    # in SII, LII, CII and MII on purpose: each module is usable alone and hands them to
    # make_blocks.
    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        depth: int = 1,
        mlp_ratio: float = 4.0,
        key_norm: KeyNorm = "shared",
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        attn_impl: AttentionImpl = "absorbed",
        query_residual: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(query_residual, bool):
            raise ValueError(f"query_residual: expected a bool, got {query_residual!r}")
        self.dim = dim
        self.query_residual = query_residual
        self.blocks = make_blocks(
            dim, num_heads, depth, mlp_ratio=mlp_ratio, key_norm=key_norm, self_attend=True,
            drop=drop, attn_drop=attn_drop, drop_path=drop_path, attn_impl=attn_impl,
        )

    def extra_repr(self) -> str:
        return f"dim={self.dim}, query_residual={self.query_residual}"

    def forward(self, query: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        check_tensor(query, "query", ndim=2, dims={1: self.dim}, layout="(B, D)")
        check_tensor(patches, "patches", ndim=4, dims={0: query.shape[0], 3: self.dim},
                     layout="(B, T, N, D)")
        check_module_input(query, "query", self)
        check_module_input(patches, "patches", self)
        b, t, n = patches.shape[:3]
        if t < 1 or n < 1:
            raise ValueError(
                f"patches: expected T >= 1 frames of N >= 1 patch tokens (B, T, N, D), "
                f"got shape {shape_str(patches)}"
            )
        q = repeat(query, "b d -> (b t) d", t=t)  # the same query for every frame
        keys = rearrange(patches, "b t n d -> (b t) n d")
        if len(self.blocks) > 1:
            x = torch.cat([q.unsqueeze(1), keys], dim=1)  # [query; patches_t]
            for block in self.blocks[:-1]:
                x = block.forward_tokens(x)
            q, keys = x[:, 0], x[:, 1:]
        out = self.blocks[-1](q, keys)  # token 0 of MHSA + FFN over [query; patches_t]
        if not self.query_residual:
            out = out - q  # the last block's update of token 0, without its input
        return rearrange(out, "(b t) d -> b t d", b=b, t=t).mean(dim=1)


CII = CrossModalInteraction

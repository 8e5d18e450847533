"""Multi-granularity Information Interaction, MII (paper Eq. 8, Fig. 2b).

SII (short-term, Eqs. 5-6) and LII (long-term, Eq. 7) run on the same frame tokens and
their per-frame outputs are fused by temporal averaging::

    O = Mean_t(O^SII_t + O^LII_t)                                               (8)

Shapes: ``tokens (B, T, 1+N, D) -> MIIOutput(feature (B, D), short (B, T, D), long (B, T, D))``.

Either branch can be switched off for the paper's Table 5 (``use_sii`` / ``use_lii``); the
feature is then the temporal mean of the remaining branch. At least one must stay on.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from xreid.layers.attention import AttentionImpl, KeyNorm
from xreid.layers.long_term import LongTermInteraction
from xreid.layers.short_term import ShortTermInteraction, check_frame_tokens

__all__ = ["MII", "MIIOutput", "MultiGranularityInteraction"]


class MIIOutput(NamedTuple):
    """Output of :class:`MultiGranularityInteraction`.

    Attributes:
        feature: ``(B, D)``, Eq. 8: ``(short + long).mean(dim=1)``; ``short.mean(dim=1)``
            when LII is disabled, ``long.mean(dim=1)`` when SII is disabled.
        short: ``(B, T, D)``, O^SII per frame, or ``None`` when SII is disabled.
        long: ``(B, T, D)``, O^LII per frame, or ``None`` when LII is disabled.
    """

    feature: torch.Tensor
    short: torch.Tensor | None
    long: torch.Tensor | None


class MultiGranularityInteraction(nn.Module):
    """MII: SII + LII on the same tokens, fused by Eq. 8.

    ``forward(tokens (B, T, 1+N, D)) -> MIIOutput``. CII (cross-modal) is a separate module,
    :class:`~xreid.layers.cross_modal.CrossModalInteraction`, because it needs a clip of the
    other modality; it is used only in training.

    Args:
        dim, num_heads: token width and attention heads (shared by SII and LII).
        lii_stride: LII stride S (2 in the paper).
        sii_depth, lii_depth: stacked blocks in each branch (1 in the paper).
        mlp_ratio: FFN width ratio of every block.
        fold_div, padding: SII token shift options (Eq. 5).
        use_sii: ``False`` drops SII: ``short`` is ``None`` and ``feature = long.mean(1)``.
        sii_stride: time stride S >= 1 of the SII token shift (1 in the paper; Fig. 4).
        key_norm: key/value normalisation of every block (``"separate"`` = official form).
        use_lii: ``False`` keeps only SII (what the official code runs): ``long`` is
            ``None`` and ``feature = short.mean(1)``. ``use_sii`` and ``use_lii`` cannot
            both be ``False`` (a model without MII has no MII module at all).
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
        lii_stride: int = 2,
        sii_depth: int = 1,
        lii_depth: int = 1,
        mlp_ratio: float = 4.0,
        fold_div: int = 4,
        padding: str = "replicate",
        key_norm: KeyNorm = "separate",
        use_sii: bool = True,
        sii_stride: int = 1,
        use_lii: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        attn_impl: AttentionImpl = "absorbed",
    ) -> None:
        super().__init__()
        if not (use_sii or use_lii):
            raise ValueError(
                "use_sii/use_lii: expected at least one of SII and LII to be on, got both "
                "False (build the model without MII instead)"
            )
        self.dim = dim
        common = dict(
            mlp_ratio=mlp_ratio, key_norm=key_norm, drop=drop, attn_drop=attn_drop,
            drop_path=drop_path, attn_impl=attn_impl,
        )
        self.sii = (
            ShortTermInteraction(
                dim, num_heads, fold_div=fold_div, depth=sii_depth, padding=padding,
                stride=sii_stride, **common,
            )
            if use_sii
            else None
        )
        self.lii = (
            LongTermInteraction(dim, num_heads, stride=lii_stride, depth=lii_depth, **common)
            if use_lii
            else None
        )

    @property
    def use_sii(self) -> bool:
        return self.sii is not None

    @property
    def use_lii(self) -> bool:
        return self.lii is not None

    def forward(self, tokens: torch.Tensor) -> MIIOutput:
        check_frame_tokens(tokens, self.dim)
        short = self.sii(tokens) if self.sii is not None else None
        long = self.lii(tokens) if self.lii is not None else None
        if short is not None and long is not None:
            return MIIOutput((short + long).mean(dim=1), short, long)  # Eq. 8
        only = short if short is not None else long
        assert only is not None
        return MIIOutput(only.mean(dim=1), short, long)


MII = MultiGranularityInteraction

"""xreid.layers: the Multi-granularity Information Interaction modules of X-ReID.

* :func:`temporal_shift` (Eq. 5) and :func:`split_frame_tokens`;
* :class:`SingleQueryAttention` / :class:`SingleQueryBlock`: one-query cross-attention blocks;
* :class:`ShortTermInteraction` (``SII``, Eqs. 5-6), :class:`LongTermInteraction` (``LII``,
  Eq. 7), :class:`MultiGranularityInteraction` (``MII``, Eq. 8) and
  :class:`CrossModalInteraction` (``CII``).

Importing this package needs torch only. See ``docs/modules.md``.
"""

from __future__ import annotations

from xreid.layers.attention import (
    AttentionImpl,
    DropPath,
    KeyNorm,
    Mlp,
    SingleQueryAttention,
    SingleQueryBlock,
    make_blocks,
    set_attention_impl,
)
from xreid.layers.cross_modal import CII, CrossModalInteraction
from xreid.layers.long_term import LII, LongTermInteraction
from xreid.layers.multi_granularity import MII, MIIOutput, MultiGranularityInteraction
from xreid.layers.short_term import SII, ShortTermInteraction, check_frame_tokens
from xreid.layers.temporal_shift import (
    check_shift_args,
    split_frame_tokens,
    temporal_shift,
)

__all__ = [
    "CII",
    "LII",
    "MII",
    "SII",
    "AttentionImpl",
    "CrossModalInteraction",
    "DropPath",
    "KeyNorm",
    "LongTermInteraction",
    "MIIOutput",
    "Mlp",
    "MultiGranularityInteraction",
    "ShortTermInteraction",
    "SingleQueryAttention",
    "SingleQueryBlock",
    "check_frame_tokens",
    "check_shift_args",
    "make_blocks",
    "set_attention_impl",
    "split_frame_tokens",
    "temporal_shift",
]

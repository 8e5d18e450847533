"""The training output of :class:`xreid.XReID`, consumed by :class:`xreid.XReIDLoss`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from xreid.layers.multi_granularity import MIIOutput

__all__ = ["XReIDOutput"]


@dataclass
class XReIDOutput:
    """Everything the X-ReID loss (Eq. 10) needs from one training forward.

    Shapes: B clips (visible and infrared mixed), T frames, C identities.

    Attributes:
        sequence: (B, D) TAP of the [CLS] tokens, before BNNeck ("original sequence feature").
        projected: (B, d) TAP of the projected [CLS] tokens, before BNNeck.
        memory_feature: (B, d_mem) feature compared with the CPC prototypes (CPCL, Eqs. 3-4)
            and used for the memory update (Eqs. 1-2).
        triplet_features: features, each (B, *), for the batch-hard triplet loss.
        logits: identity logits, each (B, C), for the ID cross-entropy.
        frame_logits: frame-level identity logits, each (B*T, C), frame-major within a clip
            (row ``b*T + t``); their labels are ``labels.repeat_interleave(T)``.
        cmcl_pairs: (anchor, interacted) pairs, each (B', D), for CMCL (Eq. 9).
        mii: the MII output (Eq. 8), or None when MII is disabled.
    """

    sequence: torch.Tensor
    projected: torch.Tensor
    memory_feature: torch.Tensor
    triplet_features: tuple[torch.Tensor, ...]
    logits: tuple[torch.Tensor, ...]
    frame_logits: tuple[torch.Tensor, ...] = ()
    cmcl_pairs: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()
    mii: MIIOutput | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

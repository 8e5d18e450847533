"""xreid: X-ReID (AAAI 2026) for video-based visible-infrared person re-identification.

Public names are resolved lazily so ``import xreid`` stays light: it imports torch only, and
timm / open_clip / torchvision are imported only when a backbone is built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from xreid.constants import INFRARED, VISIBLE
from xreid.version import __version__

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "temporal_shift": "xreid.layers.temporal_shift",
    "SingleQueryAttention": "xreid.layers.attention",
    "SingleQueryBlock": "xreid.layers.attention",
    "ShortTermInteraction": "xreid.layers.short_term",
    "SII": "xreid.layers.short_term",
    "LongTermInteraction": "xreid.layers.long_term",
    "LII": "xreid.layers.long_term",
    "MultiGranularityInteraction": "xreid.layers.multi_granularity",
    "MII": "xreid.layers.multi_granularity",
    "MIIOutput": "xreid.layers.multi_granularity",
    "CrossModalInteraction": "xreid.layers.cross_modal",
    "CII": "xreid.layers.cross_modal",
    "CrossModalConstraintLoss": "xreid.losses.cmcl",
    "CMCL": "xreid.losses.cmcl",
    "PrototypeCollaborationLoss": "xreid.losses.cpcl",
    "CPCL": "xreid.losses.cpcl",
    "TripletLoss": "xreid.losses.triplet",
    "XReIDLoss": "xreid.losses.xreid_loss",
    "LossOutput": "xreid.losses.xreid_loss",
    "CrossModalPrototypeMemory": "xreid.memory.prototype_memory",
    "CPCMemory": "xreid.memory.prototype_memory",
    "build_memory": "xreid.memory.build",
    "build_backbone": "xreid.backbones",
    "FrameTokens": "xreid.backbones",
    "XReID": "xreid.models.xreid",
    "XReIDOutput": "xreid.models.output",
    "load_model": "xreid.inference.loading",
    "LoadedModel": "xreid.inference.loading",
    "Preprocessing": "xreid.inference.loading",
}

__all__ = ["INFRARED", "VISIBLE", "__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xreid' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # pragma: no cover - static analysers see the real names
    from xreid.backbones import FrameTokens, build_backbone
    from xreid.inference.loading import LoadedModel, Preprocessing, load_model
    from xreid.layers.attention import SingleQueryAttention, SingleQueryBlock
    from xreid.layers.cross_modal import CII, CrossModalInteraction
    from xreid.layers.long_term import LII, LongTermInteraction
    from xreid.layers.multi_granularity import MII, MIIOutput, MultiGranularityInteraction
    from xreid.layers.short_term import SII, ShortTermInteraction
    from xreid.layers.temporal_shift import temporal_shift
    from xreid.losses.cmcl import CMCL, CrossModalConstraintLoss
    from xreid.losses.cpcl import CPCL, PrototypeCollaborationLoss
    from xreid.losses.triplet import TripletLoss
    from xreid.losses.xreid_loss import LossOutput, XReIDLoss
    from xreid.memory.build import build_memory
    from xreid.memory.prototype_memory import CPCMemory, CrossModalPrototypeMemory
    from xreid.models.output import XReIDOutput
    from xreid.models.xreid import XReID

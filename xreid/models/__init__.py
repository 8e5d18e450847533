"""xreid.models: the X-ReID model (backbone + MII/CII heads + BNNeck classifiers + memory).

* :class:`XReID` (options :class:`XReIDConfig`, presets :data:`PRESETS`) ->
  :class:`XReIDOutput`;
* :class:`BNNeck` and :class:`IdentityClassifier`: the heads.

Importing this package needs torch only (a backbone is built by :mod:`xreid.backbones`).
See ``docs/model.md``.
"""

from __future__ import annotations

from xreid.models.heads import BNNeck, IdentityClassifier
from xreid.models.output import XReIDOutput
from xreid.models.xreid import (
    CMCL_BRANCHES,
    CMCL_DIRECTIONS,
    CMCL_STOP_GRADIENTS,
    PRESETS,
    XReID,
    XReIDConfig,
)

__all__ = [
    "CMCL_BRANCHES",
    "CMCL_DIRECTIONS",
    "CMCL_STOP_GRADIENTS",
    "PRESETS",
    "BNNeck",
    "IdentityClassifier",
    "XReID",
    "XReIDConfig",
    "XReIDOutput",
]

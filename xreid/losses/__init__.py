"""xreid.losses: the training objective of X-ReID (Eq. 10).

* :class:`PrototypeCollaborationLoss` (``CPCL``, Eqs. 3-4) and
  :func:`prototype_collaboration_loss`;
* :class:`CrossModalConstraintLoss` (``CMCL``, Eq. 9);
* :class:`TripletLoss` (batch-hard, :func:`batch_hard_triplet_loss`, :func:`euclidean_dist`);
* :class:`XReIDLoss` -> :class:`LossOutput`: the weighted sum of the terms in :data:`TERMS`.

Importing this package needs torch only. See ``docs/losses_and_memory.md``.
"""

from __future__ import annotations

from xreid.losses.cmcl import CMCL, CrossModalConstraintLoss
from xreid.losses.config import MEMORY_INITS, LossConfig
from xreid.losses.cpcl import (
    CPCL,
    CPCL_FORMS,
    PrototypeCollaborationLoss,
    prototype_collaboration_loss,
)
from xreid.losses.triplet import TripletLoss, batch_hard_triplet_loss, euclidean_dist
from xreid.losses.xreid_loss import LOSS_PRESETS, TERMS, LossOutput, XReIDLoss

__all__ = [
    "CMCL",
    "CPCL",
    "CPCL_FORMS",
    "LOSS_PRESETS",
    "MEMORY_INITS",
    "TERMS",
    "CrossModalConstraintLoss",
    "LossConfig",
    "LossOutput",
    "PrototypeCollaborationLoss",
    "TripletLoss",
    "XReIDLoss",
    "batch_hard_triplet_loss",
    "euclidean_dist",
    "prototype_collaboration_loss",
]

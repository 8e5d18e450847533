"""The ``loss`` section of a training configuration: Eq. 10's weights and the CPC memory's
initialisation.

:class:`LossConfig` holds the keywords of :class:`~xreid.XReIDLoss` (``frame_id`` as the
weight summed over the T frames, divided by T when the loss is built: :meth:`LossConfig.build`)
and how the trainer fills the prototype memory (``memory_init``: :data:`MEMORY_INITS`).
The memory's own update options (momentum, temperature, hard selection) belong to the model
(:class:`~xreid.models.XReIDConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass

from xreid._config import check_choice, check_field_types, check_range, option
from xreid.losses.xreid_loss import XReIDLoss

__all__ = ["MEMORY_INITS", "LossConfig"]

MEMORY_INITS: tuple[str, ...] = ("once", "every_epoch")
"""When the trainer (re)builds the CPC prototypes: before the first epoch (the paper) or before
every epoch (the authors' code)."""


@dataclass
class LossConfig:
    """Eq. 10's weights and the CPC memory's initialisation.

    Attributes:
        cpcl: weight of CPCL (Eqs. 3-4).
        triplet: weight of the triplet loss.
        id: weight of the identity cross-entropy.
        cmcl: weight of CMCL (Eq. 9).
        frame_id: weight of the frame-level identity loss, summed over the T frames.
        frame_id_per_frame: the frame-level weight per frame; when set it replaces
            ``frame_id / T`` (the flat ``frame_id_weight`` of earlier versions).
        margin: triplet margin.
        label_smoothing: label smoothing of the identity cross-entropies, in [0, 1).
        memory_init: CPC memory: once (paper) | every_epoch (authors' code).
        memory_batch_size: batch size of the memory feature extraction.
    """

    cpcl: float = 1.0
    triplet: float = 1.0
    id: float = 1.0
    cmcl: float = 1.0
    frame_id: float = 0.0
    frame_id_per_frame: float | None = None
    margin: float = 0.3
    label_smoothing: float = 0.0
    memory_init: str = "once"
    memory_batch_size: int = option(32, resumable=True)

    def validate(self) -> None:
        """``ValueError`` naming the first invalid option."""
        check_field_types(self)
        for name in ("cpcl", "triplet", "id", "cmcl", "frame_id", "margin"):
            check_range(name, getattr(self, name), 0.0)
        check_range("frame_id_per_frame", self.frame_id_per_frame, 0.0, allow_none=True)
        check_range("label_smoothing", self.label_smoothing, 0.0, 1.0, hi_open=True)
        check_choice("memory_init", self.memory_init, MEMORY_INITS)
        check_range("memory_batch_size", self.memory_batch_size, 1)

    def build(self, num_frames: int) -> XReIDLoss:
        """The :class:`~xreid.XReIDLoss` of these weights for clips of ``num_frames`` frames."""
        per_frame = self.frame_id_per_frame
        frame_id = self.frame_id / num_frames if per_frame is None else per_frame
        return XReIDLoss(cpcl=self.cpcl, triplet=self.triplet, id=self.id, cmcl=self.cmcl,
                         frame_id=frame_id, margin=self.margin,
                         label_smoothing=self.label_smoothing)

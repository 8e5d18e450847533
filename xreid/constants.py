"""Shared constants: modality codes and normalisation statistics."""

from __future__ import annotations

VISIBLE: int = 0
"""Modality code of visible (RGB) clips."""
INFRARED: int = 1
"""Modality code of infrared clips."""

DIRECTIONS: tuple[str, str] = ("i2v", "v2i")
"""Cross-modal retrieval directions: infrared query -> visible gallery, and the reverse
(re-exported by :mod:`xreid.data` and :mod:`xreid.metrics`)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

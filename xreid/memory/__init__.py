"""xreid.memory: the cross-modality prototype memories of CPC (Eqs. 1-2).

* :class:`CrossModalPrototypeMemory` (``CPCMemory``): the visible and infrared prototype
  tables, their hard-sample momentum update and the CPCL logits;
* :func:`build_memory`: initialises the tables from a model's features over a loader
  (:func:`extract_memory_features`, :func:`default_feature_fn`, :data:`FeatureFn`);
* :func:`ignore_memory_buffers_in_ddp`: keeps the tables out of DDP's buffer broadcast.

Importing this package needs torch only. See ``docs/losses_and_memory.md``.
"""

from __future__ import annotations

from xreid.memory.build import FeatureFn, build_memory, default_feature_fn, extract_memory_features
from xreid.memory.distributed import ignore_memory_buffers_in_ddp
from xreid.memory.prototype_memory import CPCMemory, CrossModalPrototypeMemory, HardSelection

__all__ = [
    "CPCMemory",
    "CrossModalPrototypeMemory",
    "FeatureFn",
    "HardSelection",
    "build_memory",
    "default_feature_fn",
    "extract_memory_features",
    "ignore_memory_buffers_in_ddp",
]

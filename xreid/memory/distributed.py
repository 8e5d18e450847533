"""DDP and the prototype memory: keep the memory's buffers out of DDP's synchronisation.

The prototype memory (:class:`~xreid.memory.CrossModalPrototypeMemory`) keeps every rank's
prototypes identical by construction: ``update`` all-gathers the batch and every rank runs
the same deterministic update on the same global batch. DDP's default per-step buffer
broadcast from rank 0 is then useless work (``2 * C * d * 4`` bytes per step), so
:func:`ignore_memory_buffers_in_ddp` removes the memory buffers from DDP's synchronisation.
"""

from __future__ import annotations

from torch import nn

from xreid.memory.prototype_memory import CrossModalPrototypeMemory

__all__ = ["ignore_memory_buffers_in_ddp"]


def ignore_memory_buffers_in_ddp(model: nn.Module) -> list[str]:
    """Exclude every prototype memory's buffers in ``model`` from DDP synchronisation.

    Call on the plain model **before** wrapping it in
    :class:`~torch.nn.parallel.DistributedDataParallel`. It finds every
    :class:`~xreid.CrossModalPrototypeMemory` submodule and registers its ``visible`` and
    ``infrared`` buffers (fully qualified names, e.g. ``"memory.visible"``) through
    ``DistributedDataParallel._set_params_and_buffers_to_ignore_for_model``, merged with any
    names registered before. DDP then neither broadcasts them from rank 0 at construction nor
    at every forward; the memory keeps ranks identical itself (``initialize`` all-reduces,
    ``update`` all-gathers). Returns the names added. Works without an initialised process
    group (it only tags the model).
    """
    from torch.nn.parallel import DistributedDataParallel

    names: list[str] = []
    for prefix, module in model.named_modules():
        if isinstance(module, CrossModalPrototypeMemory):
            for buf in ("visible", "infrared"):
                names.append(f"{prefix}.{buf}" if prefix else buf)
    previous = list(getattr(model, "_ddp_params_and_buffers_to_ignore", ()))
    merged = previous + [n for n in names if n not in previous]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, merged)
    return names

"""Small ``torch.distributed`` helpers used by the prototype memory and the training loop.

Every helper degrades gracefully to a single process: when ``torch.distributed`` is not
available or not initialised, ``is_distributed()`` is False, the rank is 0, the world size is
1 and the gathers return their inputs.

The prototype memory (:class:`xreid.CrossModalPrototypeMemory`) keeps every rank's
prototypes identical by construction: ``update`` all-gathers the batch and every rank runs
the same deterministic update on the same global batch. DDP's default per-step buffer
broadcast from rank 0 is then useless work (``2 * C * d * 4`` bytes per step), so
:func:`ignore_memory_buffers_in_ddp` removes the memory buffers from DDP's synchronisation.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "all_gather_variable",
    "get_rank",
    "get_world_size",
    "ignore_memory_buffers_in_ddp",
    "is_distributed",
]


def is_distributed() -> bool:
    """True when ``torch.distributed`` is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank(group: dist.ProcessGroup | None = None) -> int:
    """Rank of this process in ``group`` (0 when not distributed)."""
    return dist.get_rank(group) if is_distributed() else 0


def get_world_size(group: dist.ProcessGroup | None = None) -> int:
    """Number of processes in ``group`` (1 when not distributed)."""
    return dist.get_world_size(group) if is_distributed() else 1


def all_gather_variable(
    *tensors: torch.Tensor, group: dist.ProcessGroup | None = None
) -> tuple[torch.Tensor, ...]:
    """All-gather tensors whose first dimension may differ between ranks.

    Every tensor of one call must have the same length ``n_r`` along dim 0 on a given rank
    (e.g. features (n_r, d), labels (n_r,), modality (n_r,)); ``n_r`` may differ across ranks
    and may be 0. The sizes are gathered first (one small collective and one host
    synchronisation), each tensor is zero-padded to the largest size, gathered, and the padding
    is dropped. The result is the rank-major concatenation ``cat([t_rank0, t_rank1, ...])``,
    identical on every rank. No autograd: the outputs are detached.

    Single process: returns the inputs unchanged.
    """
    if not tensors:
        return ()
    world = get_world_size(group)
    if world == 1:
        return tensors
    n = tensors[0].shape[0]
    for t in tensors[1:]:
        if t.shape[0] != n:
            raise ValueError(
                f"tensors: expected the same length along dim 0, got {t.shape[0]} and {n}"
            )
    device = tensors[0].device
    size = torch.tensor([n], dtype=torch.long, device=device)
    sizes_t = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes_t, size, group=group)
    sizes: list[int] = torch.cat(sizes_t).tolist()  # the one host synchronisation
    max_n = max(sizes)
    if max_n == 0:
        return tuple(t.detach() for t in tensors)
    out: list[torch.Tensor] = []
    for t in tensors:
        t = t.detach().contiguous()
        if n < max_n:
            pad = t.new_zeros((max_n - n, *t.shape[1:]))
            t = torch.cat([t, pad], dim=0)
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t, group=group)
        out.append(torch.cat([p[:s] for p, s in zip(parts, sizes)], dim=0))
    return tuple(out)


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

    from xreid.memory.prototype_memory import CrossModalPrototypeMemory

    names: list[str] = []
    for prefix, module in model.named_modules():
        if isinstance(module, CrossModalPrototypeMemory):
            for buf in ("visible", "infrared"):
                names.append(f"{prefix}.{buf}" if prefix else buf)
    previous = list(getattr(model, "_ddp_params_and_buffers_to_ignore", ()))
    merged = previous + [n for n in names if n not in previous]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, merged)
    return names

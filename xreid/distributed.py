"""Small ``torch.distributed`` helpers used by the prototype memory and the training loop.

Every helper degrades gracefully to a single process: when ``torch.distributed`` is not
available or not initialised, ``is_distributed()`` is False, the rank is 0, the world size is
1 and the gathers return their inputs.

This module knows nothing of the model's parts; the memory-aware DDP helper lives with the
memory (:func:`xreid.memory.ignore_memory_buffers_in_ddp`).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_variable",
    "get_rank",
    "get_world_size",
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

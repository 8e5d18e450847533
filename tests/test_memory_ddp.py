"""The CPC memory under torch.distributed: 2 spawned CPU processes with gloo.

One spawn runs every distributed check (a spawn costs a few seconds on 2 cores):

- ``update`` with different per-rank batch sizes (including an empty one) leaves the
  memories bit-identical across ranks and bit-identical to a single-process update on the
  rank-major concatenated batch;
- ``initialize`` from full copies (or everything on one rank, an empty shard on the other)
  is bit-identical to a single process, from disjoint shards identical across ranks and
  close to a single process; a bad value on one rank makes every rank raise;
- a bad value on one rank makes *every* rank raise ValueError (no deadlock);
- ``ignore_memory_buffers_in_ddp`` keeps DDP from overwriting the memory with rank 0's copy
  (and without it DDP does overwrite it, which shows that the check can fail).

Workers end through ``distributed_teardown.leave_group_and_exit`` (why: its docstring).
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from distributed_teardown import leave_group_and_exit
from torch import nn

from xreid import CrossModalPrototypeMemory
from xreid.distributed import (
    all_gather_variable,
    get_rank,
    get_world_size,
    is_distributed,
)
from xreid.memory import ignore_memory_buffers_in_ddp

C, D = 7, 6
WORLD = 2
# per step: (rank 0 batch size, rank 1 batch size)
STEP_SIZES = [(5, 8), (0, 3), (6, 6), (4, 1), (3, 0)]


def init_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    n = 4 * C
    return torch.randn(n, D, generator=g), torch.arange(n) % C, (torch.arange(n) // C) % 2


def step_batch(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The global (rank-major) batch of ``step``."""
    g = torch.Generator().manual_seed(1000 + step)
    n = sum(STEP_SIZES[step])
    feats = torch.randn(n, D, generator=g)
    labels = torch.randint(0, C, (n,), generator=g)
    modality = torch.randint(0, 2, (n,), generator=g)
    if n >= 2:
        feats[1], labels[1], modality[1] = feats[0], labels[0], modality[0]  # duplicate
    return feats, labels, modality


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(D, 2)
        self.memory = CrossModalPrototypeMemory(C, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    torch.set_num_threads(1)
    result: dict[str, object] = {}
    try:
        assert is_distributed() and get_rank() == rank and get_world_size() == WORLD

        # all_gather_variable: variable sizes, rank-major order
        local = torch.arange(rank + 2, dtype=torch.float32)
        (gathered,) = all_gather_variable(local)
        result["gathered"] = gathered

        # initialise from full copies (sums and counts are all-reduced: 2s / 2n == s / n)
        feats, labels, modality = init_data()
        mem = CrossModalPrototypeMemory(C, D, hard_selection="cross_modal")
        mem.initialize(feats, labels, modality)
        result["init_full"] = (mem.visible.clone(), mem.infrared.clone())

        # initialise from disjoint shards
        shard = CrossModalPrototypeMemory(C, D)
        shard.initialize(feats[rank::WORLD], labels[rank::WORLD], modality[rank::WORLD])
        result["init_shard"] = (shard.visible.clone(), shard.infrared.clone())

        # initialise with everything on rank 0 and an empty shard on rank 1
        lopsided = CrossModalPrototypeMemory(C, D)
        sl = slice(None) if rank == 0 else slice(0, 0)
        lopsided.initialize(feats[sl], labels[sl], modality[sl])
        result["init_lopsided"] = (lopsided.visible.clone(), lopsided.infrared.clone())

        # a bad label on rank 1 only: initialize raises on both ranks
        bad_labels = labels.clone()
        if rank == 1:
            bad_labels[0] = C
        try:
            CrossModalPrototypeMemory(C, D).initialize(feats, bad_labels, modality)
            result["init_bad_raised"] = False
        except ValueError:
            result["init_bad_raised"] = True

        # updates with different per-rank batch sizes (one rank empty at steps 1 and 4)
        for hard in ("cross_modal", "any"):
            mem.hard_selection = hard
            mem.load_state_dict(dict(zip(("visible", "infrared"), result["init_full"])))
            for step, sizes in enumerate(STEP_SIZES):
                f, y, m = step_batch(step)
                start = sum(sizes[:rank])
                sl = slice(start, start + sizes[rank])
                mem.update(f[sl], y[sl], m[sl])
            result[f"updated_{hard}"] = (mem.visible.clone(), mem.infrared.clone())

        # a bad label on rank 1 only: both ranks raise (checked after the gather)
        f, y, m = step_batch(0)
        if rank == 1:
            y = y.clone()
            y[0] = C
        before = mem.visible.clone()
        try:
            mem.update(f, y, m)
            result["bad_raised"] = False
        except ValueError as err:
            result["bad_raised"] = "labels" in str(err)
        result["bad_untouched"] = torch.equal(before, mem.visible)

        # DDP: the ignore helper keeps rank-specific memories; without it DDP broadcasts
        for use_helper in (True, False):
            model = _Net()
            model.memory.visible.fill_(float(rank))
            if use_helper:
                ignore_memory_buffers_in_ddp(model)
            ddp = nn.parallel.DistributedDataParallel(model)
            ddp(torch.randn(3, D)).sum().backward()
            ddp(torch.randn(3, D)).sum().backward()
            result[f"ddp_helper_{use_helper}"] = float(model.memory.visible.mean())
            del ddp, model  # its reducer must not outlive the process group
    finally:
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    leave_group_and_exit()  # only on success: an exception above fails the spawn


def _single_process_reference(hard: str) -> tuple[torch.Tensor, torch.Tensor]:
    mem = CrossModalPrototypeMemory(C, D, hard_selection=hard)
    mem.initialize(*init_data())
    for step in range(len(STEP_SIZES)):
        mem.update(*step_batch(step))
    return mem.visible, mem.infrared


@pytest.mark.distributed
def test_memory_identical_across_ranks_and_to_single_process(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    init_file = tmp_path / "store"
    mp.spawn(_worker, args=(str(init_file), str(tmp_path)), nprocs=WORLD, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")

    expected_gather = torch.tensor([0.0, 1.0, 0.0, 1.0, 2.0])
    assert torch.equal(r0["gathered"], expected_gather)
    assert torch.equal(r1["gathered"], expected_gather)

    single = CrossModalPrototypeMemory(C, D)
    single.initialize(*init_data())
    for r in (r0, r1):
        assert torch.equal(r["init_full"][0], single.visible)
        assert torch.equal(r["init_full"][1], single.infrared)
        torch.testing.assert_close(r["init_shard"][0], single.visible)
        torch.testing.assert_close(r["init_shard"][1], single.infrared)
    assert torch.equal(r0["init_shard"][0], r1["init_shard"][0])
    for r in (r0, r1):
        assert torch.equal(r["init_lopsided"][0], single.visible)
        assert torch.equal(r["init_lopsided"][1], single.infrared)
        assert r["init_bad_raised"] is True

    for hard in ("cross_modal", "any"):
        ref_vis, ref_ir = _single_process_reference(hard)
        for r in (r0, r1):
            vis, ir = r[f"updated_{hard}"]
            assert torch.equal(vis, ref_vis), hard  # bitwise
            assert torch.equal(ir, ref_ir), hard
        assert not torch.equal(ref_vis, single.visible)  # the updates did something

    for r in (r0, r1):
        assert r["bad_raised"] is True
        assert r["bad_untouched"] is True

    # with the helper each rank keeps its own buffer; without it rank 0's value wins
    assert (r0["ddp_helper_True"], r1["ddp_helper_True"]) == (0.0, 1.0)
    assert (r0["ddp_helper_False"], r1["ddp_helper_False"]) == (0.0, 0.0)

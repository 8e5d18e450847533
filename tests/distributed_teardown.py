"""Ending a spawned ``torch.distributed`` test worker without the interpreter-teardown abort.

When a worker returns normally, Python finalises the interpreter while the gloo process
group's C++ threads may still hold objects (a DDP reducer's pending work, tensors). Destroying
them then can abort the process with ``terminate called without an active exception``
(SIGABRT) after the worker has already written its results: seen once in CI on
``test_memory_ddp.py`` (2 cores, full suite), never locally in 40 repetitions. It says nothing
about the code under test, so the workers leave the group explicitly and end with
``os._exit(0)``, which skips finalisation. A worker that raises does not reach this: its
exception still fails the spawn (non-zero exit, traceback).
"""

from __future__ import annotations

import gc
import os
import sys
from typing import NoReturn

import torch.distributed as dist


def leave_group_and_exit() -> NoReturn:
    """Collect garbage, wait for every rank, leave the process group, exit with status 0."""
    gc.collect()  # drop DDP reducers and gloo work objects while the interpreter is alive
    if dist.is_initialized():
        dist.barrier()  # no rank tears gloo down while another still talks to it
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

"""Shared timing protocol for the ratio benchmarks.

Fixed thread count, warm-up, then ``rounds`` interleaved rounds (candidate and reference
alternate, so machine noise hits both alike); the reported time is the median per round and
the ratio is candidate / reference of the medians.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def set_threads(n: int) -> None:
    torch.set_num_threads(n)


def _time_once(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def compare(
    candidate: Callable[[], object],
    reference: Callable[[], object],
    *,
    rounds: int = 7,
    warmup: int = 2,
    device: str = "cpu",
) -> tuple[float, float, float]:
    """Return (candidate median s, reference median s, ratio candidate/reference)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        candidate()
        reference()
    tc: list[float] = []
    tr: list[float] = []
    for i in range(rounds):
        order = (candidate, reference) if i % 2 == 0 else (reference, candidate)
        for fn in order:
            (tc if fn is candidate else tr).append(_time_once(fn, sync))
    mc, mr = statistics.median(tc), statistics.median(tr)
    return mc, mr, mc / mr


def print_table(rows: list[tuple[str, float, float, float, str]], title: str) -> None:
    """rows: (name, candidate s, reference s, ratio, target)."""
    print(f"\n{title}")
    header = f"{'case':<44} {'ours (ms)':>10} {'ref (ms)':>10} {'ratio':>7}  target"
    print(header)
    print("-" * len(header))
    for name, c, r, ratio, target in rows:
        print(f"{name:<44} {c * 1e3:>10.2f} {r * 1e3:>10.2f} {ratio:>7.3f}  {target}")

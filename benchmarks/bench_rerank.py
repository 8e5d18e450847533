"""Benchmark: the cost of ``xreid search --rerank`` (k-reciprocal re-ranking).

For each size N = Q + G (Q = N / 4 queries, G = 3N / 4 gallery entries, 256-d synthetic
clustered embeddings, seed 0), one child process runs
:func:`xreid.inference.reranked_distances` with k1 = 20, k2 = 6, lambda = 0.3 on the CPU
and reports its wall time and the growth of the process's peak resident memory
(``ru_maxrss`` after minus before the call). Also the time of the plain exact distances and
top-10 for comparison.

    python benchmarks/bench_rerank.py --sizes 1000 2000 4000 8000 --threads 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def child(n: int, threads: int) -> dict[str, float]:
    from xreid.inference import exact_search, reranked_distances

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(max(n // 10, 1), 256, generator=g)
    x = centres[torch.randint(0, centres.shape[0], (n,), generator=g)]
    x = x + 0.8 * torch.randn(n, 256, generator=g)
    q, gal = x[: n // 4], x[n // 4 :]
    t0 = time.perf_counter()
    exact_search(q, gal, 10)
    t_exact = time.perf_counter() - t0
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    reranked_distances(q, gal, k1=20, k2=6, lambda_value=0.3)
    t_rr = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"n": n, "exact_s": t_exact, "rerank_s": t_rr, "rerank_peak_mb": (rss1 - rss0) / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ns = p.parse_args()
    if ns.child is not None:
        print(json.dumps(child(ns.child, ns.threads)))
        return
    print(f"{'Q+G':>7} {'exact top-10':>13} {'rerank':>9} {'rerank peak RSS':>16}")
    for n in ns.sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--threads",
                              str(ns.threads)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{n:>7} {r['exact_s']:>12.3f}s {r['rerank_s']:>8.2f}s "
              f"{r['rerank_peak_mb']:>13.0f} MB", flush=True)


if __name__ == "__main__":
    main()

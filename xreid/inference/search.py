"""Nearest-neighbour search of query embeddings in a gallery.

Distances are Euclidean between L2-normalised embeddings, as in the evaluation
(``xreid.metrics.compute_distance(..., "euclidean", normalize=True)``); on unit vectors
``d = sqrt(2 - 2 q.g)``, so ranking by distance is ranking by inner product.

* :func:`exact_search`: exact top-k, a chunk of queries at a time on any device, so the
  ``(Q, G)`` matrix is never held whole.
* :func:`reranked_distances`: k-reciprocal re-ranking (:func:`xreid.metrics.re_ranking`) of
  the query x gallery distances; it needs the three full matrices (Q x G, Q x Q, G x G), so
  its memory grows as ``(Q + G)^2``; :func:`top_k_of` ranks any ``(Q, G)`` distance matrix.
* :func:`faiss_search`: an inverted-file index (faiss ``IndexIVFFlat``, inner product) for
  large galleries (the ``xreid[search]`` extra); approximate: it scans ``nprobe`` of
  ``nlist`` cells. ``benchmarks/bench_search.py`` measures its recall@k against exact search.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from xreid._validation import check_positive_int

__all__ = ["SearchResult", "exact_search", "faiss_search", "reranked_distances", "search",
           "top_k_of"]


class SearchResult(NamedTuple):
    """``indices`` int64 ``(Q, k)`` into the gallery, ``distances`` float32 ``(Q, k)``,
    ascending per row."""

    indices: torch.Tensor
    distances: torch.Tensor


def _check(query: torch.Tensor, gallery: torch.Tensor, top_k: int) -> int:
    for name, x in (("query", query), ("gallery", gallery)):
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            raise ValueError(f"{name}: expected a 2-D (N, E) tensor, got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        if x.shape[0] == 0:
            raise ValueError(f"{name}: expected at least one embedding, got none")
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"gallery: expected embeddings of size {query.shape[1]} (the query's), "
                         f"got {gallery.shape[1]}")
    check_positive_int(top_k, "top_k")
    return min(top_k, gallery.shape[0])


@torch.no_grad()
def exact_search(query: torch.Tensor, gallery: torch.Tensor, top_k: int = 10, *,
                 device: str | torch.device | None = None, chunk_size: int | None = None
                 ) -> SearchResult:
    """Exact top-k, smallest distance first (equal distances in gallery order). CPU results.

    ``chunk_size`` queries are scored at once (default: about ``2**24 / G``, so the similarity
    block stays near 64 MB whatever the gallery size).
    """
    k = _check(query, gallery, top_k)
    dev = torch.device(device) if device is not None else query.device
    G = gallery.shape[0]
    if chunk_size is None:
        chunk_size = max(1, min(4096, 2**24 // G))
    g = F.normalize(gallery.to(dev, torch.float32), dim=1)
    idx_out, dist_out = [], []
    for s in range(0, query.shape[0], chunk_size):
        q = F.normalize(query[s:s + chunk_size].to(dev, torch.float32), dim=1)
        values, order = torch.topk(q @ g.t(), k, dim=1)
        # order the k winners by (similarity desc, gallery index asc)
        by_index = torch.argsort(order, dim=1)
        values, order = values.gather(1, by_index), order.gather(1, by_index)
        resort = torch.argsort(values, dim=1, descending=True, stable=True)
        values, order = values.gather(1, resort), order.gather(1, resort)
        dist = (2.0 - 2.0 * values).clamp_(min=0.0).sqrt_()
        idx_out.append(order.cpu())
        dist_out.append(dist.cpu())
    return SearchResult(torch.cat(idx_out), torch.cat(dist_out))


def faiss_search(query: torch.Tensor, gallery: torch.Tensor, top_k: int = 10, *,
                 nlist: int | None = None, nprobe: int = 16, seed: int = 0) -> SearchResult:
    """Approximate top-k with a faiss ``IndexIVFFlat`` (inner product on unit vectors).

    ``nlist`` cells (default ``4 * sqrt(G)``, at most ``G // 39``, at least 1) are trained by
    k-means on the gallery; each query scans ``nprobe`` of them.
    """
    try:
        import faiss
    except ImportError as exc:
        raise ImportError("--index faiss needs faiss: pip install 'xreid[search]'") from exc
    k = _check(query, gallery, top_k)
    g = F.normalize(gallery.detach().float().cpu(), dim=1).numpy()
    q = F.normalize(query.detach().float().cpu(), dim=1).numpy()
    G, E = g.shape
    if nlist is None:
        nlist = max(1, min(int(4 * math.sqrt(G)), G // 39))
    quantizer = faiss.IndexFlatIP(E)
    index: Any = faiss.IndexIVFFlat(quantizer, E, int(nlist), faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(g)
    index.add(g)
    index.nprobe = min(int(nprobe), int(nlist))
    sims, ids = index.search(q, k)
    sims_t = torch.from_numpy(sims)
    dist = (2.0 - 2.0 * sims_t).clamp_(min=0.0).sqrt_()
    dist[torch.from_numpy(ids) < 0] = float("inf")  # fewer than k found in the probed cells
    return SearchResult(torch.from_numpy(ids).long(), dist.float())


def search(query: torch.Tensor, gallery: torch.Tensor, top_k: int = 10, *,
           index: str = "exact", device: str | torch.device | None = None,
           **options: Any) -> SearchResult:
    """:func:`exact_search` (``index="exact"``) or :func:`faiss_search` (``"faiss"``)."""
    if index == "exact":
        return exact_search(query, gallery, top_k, device=device, **options)
    if index == "faiss":
        return faiss_search(query, gallery, top_k, **options)
    raise ValueError(f"index: expected 'exact' or 'faiss', got {index!r}")


def top_k_of(distances: torch.Tensor, top_k: int) -> SearchResult:
    """Top-k of a ``(Q, G)`` distance matrix, smallest first, equal distances in gallery
    order (a stable sort)."""
    if not isinstance(distances, torch.Tensor) or distances.dim() != 2:
        raise ValueError(f"distances: expected a 2-D (Q, G) tensor, got "
                         f"{getattr(distances, 'shape', type(distances).__name__)}")
    check_positive_int(top_k, "top_k")
    k = min(top_k, distances.shape[1])
    order = torch.argsort(distances, dim=1, stable=True)[:, :k]
    return SearchResult(order.cpu(), distances.gather(1, order).float().cpu())


@torch.no_grad()
def reranked_distances(query: torch.Tensor, gallery: torch.Tensor, *, k1: int = 20,
                       k2: int = 6, lambda_value: float = 0.3,
                       device: str | torch.device | None = None,
                       chunk_size: int = 256) -> torch.Tensor:
    """k-reciprocal re-ranked ``(Q, G)`` distances (exact, computed ``chunk_size`` rows at a
    time) from the Euclidean distances between L2-normalised embeddings.

    Cost: dense ``(Q + G)^2`` float32 matrices; ``benchmarks/bench_rerank.py`` measured a
    peak of about ``14 (Q + G)^2`` bytes (0.9 GB at ``Q + G = 8000``).
    """
    from xreid.metrics import compute_distance, re_ranking

    _check(query, gallery, 1)
    dev = torch.device(device) if device is not None else query.device
    q, g = query.to(dev, torch.float32), gallery.to(dev, torch.float32)
    qg = compute_distance(q, g, "euclidean", normalize=True)
    qq = compute_distance(q, q, "euclidean", normalize=True)
    gg = compute_distance(g, g, "euclidean", normalize=True)
    out = re_ranking(qg, qq, gg, k1=k1, k2=k2, lambda_value=lambda_value,
                     chunk_size=chunk_size)
    return out.cpu()

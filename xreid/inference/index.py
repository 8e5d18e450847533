"""A persistent faiss index of a gallery: build once, search many times.

File format: one ``.safetensors`` file (``format`` = ``xreid-index-v1`` in its metadata)
holding the serialised faiss ``IndexIVFFlat`` (inner product on L2-normalised embeddings;
tensor ``faiss``, uint8), the gallery's embeddings, pid, camera and modality tensors, and as
metadata the tracklet names, sources, the embeddings file's metadata (checkpoint hash,
preprocessing) and the build report (``build``: ``nlist``, ``nprobe``, training size, the
held-out sample and recall@k against exact search). Nothing in it is executed on load.

Recall at build time: a random held-out sample of gallery embeddings (``holdout`` of them,
seed ``seed``) is left out of the k-means training of the cells; each is then searched with
the index and exactly, its own entry removed from both lists, and recall@k is the mean
fraction of the exact top-k that the index returns.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xreid._validation import check_positive_int
from xreid.inference.embeddings import EmbeddingSet, read_tagged_safetensors
from xreid.inference.search import SearchResult, exact_search
from xreid.output_files import atomic_write

__all__ = ["INDEX_FORMAT", "GalleryIndex", "build_index", "is_index_file", "load_index"]

INDEX_FORMAT = "xreid-index-v1"


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise ImportError("the gallery index needs faiss: pip install 'xreid[search]'") from exc
    return faiss


@dataclass
class GalleryIndex:
    """A loaded index: ``gallery`` (the :class:`EmbeddingSet` it was built from), the faiss
    index and the ``build`` report; :meth:`search` returns a :class:`SearchResult`."""

    gallery: EmbeddingSet
    index: Any
    build: dict[str, Any] = field(default_factory=dict)

    def search(self, query: torch.Tensor, top_k: int = 10, *, nprobe: int | None = None
               ) -> SearchResult:
        """Approximate top-k (Euclidean distance between unit vectors, ascending)."""
        check_positive_int(top_k, "top_k")
        if query.dim() != 2 or query.shape[1] != self.gallery.dim:
            raise ValueError(f"query: expected (Q, {self.gallery.dim}) embeddings, got "
                             f"{tuple(query.shape)}")
        if hasattr(self.index, "nprobe"):
            self.index.nprobe = min(int(nprobe or self.build.get("nprobe", 16)),
                                    int(self.build.get("nlist", 1)))
        k = min(top_k, len(self.gallery))
        q = F.normalize(query.detach().float().cpu(), dim=1).numpy()
        sims, ids = self.index.search(q, k)
        dist = (2.0 - 2.0 * torch.from_numpy(sims)).clamp_(min=0.0).sqrt_()
        dist[torch.from_numpy(ids) < 0] = float("inf")
        return SearchResult(torch.from_numpy(ids).long(), dist.float())


def _recall(index: Any, g: np.ndarray, held: np.ndarray, k: int) -> float:
    """Mean recall@k of ``index`` against exact search for the gallery rows ``held`` used
    as queries, each with its own entry removed from both result lists."""
    queries = torch.from_numpy(g[held])
    gallery = torch.from_numpy(g)
    kk = min(k + 1, len(g))
    exact = exact_search(queries, gallery, kk).indices.numpy()
    _, approx = index.search(g[held], kk)
    total = 0.0
    for row, own in enumerate(held):
        e = [i for i in exact[row] if i != own][:k]
        a = {int(i) for i in approx[row] if i != own and i >= 0}
        total += len(a.intersection(e)) / max(1, len(e))
    return total / max(1, len(held))


def build_index(gallery: EmbeddingSet, path: str | Path, *, nlist: int | None = None,
                nprobe: int = 16, holdout: int = 1000, recall_k: int = 10,
                seed: int = 0) -> GalleryIndex:
    """Build an ``IndexIVFFlat`` over ``gallery``, measure its recall, write it to ``path``.

    Args:
        nlist: cells (default ``4 sqrt(G)``; at most one per 39 training points, as faiss
            asks; a single cell is built as an exact ``IndexFlatIP``).
        nprobe: cells scanned per query (stored; a search may override it).
        holdout: size of the held-out recall sample (at most ``G // 10``, at least 1).
        recall_k: the k of the reported recall@k.
    """
    from safetensors.torch import save

    faiss = _faiss()
    for name, v in (("nprobe", nprobe), ("holdout", holdout), ("recall_k", recall_k)):
        check_positive_int(v, name)
    G, E = gallery.embeddings.shape
    if G < 2:
        raise ValueError(f"gallery: expected at least 2 embeddings to index, got {G}")
    g = np.ascontiguousarray(F.normalize(gallery.embeddings.float(), dim=1).numpy())
    if nlist is None:
        nlist = max(1, min(int(4 * math.sqrt(G)), G // 39))
    check_positive_int(nlist, "nlist")
    rng = np.random.default_rng(seed)
    n_held = max(1, min(holdout, G // 10))
    held = np.sort(rng.choice(G, size=n_held, replace=False))
    train = np.setdiff1d(np.arange(G), held)
    nlist = max(1, min(int(nlist), len(train) // 39))  # faiss wants >= 39 points per cell
    if nlist == 1:  # one cell is a flat (exact) index; no k-means needed
        index = faiss.IndexFlatIP(E)
        kind, probe = "IndexFlatIP", 1
    else:
        quantizer = faiss.IndexFlatIP(E)
        index = faiss.IndexIVFFlat(quantizer, E, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(g[train])
        index.nprobe = probe = min(int(nprobe), nlist)
        kind = "IndexIVFFlat"
    index.add(g)
    recall = _recall(index, g, held, recall_k)
    build = {"type": kind, "metric": "inner product on L2-normalised embeddings",
             "nlist": nlist, "nprobe": probe, "gallery_size": G, "dim": E,
             "trained_on": len(train), "holdout": int(n_held), "seed": seed,
             "recall_k": recall_k, f"recall@{recall_k}": round(recall, 4)}
    blob = faiss.serialize_index(index)
    tensors = {"faiss": torch.from_numpy(np.asarray(blob, dtype=np.uint8).copy()),
               "embeddings": gallery.embeddings.float().contiguous(),
               "pid": gallery.pids.long().contiguous(),
               "camera": gallery.cameras.long().contiguous(),
               "modality": gallery.modalities.long().contiguous()}
    meta = {"format": INDEX_FORMAT, "names": json.dumps(gallery.names),
            "sources": json.dumps(gallery.sources), "build": json.dumps(build),
            "gallery_meta": json.dumps(gallery.meta)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = save(tensors, metadata=meta)
    atomic_write(path, lambda fh: fh.write(data), what="--output")
    return GalleryIndex(gallery, index, build)


def is_index_file(path: str | Path) -> bool:
    """True when ``path`` is a safetensors file written by :func:`build_index` (reads only
    its header; faiss is not needed)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return (fh.metadata() or {}).get("format") == INDEX_FORMAT
    except Exception:
        return False


def load_index(path: str | Path) -> GalleryIndex:
    """Read an index written by :func:`build_index` (``xreid index build``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an xreid index file (the file is named).
    """
    faiss = _faiss()
    tensors, meta = read_tagged_safetensors(Path(path), INDEX_FORMAT, "index")
    try:
        gallery = EmbeddingSet(tensors["embeddings"], json.loads(meta["names"]),
                               tensors["pid"], tensors["camera"], tensors["modality"],
                               json.loads(meta.get("sources", "[]")),
                               json.loads(meta.get("gallery_meta", "{}")))
        index = faiss.deserialize_index(tensors["faiss"].numpy())
        build = json.loads(meta.get("build", "{}"))
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ValueError(f"index: {path} is malformed: {exc}") from exc
    return GalleryIndex(gallery, index, build)

"""Query x gallery distances from embeddings, computed in chunks of query rows.

All three metrics rank identically on L2-normalised features (``normalize=True``, the default
of every VVI-ReID codebase): for unit vectors ``||q - g||^2 = 2 - 2 q.g = 2 * cosine``.

* ``"euclidean"``: ``sqrt(max(||q||^2 + ||g||^2 - 2 q.g, 0))`` (AuxNet / BUPTCampus).
* ``"sqeuclidean"``: the same without the square root (X-ReID's ``euclidean_distance``).
* ``"cosine"``: ``1 - q.g / (||q|| ||g||)`` (MITML uses the negated inner product of
  normalised features, the same ranking).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from xreid._validation import check_positive_int, check_real_finite, shape_str
from xreid.metrics.ranking import as_tensor

__all__ = [
    "METRICS",
    "compute_distance",
    "cosine_distance",
    "euclidean_distance",
    "resolve_metric",
    "squared_euclidean_distance",
]

Metric = Literal["euclidean", "sqeuclidean", "cosine"]
METRICS: tuple[str, ...] = ("euclidean", "sqeuclidean", "cosine")
_ALIASES = {"squared_euclidean": "sqeuclidean", "sq_euclidean": "sqeuclidean"}


def resolve_metric(metric: str) -> str:
    """Canonical metric name (``"squared_euclidean"`` -> ``"sqeuclidean"``); ValueError else."""
    metric = _ALIASES.get(metric, metric)
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}")
    return metric


def _check_features(x: object, name: str, device: torch.device | None = None) -> torch.Tensor:
    t = as_tensor(x, name, device)
    if t.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D matrix (N, E), got shape {shape_str(t)}")
    # half / bf16 / ints computed in float32, float64 kept
    return check_real_finite(t, name, "features", keep_float64=True)


@torch.no_grad()
def compute_distance(
    query: torch.Tensor | np.ndarray,
    gallery: torch.Tensor | np.ndarray,
    metric: str = "euclidean",
    *,
    normalize: bool = True,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Distance matrix between query and gallery embeddings (smaller = closer).

    Args:
        query: ``(Q, E)`` features (tensor on any device, or numpy array).
        gallery: ``(G, E)`` features; moved to ``query``'s device.
        metric: ``"euclidean"``, ``"sqeuclidean"`` (alias ``"squared_euclidean"``) or
            ``"cosine"``.
        normalize: L2-normalise both sets first (``cosine`` always normalises).
        chunk_size: query rows per matrix product; bounds the temporaries at
            ``chunk_size x G`` floats on top of the ``(Q, G)`` output.

    Returns:
        ``(Q, G)`` tensor on ``query``'s device, float32 (float64 if both inputs are float64).
        Inputs are never modified.
    """
    metric = resolve_metric(metric)
    check_positive_int(chunk_size, "chunk_size")
    q = _check_features(query, "query")
    g = _check_features(gallery, "gallery", q.device)
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"gallery: expected (G, {q.shape[1]}) to match query's embedding size, "
            f"got shape {shape_str(g)}"
        )
    dtype = torch.float64 if q.dtype == g.dtype == torch.float64 else torch.float32
    q, g = q.to(dtype), g.to(dtype)
    if normalize or metric == "cosine":
        q = F.normalize(q, dim=1)
        g = F.normalize(g, dim=1)
    out = torch.empty(q.shape[0], g.shape[0], dtype=dtype, device=q.device)
    g_t = g.t()
    g_sq = g.pow(2).sum(dim=1)
    for s in range(0, q.shape[0], chunk_size):
        qc = q[s : s + chunk_size]
        block = out[s : s + chunk_size]
        torch.mm(qc, g_t, out=block)
        if metric == "cosine":
            block.neg_().add_(1.0)
        else:
            # ||q||^2 + ||g||^2 - 2 q.g, clamped at 0 against rounding
            block.mul_(-2.0).add_(qc.pow(2).sum(dim=1, keepdim=True)).add_(g_sq)
            block.clamp_(min=0.0)
            if metric == "euclidean":
                block.sqrt_()
    return out


def cosine_distance(query: torch.Tensor | np.ndarray, gallery: torch.Tensor | np.ndarray,
                    *, chunk_size: int = 1024) -> torch.Tensor:
    """``1 - cos(q, g)``: ``(Q, E), (G, E) -> (Q, G)``."""
    return compute_distance(query, gallery, "cosine", chunk_size=chunk_size)


def euclidean_distance(query: torch.Tensor | np.ndarray, gallery: torch.Tensor | np.ndarray,
                       *, normalize: bool = False, chunk_size: int = 1024) -> torch.Tensor:
    """``||q - g||``: ``(Q, E), (G, E) -> (Q, G)`` (optionally on L2-normalised features)."""
    return compute_distance(query, gallery, "euclidean", normalize=normalize,
                            chunk_size=chunk_size)


def squared_euclidean_distance(
    query: torch.Tensor | np.ndarray, gallery: torch.Tensor | np.ndarray,
    *, normalize: bool = False, chunk_size: int = 1024,
) -> torch.Tensor:
    """``||q - g||^2``: ``(Q, E), (G, E) -> (Q, G)`` (optionally on L2-normalised features)."""
    return compute_distance(query, gallery, "sqeuclidean", normalize=normalize,
                            chunk_size=chunk_size)

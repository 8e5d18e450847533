"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with
k-reciprocal Encoding", CVPR 2017), vectorised in torch.

It computes exactly what the widely copied reference ``re_ranking(q_g_dist, q_q_dist,
g_g_dist, k1=20, k2=6, lambda_value=0.3)`` computes (torchreid / AuxNet / fast-reid), with
loops over rows replaced by tensor operations and a stable sort for the neighbour lists:

1. ``D`` = the (Q+G) x (Q+G) matrix of **squared** input distances, each row divided by its
   maximum;
2. ``R(i)`` = the k-reciprocal neighbours of i among its ``k1 + 1`` nearest; expanded by the
   ``round(k1 / 2)``-reciprocal sets of its members that overlap ``R(i)`` by more than 2/3;
3. ``V[i, j] = exp(-D[i, j])`` over the expanded set, normalised to sum 1; local query
   expansion averages ``V`` over the ``k2`` nearest neighbours;
4. Jaccard distance ``1 - s / (2 - s)`` with ``s = sum_k min(V[q, k], V[g, k])``;
5. result = ``(1 - lambda) * Jaccard + lambda * D``, the query x gallery block.

Memory is O((Q+G)^2) floats (two dense matrices at the peak), as in the reference.
"""

from __future__ import annotations

import numpy as np
import torch

from xreid._validation import check_positive_int, check_real_finite, shape_str
from xreid.metrics.ranking import as_tensor

__all__ = ["re_ranking"]


def _square(x: object, name: str, rows: int, cols: int, device: torch.device | None
            ) -> torch.Tensor:
    t = as_tensor(x, name, device)
    if t.dim() != 2 or tuple(t.shape) != (rows, cols):
        raise ValueError(f"{name}: expected shape ({rows}, {cols}), got {shape_str(t)}")
    return check_real_finite(t, name, "distances")


@torch.no_grad()
def re_ranking(
    q_g_dist: torch.Tensor | np.ndarray,
    q_q_dist: torch.Tensor | np.ndarray,
    g_g_dist: torch.Tensor | np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    *,
    chunk_size: int = 256,
) -> torch.Tensor | np.ndarray:
    """k-reciprocal re-ranked query x gallery distances.

    Args:
        q_g_dist: ``(Q, G)`` query-gallery distances (e.g. Euclidean; they are squared here,
            as in the reference code).
        q_q_dist: ``(Q, Q)`` query-query distances.
        g_g_dist: ``(G, G)`` gallery-gallery distances.
        k1: neighbours for the k-reciprocal sets (20 in the paper; AuxNet uses 5).
        k2: neighbours for local query expansion (6; AuxNet 3); 1 disables it.
        lambda_value: weight of the original distance (0.3; 0 = pure Jaccard).
        chunk_size: rows processed at once in the sort / expansion steps.

    Returns:
        ``(Q, G)`` float32 re-ranked distances: a numpy array if ``q_g_dist`` is one, else a
        tensor on ``q_g_dist``'s device. Inputs are not modified.

    Ties in the neighbour ranking are broken by index (stable sort); the reference uses an
    unstable ``np.argsort``, so results can differ only where distances tie.
    """
    for name, v in (("k1", k1), ("k2", k2), ("chunk_size", chunk_size)):
        check_positive_int(v, name, numpy=True)
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise ValueError(f"lambda_value: expected a float in [0, 1], got {lambda_value!r}")
    return_numpy = isinstance(q_g_dist, np.ndarray)
    qg = as_tensor(q_g_dist, "q_g_dist")
    if qg.dim() != 2:
        raise ValueError(f"q_g_dist: expected a 2-D matrix (Q, G), got shape {shape_str(qg)}")
    Q, G = qg.shape
    device = qg.device
    qg = _square(qg, "q_g_dist", Q, G, device)
    qq = _square(q_q_dist, "q_q_dist", Q, Q, device)
    gg = _square(g_g_dist, "g_g_dist", G, G, device)
    N = Q + G
    if Q == 0 or G == 0:
        out = torch.zeros(Q, G, device=device)
        return out.cpu().numpy() if return_numpy else out

    # 1. squared distances, row i divided by the max of column i (symmetric input: of row i)
    dist = torch.cat([torch.cat([qq, qg], 1), torch.cat([qg.t(), gg], 1)], 0).pow_(2)
    dist = (dist / dist.amax(dim=0)).t().contiguous()

    # neighbour lists: the first max(k1 + 1, k2) entries of a stable row sort
    kk = min(k1 + 1, N)
    kh = min(int(np.around(k1 / 2.0)) + 1, N)
    k2 = min(k2, N)
    top = max(kk, k2)
    ranks = torch.empty(N, top, dtype=torch.long, device=device)
    for s in range(0, N, chunk_size):
        ranks[s : s + chunk_size] = torch.sort(
            dist[s : s + chunk_size], dim=1, stable=True
        ).indices[:, :top]
    arange = torch.arange(N, device=device)
    fwd = ranks[:, :kk]  # (N, kk)
    fwd_h = ranks[:, :kh]  # (N, kh)
    recip_h = (fwd_h[fwd_h] == arange[:, None, None]).any(-1)  # (N, kh)

    # 2-3. expanded k-reciprocal sets and their Gaussian weights V (N, N)
    V = torch.zeros(N, N + 1, device=device)  # column N: sink for padding entries
    for s in range(0, N, chunk_size):
        rows = arange[s : s + chunk_size]
        f = fwd[rows]  # (n, kk)
        recip = (fwd[f] == rows[:, None, None]).any(-1)  # (n, kk)
        cand = fwd_h[f]  # (n, kk, kh): round(k1/2)-neighbours of each candidate
        cand_ok = recip_h[f]  # (n, kk, kh): ... that are reciprocal
        size = cand_ok.sum(-1)  # (n, kk)
        in_r = ((cand[..., None] == f[:, None, None, :]) & recip[:, None, None, :]).any(-1)
        inter = (in_r & cand_ok).sum(-1)
        accept = recip & (inter.double() > (2.0 / 3.0) * size.double())
        idx = torch.cat(
            [
                torch.where(recip, f, N),
                torch.where(accept[..., None] & cand_ok, cand, N).flatten(1),
            ],
            dim=1,
        )
        idx = torch.sort(idx, dim=1).values
        dup = torch.zeros_like(idx, dtype=torch.bool)
        dup[:, 1:] = idx[:, 1:] == idx[:, :-1]
        idx = idx.masked_fill(dup, N)
        w = torch.exp(-dist[rows[:, None], idx.clamp(max=N - 1)]).masked_fill_(idx == N, 0.0)
        w = w / w.sum(dim=1, keepdim=True)
        V[s : s + chunk_size].scatter_(1, idx, w)
    V = V[:, :N]
    original_qg = dist[:Q, Q:].clone()
    del dist

    # local query expansion: mean of V over the k2 nearest neighbours
    if k2 != 1:
        V_qe = torch.empty_like(V)
        for s in range(0, N, chunk_size):
            V_qe[s : s + chunk_size] = V[ranks[s : s + chunk_size, :k2]].mean(dim=1)
        V = V_qe
        del V_qe

    # 4. Jaccard distance between each query and each gallery entry (sparse over V's support)
    vg_t = V[Q:].t().contiguous()  # (N, G): vg_t[k, j] = V[Q + j, k]
    jaccard = torch.empty(Q, G, device=device)
    for i in range(Q):
        nz = V[i].nonzero().squeeze(1)
        s_min = torch.minimum(vg_t[nz], V[i, nz, None]).sum(dim=0)
        jaccard[i] = 1.0 - s_min / (2.0 - s_min)

    # 5. blend
    out = jaccard * (1.0 - lambda_value) + original_qg * lambda_value
    return out.cpu().numpy() if return_numpy else out

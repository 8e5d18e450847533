"""Exact CMC / mAP / mINP from a query x gallery distance matrix, without a per-query sort.

The semantics are the torchreid / X-ReID ``eval_func`` ("Market-1501") rule, made exact and
deterministic:

1. each query ranks the gallery by ascending distance; ties are broken by gallery index
   (a stable sort);
2. with ``remove_same_camera`` the gallery entries with the query's pid **and** camera are
   junk and are deleted from the ranked list;
3. the remaining entries with the query's pid are the matches; a query without any is
   skipped (it counts in no average);
4. CMC@k = 1 if a match is in the top k; AP = (1/P) * sum_k k / rank_k over the P matches
   (non-interpolated); INP = P / rank_P (rank of the last match); averages over the valid
   queries.

Algorithm (counting, no full sort). For one query let the matches, ordered by
``(distance, gallery index)``, be p_1 < ... < p_P. A non-match n is ranked ahead of p_k iff
fewer than k matches are ranked ahead of n, so with ``b(n) = #{matches ahead of n}``::

    rank_k = k + #{non-matches n : b(n) < k} = k + cumsum(histogram(b))[k - 1]

``b(n)`` is a ``searchsorted`` of the distance into the query's sorted match distances;
a non-match whose distance equals a match distance is resolved exactly by gallery index
(second ``searchsorted`` on a composite integer key, only for those tied entries). Junk entries
are neither matches nor non-matches. Only the P matches of each row are sorted, so a chunk of q
queries costs O(q * G * log P) instead of O(q * G * log G). Every count is an integer
(``bincount`` and integer ``cumsum``), so the result is identical under
``torch.use_deterministic_algorithms(True)``, on CPU and CUDA, for any ``chunk_size``.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import torch

from xreid._validation import shape_str

__all__ = ["RankingResult", "as_tensor", "evaluate_ranking"]

# Target number of (query, gallery) pairs per chunk when ``chunk_size`` is None:
# 2**21 pairs * ~40 bytes = ~80 MB of temporaries (see ``evaluate_ranking``). Fewer, larger
# chunks also mean fewer parallel regions, which matters on a loaded machine.
_DEFAULT_PAIRS_PER_CHUNK = 2**21


class RankingResult(NamedTuple):
    """Result of :func:`evaluate_ranking`.

    Attributes:
        cmc: ``(max_rank,)`` float64 numpy array; ``cmc[k - 1]`` is the fraction of valid
            queries with a match in the top ``k`` (Rank-k). Non-decreasing, in [0, 1].
        mAP: mean non-interpolated average precision over the valid queries, in [0, 1].
        mINP: mean inverse negative penalty (matches / rank of the last match), in [0, 1].
        num_valid_queries: queries with at least one match left after junk removal. When it
            is 0, ``cmc`` is all zeros and ``mAP == mINP == 0.0`` (and a ``RuntimeWarning`` is
            issued): no query could be evaluated.
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid_queries: int

    def rank(self, k: int) -> float:
        """Rank-k accuracy, ``cmc[k - 1]`` (1 <= k <= max_rank)."""
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f"k: expected 1 <= k <= max_rank={len(self.cmc)}, got {k}")
        return float(self.cmc[k - 1])


# ------------------------------------------------------------------------------ validation
def as_tensor(x: object, name: str, device: torch.device | None = None) -> torch.Tensor:
    """Turn a tensor, numpy array or sequence into a tensor (no copy when possible)."""
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.ndarray):
        if x.dtype == object or x.dtype.kind in "USV":
            raise ValueError(f"{name}: expected a numeric array, got numpy dtype {x.dtype}")
        with warnings.catch_warnings():  # read-only arrays are fine: nothing writes to them
            warnings.simplefilter("ignore", UserWarning)
            try:
                t = torch.from_numpy(x)
            except ValueError:  # negative strides
                t = torch.from_numpy(np.ascontiguousarray(x))
    else:
        try:
            t = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(
                f"{name}: expected a tensor, numpy array or sequence of numbers, "
                f"got {type(x).__name__}"
            ) from e
    if device is not None and t.device != device:
        t = t.to(device)
    return t


def _check_ids(x: object, name: str, length: int, what: str, device: torch.device
               ) -> torch.Tensor:
    t = as_tensor(x, name, device)
    if t.dim() != 1:
        raise ValueError(f"{name}: expected a 1-D vector ({what},), got shape {shape_str(t)}")
    if t.shape[0] != length:
        raise ValueError(
            f"{name}: expected {length} entries (one per {what} of distmat), got {t.shape[0]}"
        )
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name}: expected integer ids, got dtype {t.dtype}")
    return t.long()


def _check_distmat(distmat: object) -> torch.Tensor:
    d = as_tensor(distmat, "distmat")
    if d.dim() != 2:
        raise ValueError(f"distmat: expected a 2-D matrix (Q, G), got shape {shape_str(d)}")
    if d.dtype == torch.bool or d.is_complex():
        raise ValueError(f"distmat: expected real distances, got dtype {d.dtype}")
    if d.dtype in (torch.float16, torch.bfloat16):
        d = d.float()  # exact: every half value is a float32 value
    elif not d.is_floating_point():
        d = d.double()
    return d  # finiteness is checked chunk by chunk (bounded memory)


def _check_positive_int(x: object, name: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 1:
        raise ValueError(f"{name}: expected a positive int, got {x!r}")
    return int(x)


# ------------------------------------------------------------------------------- the core
class _Totals:
    """Integer / float64 accumulators over chunks (kept on the distmat's device)."""

    def __init__(self, max_rank: int, device: torch.device) -> None:
        self.max_rank = max_rank
        # first_hist[r] = number of valid queries whose first match is at rank r
        # (r = 1..max_rank; rank > max_rank goes to bin max_rank + 1; bin 0 unused)
        self.first_hist = torch.zeros(max_rank + 2, dtype=torch.long, device=device)
        # per-chunk AP / INP of the valid queries, summed once at the end (in query order,
        # so the result does not depend on the chunking)
        self.ap: list[torch.Tensor] = []
        self.inp: list[torch.Tensor] = []


def _rank_chunk(
    d: torch.Tensor,
    q_pids: torch.Tensor,
    g_pids: torch.Tensor,
    q_cams: torch.Tensor | None,
    g_cams: torch.Tensor | None,
    totals: _Totals,
) -> None:
    """Accumulate the metrics of one chunk of queries. ``d``: (q, G) float, finite."""
    q, G = d.shape
    device = d.device
    negative = q_pids[:, None] != g_pids[None, :]  # (q, G) non-matches (never junk)
    if q_cams is not None and g_cams is not None:
        match = (q_cams[:, None] != g_cams[None, :]).logical_and_(~negative)
    else:
        match = ~negative
    num_pos = match.sum(dim=1)  # (q,)
    p_max = int(num_pos.max())
    if p_max == 0:
        return

    # Sorted match distances per row, padded with +inf: (q, p_max), and their gallery indices
    # (padding index G). Gathered in gallery order, then a stable sort: (distance, index).
    rows, cols = match.nonzero(as_tuple=True)
    del match
    starts = torch.cumsum(num_pos, 0) - num_pos
    slot = torch.arange(rows.numel(), device=device) - starts[rows]
    pos_d = d.new_full((q, p_max), math.inf)
    pos_d[rows, slot] = d[rows, cols]
    pos_i = torch.full((q, p_max), G, dtype=torch.long, device=device)
    pos_i[rows, slot] = cols
    del rows, cols, slot, starts
    pos_d, perm = torch.sort(pos_d, dim=1, stable=True)
    pos_i = pos_i.gather(1, perm)
    del perm

    # b[r, g] = number of matches with a strictly smaller distance than d[r, g]: (q, G)
    b = torch.searchsorted(pos_d, d, right=False)
    # Non-matches tied with a match distance: the matches with the same distance and a
    # smaller gallery index are also ahead of them.
    nxt = pos_d.gather(1, b.clamp(max=p_max - 1))
    tie = nxt == d
    tie &= negative
    del nxt
    if bool(tie.any()):
        b = _resolve_ties(b, tie, pos_d, pos_i, G)
    del tie

    # Histogram of b over the non-matches of each row (junk and matches go to a dump bin).
    width = p_max + 1
    b.add_(torch.arange(q, device=device)[:, None] * width)
    b.masked_fill_(~negative, q * width)
    del negative
    hist = torch.bincount(b.view(-1), minlength=q * width + 1)[: q * width].view(q, width)
    del b
    ahead = torch.cumsum(hist, dim=1)[:, :p_max]  # non-matches ahead of the k-th match
    k = torch.arange(1, p_max + 1, device=device)
    rank = ahead + k  # (q, p_max) 1-based rank of the k-th match (valid for k <= P)

    valid = num_pos > 0
    num_pos_f = num_pos.to(torch.float64)
    in_range = k[None, :] <= num_pos[:, None]
    precision = (k.to(torch.float64) / rank.to(torch.float64)).masked_fill_(~in_range, 0.0)
    ap = precision.sum(dim=1) / num_pos_f.clamp(min=1.0)
    last = rank.gather(1, (num_pos - 1).clamp(min=0)[:, None]).squeeze(1)
    inp = num_pos_f / last.to(torch.float64)
    first = rank[:, 0].clamp(max=totals.max_rank + 1)

    totals.ap.append(ap[valid])
    totals.inp.append(inp[valid])
    totals.first_hist += torch.bincount(first[valid], minlength=totals.max_rank + 2)


def _resolve_ties(
    b: torch.Tensor, tie: torch.Tensor, pos_d: torch.Tensor, pos_i: torch.Tensor, G: int
) -> torch.Tensor:
    """Exact ``b`` for non-matches whose distance equals a match distance.

    In each row of ``pos_d`` (sorted by (distance, index)) let ``start[j]`` be the first slot
    holding the value of slot ``j``. The key ``start[j] * (G + 1) + pos_i[j]`` is
    non-decreasing along the row, and so is ``row * p_max * (G + 1) + key`` over the
    flattened matrix. For a tied non-match at (r, n) with ``b = start`` of its tie group,
    searching ``r * p_max * (G + 1) + b * (G + 1) + n`` counts the matches before the group
    plus those inside it with a smaller gallery index.
    """
    q, p_max = pos_d.shape
    device = b.device
    slots = torch.arange(p_max, device=device).expand(q, p_max)
    new_group = torch.ones_like(pos_d, dtype=torch.bool)
    new_group[:, 1:] = pos_d[:, 1:] != pos_d[:, :-1]
    start = torch.where(new_group, slots, torch.zeros_like(slots)).cummax(dim=1).values
    stride = p_max * (G + 1)
    row_base = torch.arange(q, device=device)[:, None] * stride
    keys = (row_base + start * (G + 1) + pos_i).view(-1)
    tr, tc = tie.nonzero(as_tuple=True)
    values = tr * stride + b[tr, tc] * (G + 1) + tc
    b[tr, tc] = torch.searchsorted(keys, values) - tr * p_max
    return b


def evaluate_ranking(
    distmat: torch.Tensor | np.ndarray,
    query_pids: torch.Tensor | np.ndarray,
    gallery_pids: torch.Tensor | np.ndarray,
    query_cameras: torch.Tensor | np.ndarray | None,
    gallery_cameras: torch.Tensor | np.ndarray | None,
    *,
    remove_same_camera: bool = True,
    max_rank: int = 20,
    chunk_size: int | None = None,
) -> RankingResult:
    """CMC, mAP and mINP of a query x gallery distance matrix (smaller = closer).

    Args:
        distmat: ``(Q, G)`` finite distances, a tensor (CPU or CUDA) or numpy array; never
            modified. Half / bfloat16 are widened to float32, integers to float64.
        query_pids: ``(Q,)`` integer identities of the queries.
        gallery_pids: ``(G,)`` integer identities of the gallery entries.
        query_cameras: ``(Q,)`` integer camera ids (may be None when
            ``remove_same_camera=False``).
        gallery_cameras: ``(G,)`` integer camera ids (likewise).
        remove_same_camera: discard, per query, the gallery entries with the same pid **and**
            the same camera (HITSZ-VCM / Market-1501 rule). ``False``: keep everything
            (BUPTCampus protocol).
        max_rank: length of the returned CMC. Ranks beyond the (junk-free) gallery size repeat
            the last CMC value (1 for every valid query), so tiny galleries are fine.
        chunk_size: queries processed at once; ``None`` picks about ``2**21 / G`` (at least
            16, at most 1024). The result does not depend on it.

    Returns:
        :class:`RankingResult` ``(cmc (max_rank,), mAP, mINP, num_valid_queries)``.

    Ranking is stable: equal distances are ordered by gallery index. Queries with no match
    left are skipped; if none is valid the result is all zeros with ``num_valid_queries=0``
    and a ``RuntimeWarning``.

    Memory: besides ``distmat`` itself, at most about ``40 * chunk_size * G`` bytes of
    temporaries (boolean masks, an int64 count per pair, one gathered float per pair) plus
    ``O(chunk_size * P_max)`` for the sorted match distances, P_max the largest number of
    matches of a query; ~80 MB with the default chunk size, for any Q.

    Raises:
        ValueError: naming the argument, for a non-2-D or non-finite ``distmat``, id vectors of
            the wrong shape, length or dtype, or a bad ``max_rank`` / ``chunk_size``.
    """
    d = _check_distmat(distmat)
    Q, G = d.shape
    device = d.device
    max_rank = _check_positive_int(max_rank, "max_rank")
    q_pids = _check_ids(query_pids, "query_pids", Q, "row", device)
    g_pids = _check_ids(gallery_pids, "gallery_pids", G, "column", device)
    q_cams: torch.Tensor | None = None
    g_cams: torch.Tensor | None = None
    if remove_same_camera or query_cameras is not None or gallery_cameras is not None:
        if query_cameras is None or gallery_cameras is None:
            missing = "query_cameras" if query_cameras is None else "gallery_cameras"
            raise ValueError(
                f"{missing}: expected camera ids when remove_same_camera=True, got None"
            )
        q_cams = _check_ids(query_cameras, "query_cameras", Q, "row", device)
        g_cams = _check_ids(gallery_cameras, "gallery_cameras", G, "column", device)
    if not remove_same_camera:
        q_cams = g_cams = None
    if chunk_size is None:
        chunk_size = min(1024, max(16, _DEFAULT_PAIRS_PER_CHUNK // max(G, 1)))
    chunk_size = _check_positive_int(chunk_size, "chunk_size")

    totals = _Totals(max_rank, device)
    with torch.no_grad():
        if G > 0:
            for s in range(0, Q, chunk_size):
                e = min(s + chunk_size, Q)
                chunk = d[s:e].contiguous()
                if not bool(torch.isfinite(chunk).all()):
                    raise ValueError("distmat: expected finite distances, got NaN or inf")
                _rank_chunk(
                    chunk, q_pids[s:e], g_pids,
                    None if q_cams is None else q_cams[s:e], g_cams, totals,
                )
        num_valid = int(totals.first_hist.sum())
        if num_valid == 0:
            warnings.warn(
                "evaluate_ranking: no query has a match in the gallery (after junk removal); "
                "returning zeros with num_valid_queries=0",
                RuntimeWarning,
                stacklevel=2,
            )
            return RankingResult(np.zeros(max_rank), 0.0, 0.0, 0)
        counts = torch.cumsum(totals.first_hist, 0)[1 : max_rank + 1].cpu().numpy()
        cmc = counts.astype(np.float64) / num_valid
        return RankingResult(
            cmc,
            float(torch.cat(totals.ap).sum()) / num_valid,
            float(torch.cat(totals.inp).sum()) / num_valid,
            num_valid,
        )

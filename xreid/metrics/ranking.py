"""Exact CMC / mAP / mINP from a query x gallery distance matrix, without an argsort.

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

Algorithm (counting; no argsort). Only the gallery entries of the query's own identity
(matches and junk, S per query, S << G) need a rank. An entry n is ranked ahead of m iff
``(d[n], n) < (d[m], m)``, so with one *value* sort of each row::

    ahead(m) = searchsorted(sorted_row, d[m], "left") + #{n < m : d[n] == d[m]}

and, listing the identity's entries by ``(distance, index)`` with junk flags j_1, j_2, ...,
the rank of the s-th entry after junk removal is ``1 + ahead - (j_1 + ... + j_{s-1})``.
The second term of ``ahead`` is needed only for an entry whose distance occurs twice in the
row (rare with real features) and is counted pair by pair. A value sort is much cheaper than
an argsort (numpy's vectorised sort on CPU, ``torch.sort`` elsewhere), and on CPU only the
rows whose identity reaches beyond their ``G / 5`` smallest distances are sorted in full;
the others are partitioned (linear time) and sort those G / 5 values only. Every other step
is O(q * S) per chunk of q queries. Every count is an integer, so the result is identical
under ``torch.use_deterministic_algorithms(True)``, on CPU and CUDA, for any ``chunk_size``.
The authors' evaluator argsorts the whole matrix and loops over the queries in Python; see
``docs/performance.md`` for the comparison.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch

from xreid._validation import check_positive_int, shape_str

__all__ = ["RankingResult", "as_tensor", "evaluate_ranking"]

# Target number of (query, gallery) pairs per chunk when ``chunk_size`` is None:
# a sorted copy of 2**21 distances is 8-16 MB (see ``evaluate_ranking``); the same budget
# bounds the blocks of tie resolution (pairs x G booleans).
_DEFAULT_PAIRS_PER_CHUNK = 2**21

# On CPU a row is sorted only up to its ``G * _PREFIX_FRACTION`` smallest distances when the
# query identity's farthest entry lies among them (see ``_count_smaller_cpu``).
_PREFIX_FRACTION = 0.2


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


# ------------------------------------------------------------------------------- the core
class _GalleryGroups:
    """The gallery indices of every identity, ascending, in a padded table.

    ``table[rows(q_pids)] -> (q, S)`` gallery indices of the query's identity (padding
    ``G``), S the largest identity group of the gallery; built once per call in O(G log G).
    """

    def __init__(self, g_pids: torch.Tensor) -> None:
        G = g_pids.numel()
        device = g_pids.device
        order = torch.sort(g_pids, stable=True).indices  # ascending gallery index per pid
        self.pids, counts = torch.unique_consecutive(g_pids[order], return_counts=True)
        self.width = int(counts.max()) if G else 0
        starts = torch.cumsum(counts, 0) - counts
        group = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
        slot = torch.arange(G, device=device) - starts[group]
        # one padding row at the end for query pids that are absent from the gallery
        self.table = torch.full((len(counts) + 1, self.width), G, dtype=torch.long,
                                device=device)
        self.table[group, slot] = order
        self.size = G

    def rows(self, q_pids: torch.Tensor) -> torch.Tensor:
        """Row of ``table`` for each query identity (the padding row if absent)."""
        at = torch.searchsorted(self.pids, q_pids).clamp_(max=max(len(self.pids) - 1, 0))
        return torch.where(self.pids.index_select(0, at) == q_pids, at, len(self.pids))


def _count_smaller_cpu(d: np.ndarray, probe: np.ndarray, valid: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per row: entries of ``d`` smaller than / equal to each valid ``probe`` (numpy, CPU).

    The probes of a row are at most its largest valid probe ``t``. With the row partitioned
    at ``K`` (``np.partition``, linear time), every entry ``<= t`` lies in the first K slots
    whenever the (K+1)-th smallest value exceeds ``t``; such rows sort only those K values.
    The other rows (a far-away match) are sorted in full.
    """
    q, G = d.shape
    k = int(G * _PREFIX_FRACTION)
    if not 0 < k < G - 1:
        rows_sorted = [(np.arange(q), np.sort(d, axis=1))]
    else:
        reach = np.where(valid, probe, -np.inf).max(axis=1)
        part = np.partition(d, k, axis=1)
        inside = part[:, k] > reach
        near, far = np.flatnonzero(inside), np.flatnonzero(~inside)
        rows_sorted = [(near, np.sort(part[near, :k], axis=1)), (far, np.sort(d[far], axis=1))]
        del part
    smaller = np.zeros(probe.shape, dtype=np.int64)
    equal = np.zeros(probe.shape, dtype=np.int64)
    # numpy, row by row: S probes per row are cheap, and no parallel region is opened (torch's
    # batched searchsorted spins its intra-op threads, very slow on a loaded machine)
    for rows, srt in rows_sorted:
        for i, r in enumerate(rows.tolist()):
            smaller[r] = np.searchsorted(srt[i], probe[r], side="left")
            equal[r] = np.searchsorted(srt[i], probe[r], side="right") - smaller[r]
    return smaller, equal


def _count_ahead(d: torch.Tensor, members: torch.Tensor, member_d: torch.Tensor,
                 valid: torch.Tensor) -> torch.Tensor:
    """``ahead[r, s]`` = gallery entries ranked ahead of ``members[r, s]`` in row ``r``.

    An entry n is ahead of m iff ``(d[n], n) < (d[m], m)``. A value sort of each row (on CPU
    a partial one, see :func:`_count_smaller_cpu`) gives the strictly smaller distances by
    ``searchsorted``; entries with the very same distance (rare with real features) are
    counted by gallery index, pair by pair.
    Raises ``ValueError`` if the chunk holds NaN or infinity.
    """
    probe = member_d.masked_fill(~valid, 0.0)  # padding slots: any finite value
    if d.device.type == "cpu":  # numpy's vectorised sort and partition are much faster
        x = d.detach().numpy()
        # min and max propagate NaN and see both infinities, without a temporary
        if not (np.isfinite(x.min()) and np.isfinite(x.max())):
            raise ValueError("distmat: expected finite distances, got NaN or inf")
        lo, eq = _count_smaller_cpu(x, probe.numpy(), valid.numpy())
        ahead, equal = torch.from_numpy(lo), torch.from_numpy(eq)
    else:
        if not bool(torch.isfinite(d).all()):
            raise ValueError("distmat: expected finite distances, got NaN or inf")
        srt = torch.sort(d, dim=1).values
        ahead = torch.searchsorted(srt, probe, side="left")
        equal = torch.searchsorted(srt, probe, side="right") - ahead
        del srt
    tied = (equal > 1) & valid  # another entry has exactly this distance
    if bool(tied.any()):
        tr, ts = tied.nonzero(as_tuple=True)
        G = d.shape[1]
        cols = torch.arange(G, device=d.device)
        step = max(1, _DEFAULT_PAIRS_PER_CHUNK // max(G, 1))
        for s in range(0, tr.numel(), step):  # bounded memory: step x G booleans
            r, c = tr[s : s + step], ts[s : s + step]
            same = d[r] == member_d[r, c][:, None]
            same &= cols[None, :] < members[r, c][:, None]
            ahead[r, c] += same.sum(dim=1)
    return ahead


def _identity_entries(
    d: torch.Tensor,
    members: torch.Tensor,
    groups: _GalleryGroups,
    q_cams: torch.Tensor | None,
    g_cams: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gallery entries of each query's identity (matches and junk), (q, S) each:
    ``members`` (gallery index, padding G, in gallery order on input), their distances
    (padding +inf), ``valid`` and ``junk``, ordered by (distance, gallery index)."""
    G = groups.size
    valid = members < G
    same_d = d.gather(1, members.clamp(max=G - 1)).masked_fill_(~valid, math.inf)
    # the table is in gallery order, so a stable sort by distance orders by (distance,
    # index); the padding (+inf) stays last
    same_d, perm = torch.sort(same_d, dim=1, stable=True)
    members = members.gather(1, perm)
    valid = valid.gather(1, perm)
    if q_cams is not None and g_cams is not None:
        cams = g_cams.index_select(0, members.clamp(max=G - 1).view(-1)).view(members.shape)
        junk = valid & (cams == q_cams[:, None])
    else:
        junk = torch.zeros_like(valid)
    return members, same_d, valid, junk


def _scores(ahead: torch.Tensor, valid: torch.Tensor, junk: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per query: AP, INP, rank of the first match and whether it has a match, from the
    number of gallery entries ahead of each identity entry, (q, S) each."""
    # Junk ahead of an entry of the same identity are exactly the earlier junk slots.
    junk_i = junk.long()
    match = valid & ~junk
    rank = ahead + 1 - (torch.cumsum(junk_i, dim=1) - junk_i)  # 1-based, junk removed
    k = torch.cumsum(match.long(), dim=1)  # at a match slot: it is the k-th match
    num_pos = k[:, -1]
    num_pos_f = num_pos.to(torch.float64)
    precision = (k.to(torch.float64) / rank.to(torch.float64)).masked_fill_(~match, 0.0)
    ap = precision.sum(dim=1) / num_pos_f.clamp(min=1.0)
    last = rank.masked_fill(~match, 0).amax(dim=1)
    inp = num_pos_f / last.clamp(min=1).to(torch.float64)
    first = rank.masked_fill(~match, torch.iinfo(torch.long).max).amin(dim=1)
    return ap, inp, first, num_pos > 0


@contextlib.contextmanager
def _serial_torch(device: torch.device) -> Iterator[None]:
    """On CPU, run torch's (small) ops on one intra-op thread for the duration of the call:
    the heavy work is numpy's single-threaded sort, and torch's idle workers would spin on
    the cores it needs. The previous thread count is restored on exit."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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

    On CPU the (small) torch operations run on one intra-op thread during the call (the
    previous count is restored); the heavy work is numpy's sort, which is single-threaded.

    Ranking is stable: equal distances are ordered by gallery index. Queries with no match
    left are skipped; if none is valid the result is all zeros with ``num_valid_queries=0``
    and a ``RuntimeWarning``.

    Memory: besides ``distmat`` itself, a sorted copy of one chunk (``chunk_size * G``
    distances) plus ``O(chunk_size * S)`` for the S gallery entries of the query's identity;
    ~10-20 MB with the default chunk size, for any Q.

    Raises:
        ValueError: naming the argument, for a non-2-D or non-finite ``distmat``, id vectors of
            the wrong shape, length or dtype, or a bad ``max_rank`` / ``chunk_size``.
    """
    d = _check_distmat(distmat)
    Q, G = d.shape
    device = d.device
    max_rank = check_positive_int(max_rank, "max_rank", numpy=True)
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
    chunk_size = check_positive_int(chunk_size, "chunk_size", numpy=True)

    # Work in chunks of queries: bounded memory, and every torch op stays small enough to run
    # without opening a parallel region (idle intra-op threads spin and steal the core the
    # numpy sort needs on a loaded machine; advanced indexing would open one, index_select
    # does not).
    parts: list[tuple[torch.Tensor, ...]] = []
    with torch.no_grad(), _serial_torch(device):
        if G > 0:
            groups = _GalleryGroups(g_pids)
            rows = groups.rows(q_pids)
            for s in range(0, Q, chunk_size):
                e = min(s + chunk_size, Q)
                chunk = d[s:e].contiguous()
                members, same_d, valid, junk = _identity_entries(
                    chunk, groups.table.index_select(0, rows[s:e]), groups,
                    None if q_cams is None else q_cams[s:e], g_cams,
                )
                ahead = _count_ahead(chunk, members, same_d, valid)  # junk included
                parts.append(_scores(ahead, valid, junk))
        ap, inp, first, valid_q = (torch.cat(x) for x in zip(*parts)) if parts else [None] * 4
        num_valid = 0 if valid_q is None else int(valid_q.sum())
        if num_valid == 0:
            warnings.warn(
                "evaluate_ranking: no query has a match in the gallery (after junk removal); "
                "returning zeros with num_valid_queries=0",
                RuntimeWarning,
                stacklevel=2,
            )
            return RankingResult(np.zeros(max_rank), 0.0, 0.0, 0)
        first = first[valid_q].clamp(max=max_rank + 1)
        hist = torch.bincount(first, minlength=max_rank + 2)  # bin r: first match at rank r
        counts = torch.cumsum(hist, 0)[1 : max_rank + 1].cpu().numpy()
        return RankingResult(
            counts.astype(np.float64) / num_valid,
            float(ap[valid_q].sum()) / num_valid,
            float(inp[valid_q].sum()) / num_valid,
            num_valid,
        )

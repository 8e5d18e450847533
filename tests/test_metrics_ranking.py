"""evaluate_ranking against a slow, obviously-correct per-query loop written here."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from xreid.metrics import RankingResult, evaluate_ranking

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# ----------------------------------------------------------------------------- reference
def reference_ranking(distmat, q_pids, g_pids, q_cams, g_cams, *, remove_same_camera=True,
                      max_rank=20):
    """Per query: stable argsort, drop junk, walk the list once. Returns (cmc, mAP, mINP, n)."""
    distmat = np.asarray(distmat, dtype=np.float64)
    num_q = distmat.shape[0]
    cmcs, aps, inps = [], [], []
    for i in range(num_q):
        order = np.argsort(distmat[i], kind="stable")
        ranked = []  # 1 = match, 0 = non-match, after junk removal
        for j in order:
            same_pid = g_pids[j] == q_pids[i]
            if remove_same_camera and same_pid and g_cams[j] == q_cams[i]:
                continue
            ranked.append(1 if same_pid else 0)
        if sum(ranked) == 0:
            continue
        hits, precisions, last = 0, [], 0
        for r, m in enumerate(ranked, start=1):
            if m:
                hits += 1
                precisions.append(hits / r)
                last = r
        aps.append(sum(precisions) / len(precisions))
        inps.append(hits / last)
        first = ranked.index(1) + 1
        cmcs.append([1.0 if first <= k else 0.0 for k in range(1, max_rank + 1)])
    if not cmcs:
        return np.zeros(max_rank), 0.0, 0.0, 0
    return np.mean(cmcs, axis=0), float(np.mean(aps)), float(np.mean(inps)), len(cmcs)


def random_case(rng, Q, G, *, ids=5, cams=3, ties=False):
    if ties:
        d = rng.integers(0, 4, size=(Q, G)).astype(np.float64)
    else:
        d = rng.random((Q, G))
    return (d, rng.integers(0, ids, Q), rng.integers(0, ids, G), rng.integers(0, cams, Q),
            rng.integers(0, cams, G))


def assert_same(result: RankingResult, expected, tol=1e-12):
    cmc, mAP, mINP, n = expected
    assert result.num_valid_queries == n
    assert result.cmc.shape == cmc.shape
    np.testing.assert_allclose(result.cmc, cmc, rtol=0, atol=tol)
    assert abs(result.mAP - mAP) <= tol
    assert abs(result.mINP - mINP) <= tol


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


# ------------------------------------------------------------------------- correctness
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("remove", [True, False])
def test_random_cases_match_reference(ties, remove):
    rng = np.random.default_rng(1 + ties + 2 * remove)
    for _ in range(40):
        Q, G = int(rng.integers(1, 25)), int(rng.integers(1, 40))
        case = random_case(rng, Q, G, ids=int(rng.integers(1, 6)), cams=int(rng.integers(1, 4)),
                           ties=ties)
        max_rank = int(rng.integers(1, 30))
        got = quiet(evaluate_ranking, *case, remove_same_camera=remove, max_rank=max_rank,
                    chunk_size=int(rng.integers(1, 9)))
        assert_same(got, reference_ranking(*case, remove_same_camera=remove,
                                           max_rank=max_rank))


def test_all_ties_order_by_gallery_index():
    # every distance equal: the ranked list is the gallery in index order
    d = np.zeros((1, 5))
    q_p, g_p = np.array([7]), np.array([1, 7, 2, 7, 3])
    cams = np.zeros(1, int), np.ones(5, int)
    r = evaluate_ranking(d, q_p, g_p, *cams, max_rank=5)
    # matches at ranks 2 and 4: AP = (1/2 + 2/4) / 2, INP = 2 / 4
    assert r.cmc.tolist() == [0, 1, 1, 1, 1]
    assert r.mAP == pytest.approx(0.5)
    assert r.mINP == pytest.approx(0.5)


def test_junk_removed_only_for_same_pid_and_same_camera():
    d = np.array([[0.0, 1.0, 2.0, 3.0]])
    q_p, g_p = np.array([1]), np.array([1, 2, 1, 1])
    q_c, g_c = np.array([0]), np.array([0, 0, 1, 0])
    # entry 0 (same pid, same camera) is junk; entry 1 (other pid, same camera) stays
    r = evaluate_ranking(d, q_p, g_p, q_c, g_c, max_rank=4)
    # ranked list after removal: [2: non-match, 1 (cam1): match, 3 is junk] -> match at rank 2
    assert r.cmc.tolist() == [0, 1, 1, 1]
    assert r.mAP == pytest.approx(0.5)
    r = evaluate_ranking(d, q_p, g_p, q_c, g_c, remove_same_camera=False, max_rank=4)
    # nothing removed: matches at ranks 1, 3, 4
    assert r.mAP == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert r.mINP == pytest.approx(3 / 4)


def test_tiny_gallery_pads_cmc_with_last_value():
    d = np.array([[0.1, 0.5], [0.9, 0.2]])  # both queries: the match is second of two
    r = evaluate_ranking(d, [0, 1], [1, 0], [0, 0], [1, 1], max_rank=20)
    assert r.cmc.shape == (20,)
    assert r.cmc[0] == 0.0 and np.all(r.cmc[1:] == 1.0)
    assert r.rank(20) == 1.0
    with pytest.raises(ValueError, match="k"):
        r.rank(21)


def test_no_valid_query_gives_zeros_and_warns():
    d = np.ones((3, 4))
    with pytest.warns(RuntimeWarning, match="no query"):
        r = evaluate_ranking(d, [0, 1, 2], [5, 5, 6, 6], [0, 0, 0], [1, 1, 1, 1])
    assert r.num_valid_queries == 0
    assert r.mAP == 0.0 and r.mINP == 0.0
    assert r.cmc.shape == (20,) and not r.cmc.any()
    # every match junk (same camera) -> also no valid query
    with pytest.warns(RuntimeWarning):
        r = evaluate_ranking(d[:1], [5], [5, 5, 6, 6], [1], [1, 1, 1, 1])
    assert r.num_valid_queries == 0


@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (0, 0)])
def test_empty_query_or_gallery(shape):
    with pytest.warns(RuntimeWarning):
        r = evaluate_ranking(np.zeros(shape), np.zeros(shape[0], int), np.zeros(shape[1], int),
                             np.zeros(shape[0], int), np.zeros(shape[1], int), max_rank=3)
    assert r.num_valid_queries == 0 and r.cmc.tolist() == [0, 0, 0]


def test_skipped_queries_do_not_count():
    d = np.array([[0.0, 1.0], [0.0, 1.0]])
    # query 0 has no match at all, query 1 matches at rank 2
    r = evaluate_ranking(d, [9, 2], [1, 2], [0, 0], [1, 1], max_rank=2)
    assert r.num_valid_queries == 1
    assert r.cmc.tolist() == [0.0, 1.0]
    assert r.mAP == pytest.approx(0.5)


@given(
    Q=st.integers(0, 10), G=st.integers(0, 14), ids=st.integers(1, 4), cams=st.integers(1, 3),
    ties=st.booleans(), remove=st.booleans(), max_rank=st.integers(1, 20),
    chunk=st.integers(1, 6), seed=st.integers(0, 2**16),
)
def test_hypothesis_sizes(Q, G, ids, cams, ties, remove, max_rank, chunk, seed):
    case = random_case(np.random.default_rng(seed), Q, G, ids=ids, cams=cams, ties=ties)
    got = quiet(evaluate_ranking, *case, remove_same_camera=remove, max_rank=max_rank,
                chunk_size=chunk)
    assert_same(got, reference_ranking(*case, remove_same_camera=remove, max_rank=max_rank))
    assert np.all(np.diff(got.cmc) >= 0)
    assert 0.0 <= got.mAP <= 1.0 and 0.0 <= got.mINP <= 1.0
    assert np.all((got.cmc >= 0) & (got.cmc <= 1))


def test_torchmetrics_retrieval_map_tie_free():
    torchmetrics = pytest.importorskip("torchmetrics")
    rng = np.random.default_rng(5)
    for remove in (True, False):
        d, qp, gp, qc, gc = random_case(rng, 30, 60, ids=6, cams=3)
        r = evaluate_ranking(d, qp, gp, qc, gc, remove_same_camera=remove)
        # torchmetrics treats only scores > 0 as retrieved and ranks with topk (ties
        # arbitrary): use strictly positive, tie-free similarity scores; junk is dropped
        # from each query's document set; queries without a relevant document are skipped.
        score = d.max() + 1.0 - d
        keep = np.ones_like(d, dtype=bool)
        if remove:
            keep = ~((qp[:, None] == gp[None, :]) & (qc[:, None] == gc[None, :]))
        rows = np.nonzero(keep)
        metric = torchmetrics.retrieval.RetrievalMAP(empty_target_action="skip")
        metric.update(
            torch.from_numpy(score[rows]),
            torch.from_numpy(qp[rows[0]] == gp[rows[1]]),
            indexes=torch.from_numpy(rows[0]),
        )
        assert float(metric.compute()) == pytest.approx(r.mAP, abs=1e-6)


# ------------------------------------------------------------------------- input types
def test_numpy_and_torch_inputs_agree():
    rng = np.random.default_rng(2)
    case = random_case(rng, 20, 30, ties=True)
    a = evaluate_ranking(*case)
    b = evaluate_ranking(*(torch.from_numpy(x) for x in case))
    c = evaluate_ranking(torch.from_numpy(case[0]).float(), *(list(x) for x in case[1:]))
    for other in (b, c):
        np.testing.assert_array_equal(a.cmc, other.cmc)
        assert a.mAP == other.mAP and a.mINP == other.mINP
    # integer and half distances (exactly representable) rank identically
    d_int = torch.from_numpy(case[0]).long()
    d_half = torch.from_numpy(case[0]).half()
    for d in (d_int, d_half):
        r = evaluate_ranking(d, *case[1:])
        assert r.mAP == a.mAP and np.array_equal(r.cmc, a.cmc)


def test_returns_plain_python_and_numpy_types():
    rng = np.random.default_rng(3)
    r = evaluate_ranking(*random_case(rng, 5, 9), max_rank=7)
    assert isinstance(r, RankingResult)
    assert isinstance(r.cmc, np.ndarray) and r.cmc.dtype == np.float64 and r.cmc.shape == (7,)
    assert type(r.mAP) is float and type(r.mINP) is float and type(r.num_valid_queries) is int
    cmc, mAP, mINP, n = r  # unpacks like a tuple
    assert (cmc is r.cmc, mAP, mINP, n) == (True, r.mAP, r.mINP, r.num_valid_queries)


def test_chunk_size_invariance_and_no_mutation():
    rng = np.random.default_rng(4)
    d, qp, gp, qc, gc = random_case(rng, 37, 23, ties=True)
    dt = torch.from_numpy(d.copy())
    version = dt._version
    results = [evaluate_ranking(dt, qp, gp, qc, gc, chunk_size=c) for c in (1, 5, 37, 100)]
    for r in results[1:]:
        np.testing.assert_array_equal(r.cmc, results[0].cmc)
        assert r.mAP == results[0].mAP and r.mINP == results[0].mINP
    assert dt._version == version and np.array_equal(dt.numpy(), d)


def test_transposed_view_input():
    rng = np.random.default_rng(6)
    d, qp, gp, qc, gc = random_case(rng, 12, 18, ties=True)
    r = evaluate_ranking(torch.from_numpy(d.T.copy()).t(), qp, gp, qc, gc)
    assert_same(r, reference_ranking(d, qp, gp, qc, gc))


@pytest.mark.parametrize("device", DEVICES)
def test_deterministic_algorithms_mode(device):
    rng = np.random.default_rng(7)
    d, qp, gp, qc, gc = random_case(rng, 40, 50, ties=True)
    expected = reference_ranking(d, qp, gp, qc, gc)
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        dt = torch.from_numpy(d).float().to(device)
        r = evaluate_ranking(dt, torch.from_numpy(qp).to(device), gp, qc, gc, chunk_size=7)
    finally:
        torch.use_deterministic_algorithms(prev)
    assert_same(r, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(8)
    case = random_case(rng, 64, 80, ties=True)
    a = evaluate_ranking(*case)
    b = evaluate_ranking(torch.from_numpy(case[0]).cuda(), *case[1:])
    np.testing.assert_array_equal(a.cmc, b.cmc)
    assert a.mAP == pytest.approx(b.mAP, abs=1e-12)


# --------------------------------------------------------------------------- bad inputs
def _ok():
    return (np.zeros((2, 3)), np.array([0, 1]), np.array([0, 1, 1]), np.array([0, 0]),
            np.array([1, 1, 1]))


@pytest.mark.parametrize(
    ("position", "value", "name"),
    [
        (0, np.zeros(3), "distmat"),
        (0, np.zeros((2, 3, 1)), "distmat"),
        (0, np.array([[0.0, np.nan, 1.0], [0, 0, 0]]), "distmat"),
        (0, np.array([[0.0, np.inf, 1.0], [0, 0, 0]]), "distmat"),
        (0, np.zeros((2, 3), dtype=bool), "distmat"),
        (1, np.array([0, 1, 2]), "query_pids"),
        (1, np.array([[0, 1]]), "query_pids"),
        (1, np.array([0.0, 1.0]), "query_pids"),
        (2, np.array([0, 1]), "gallery_pids"),
        (3, np.array([0]), "query_cameras"),
        (4, np.array([1, 1, 1, 1]), "gallery_cameras"),
        (3, None, "query_cameras"),
        (4, None, "gallery_cameras"),
    ],
)
def test_bad_inputs_name_the_argument(position, value, name):
    args = list(_ok())
    args[position] = value
    with pytest.raises(ValueError, match=name):
        evaluate_ranking(*args)


@pytest.mark.parametrize(("kw", "value"), [("max_rank", 0), ("max_rank", 2.5),
                                           ("max_rank", True), ("chunk_size", 0)])
def test_bad_keywords(kw, value):
    with pytest.raises(ValueError, match=kw):
        evaluate_ranking(*_ok(), **{kw: value})


def test_non_finite_in_a_later_chunk_is_caught():
    d = np.zeros((5, 3))
    d[4, 2] = np.nan
    with pytest.raises(ValueError, match="distmat"):
        evaluate_ranking(d, np.zeros(5, int), np.zeros(3, int), np.zeros(5, int),
                         np.ones(3, int), chunk_size=2)


def test_cameras_optional_without_removal():
    d, qp, gp, _, _ = _ok()
    d = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])
    r = evaluate_ranking(d, qp, gp, None, None, remove_same_camera=False, max_rank=3)
    assert r.num_valid_queries == 2
    assert r.cmc.tolist() == [1.0, 1.0, 1.0]


# ------------------------------------------------------ properties of the counting algorithm
_TIE_VALUES = np.array([-1.0, -0.0, 0.0, 0.25, 0.5, 3.0])


@given(
    Q=st.integers(1, 9), G=st.integers(1, 16), ids=st.integers(1, 5), cams=st.integers(1, 3),
    remove=st.booleans(), float32=st.booleans(), tie_step=st.integers(1, 40),
    prefix=st.sampled_from([0.0, 0.1, 0.3, 0.6, 0.95]), seed=st.integers(0, 2**16),
)
def test_hypothesis_heavy_ties_signed_zeros_and_foreign_ids(Q, G, ids, cams, remove, float32,
                                                            tie_step, prefix, seed):
    """Distances from a few values (+0.0 and -0.0 are equal), negative / absent identities,
    a tiny budget for the tie-resolution blocks and any partial-sort prefix (rows whose
    identity lies inside or beyond it): still the stable-sort reference."""
    import xreid.metrics.ranking as ranking

    rng = np.random.default_rng(seed)
    d = _TIE_VALUES[rng.integers(0, len(_TIE_VALUES), size=(Q, G))]
    if float32:
        d = d.astype(np.float32)
    qp = rng.integers(-2, ids + 2, Q)  # some query identities are not in the gallery
    gp = rng.integers(-2, ids, G)
    qc, gc = rng.integers(0, cams, Q), rng.integers(0, cams, G)
    saved = ranking._DEFAULT_PAIRS_PER_CHUNK, ranking._PREFIX_FRACTION
    ranking._DEFAULT_PAIRS_PER_CHUNK = tie_step  # tie blocks of tie_step // G pairs
    ranking._PREFIX_FRACTION = prefix
    try:
        got = quiet(evaluate_ranking, d, qp, gp, qc, gc, remove_same_camera=remove,
                    chunk_size=int(rng.integers(1, Q + 1)))
    finally:
        ranking._DEFAULT_PAIRS_PER_CHUNK, ranking._PREFIX_FRACTION = saved
    assert_same(got, reference_ranking(d, qp, gp, qc, gc, remove_same_camera=remove))


@given(Q=st.integers(1, 8), G=st.integers(2, 20), seed=st.integers(0, 2**16))
def test_hypothesis_gallery_permutation_invariance_without_ties(Q, G, seed):
    """Without ties the gallery order is irrelevant: permuting the columns (and their ids)
    gives bit-identical metrics."""
    rng = np.random.default_rng(seed)
    d, qp, gp, qc, gc = random_case(rng, Q, G, ids=3, cams=2)
    perm = rng.permutation(G)
    a = quiet(evaluate_ranking, d, qp, gp, qc, gc)
    b = quiet(evaluate_ranking, d[:, perm], qp, gp[perm], qc, gc[perm])
    np.testing.assert_array_equal(a.cmc, b.cmc)
    assert (a.mAP, a.mINP, a.num_valid_queries) == (b.mAP, b.mINP, b.num_valid_queries)


@pytest.mark.parametrize("prefix", [0.0, 0.05, 0.2, 0.5])
def test_partial_sort_rows_inside_and_beyond_the_prefix(prefix, monkeypatch):
    """Identity-structured distances (most queries near their matches, some far): the
    partial sort (near rows) and the full sort (far rows) give the reference's numbers."""
    import xreid.metrics.ranking as ranking

    monkeypatch.setattr(ranking, "_PREFIX_FRACTION", prefix)
    rng = np.random.default_rng(11)
    qp, gp = rng.integers(0, 8, 40), rng.integers(0, 8, 300)
    qc, gc = rng.integers(0, 3, 40), rng.integers(0, 3, 300)
    d = rng.random((40, 300)) + 0.8 * (qp[:, None] != gp[None, :])
    d[::5] = rng.random((8, 300))  # every fifth query: matches anywhere in the row
    d = d.astype(np.float32)
    for remove in (True, False):
        got = evaluate_ranking(d, qp, gp, qc, gc, remove_same_camera=remove, chunk_size=16)
        assert_same(got, reference_ranking(d, qp, gp, qc, gc, remove_same_camera=remove))


def test_thread_count_is_restored_after_success_and_error():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        evaluate_ranking(*random_case(np.random.default_rng(12), 6, 9))
        assert torch.get_num_threads() == 2
        bad = np.zeros((3, 4))
        bad[2, 1] = np.nan
        with pytest.raises(ValueError, match="distmat"):
            evaluate_ranking(bad, np.zeros(3, int), np.zeros(4, int), np.zeros(3, int),
                             np.ones(4, int))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

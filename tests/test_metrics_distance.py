"""Distance matrices against naive loops; k-reciprocal re-ranking against the reference code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tolerance import rounding_tol

from xreid.metrics import (
    compute_distance,
    cosine_distance,
    euclidean_distance,
    re_ranking,
    squared_euclidean_distance,
)


def naive_distance(q: np.ndarray, g: np.ndarray, metric: str, normalize: bool) -> np.ndarray:
    q = q.astype(np.float64)
    g = g.astype(np.float64)
    if normalize or metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
    out = np.zeros((len(q), len(g)))
    for i in range(len(q)):
        for j in range(len(g)):
            if metric == "cosine":
                out[i, j] = 1.0 - float(q[i] @ g[j])
            else:
                sq = float(((q[i] - g[j]) ** 2).sum())
                out[i, j] = np.sqrt(sq) if metric == "euclidean" else sq
    return out


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("normalize", [True, False])
def test_distance_matches_naive(metric, normalize):
    rng = np.random.default_rng(0)
    q, g = rng.standard_normal((13, 7)), rng.standard_normal((9, 7))
    got = compute_distance(torch.from_numpy(q).float(), g, metric, normalize=normalize,
                           chunk_size=4)
    assert got.dtype == torch.float32 and got.shape == (13, 9)
    # float32: squared norms and a dot product over d = 7, a root; terms up to |q|^2 + |g|^2
    scale = float((q**2).sum(1).max() + (g**2).sum(1).max())
    tol = rounding_tol(torch.float32, 3 * 7 + 4, scale=scale)
    np.testing.assert_allclose(got.numpy(), naive_distance(q, g, metric, normalize), **tol)
    got64 = compute_distance(torch.from_numpy(q), torch.from_numpy(g), metric,
                             normalize=normalize)
    assert got64.dtype == torch.float64
    np.testing.assert_allclose(got64.numpy(), naive_distance(q, g, metric, normalize),
                               atol=1e-10)


def test_distance_helpers_and_rankings_agree_on_unit_vectors():
    rng = np.random.default_rng(1)
    q = torch.from_numpy(rng.standard_normal((6, 5)))
    g = torch.from_numpy(rng.standard_normal((8, 5)))
    e = euclidean_distance(q, g, normalize=True)
    s = squared_euclidean_distance(q, g, normalize=True)
    c = cosine_distance(q, g)
    torch.testing.assert_close(s, 2 * c)
    torch.testing.assert_close(e, s.sqrt())
    assert torch.equal(e.argsort(1), c.argsort(1))
    # self-distance is 0 (clamped, never negative / NaN)
    assert torch.all(euclidean_distance(q, q).diagonal().abs() < 1e-6)
    assert not torch.isnan(euclidean_distance(q, q)).any()


def test_distance_does_not_modify_inputs_and_accepts_aliases():
    q = torch.randn(4, 3)
    g = torch.randn(5, 3)
    q0, g0 = q.clone(), g.clone()
    a = compute_distance(q, g, "squared_euclidean", normalize=False)
    b = compute_distance(q, g, "sqeuclidean", normalize=False)
    assert torch.equal(a, b)
    assert torch.equal(q, q0) and torch.equal(g, g0)


@pytest.mark.parametrize(
    ("args", "kwargs", "name"),
    [
        ((torch.randn(3), torch.randn(4, 3)), {}, "query"),
        ((torch.randn(3, 2), torch.randn(4, 3)), {}, "gallery"),
        ((torch.randn(3, 3), torch.full((4, 3), float("nan"))), {}, "gallery"),
        ((torch.randn(3, 3), torch.randn(4, 3)), {"metric": "manhattan"}, "metric"),
        ((torch.randn(3, 3), torch.randn(4, 3)), {"chunk_size": 0}, "chunk_size"),
    ],
)
def test_distance_bad_inputs(args, kwargs, name):
    with pytest.raises(ValueError, match=name):
        compute_distance(*args, **kwargs)


# --------------------------------------------------------------------------- re-ranking
def reference_re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    """The widely copied re_ranking (Zhong et al. 2017; torchreid / AuxNet), with a stable
    argsort so ties are ordered by index. Direct loops, as in the original."""
    original_dist = np.concatenate(
        [np.concatenate([q_q_dist, q_g_dist], axis=1),
         np.concatenate([q_g_dist.T, g_g_dist], axis=1)], axis=0)
    original_dist = np.power(original_dist, 2).astype(np.float32)
    original_dist = np.transpose(1.0 * original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(np.float32)
    initial_rank = np.argsort(original_dist, kind="stable").astype(np.int32)
    query_num = q_g_dist.shape[0]
    all_num = q_g_dist.shape[0] + q_g_dist.shape[1]
    half = int(np.around(k1 / 2.0)) + 1
    for i in range(all_num):
        forward = initial_rank[i, : k1 + 1]
        backward = initial_rank[forward, : k1 + 1]
        k_reciprocal = forward[np.where(backward == i)[0]]
        expansion = k_reciprocal
        for candidate in k_reciprocal:
            c_forward = initial_rank[candidate, :half]
            c_backward = initial_rank[c_forward, :half]
            c_reciprocal = c_forward[np.where(c_backward == candidate)[0]]
            if len(np.intersect1d(c_reciprocal, k_reciprocal)) > 2.0 / 3 * len(c_reciprocal):
                expansion = np.append(expansion, c_reciprocal)
        expansion = np.unique(expansion)
        weight = np.exp(-original_dist[i, expansion])
        V[i, expansion] = 1.0 * weight / np.sum(weight)
    original_dist = original_dist[:query_num]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float32)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
    inv_index = [np.where(V[:, i] != 0)[0] for i in range(all_num)]
    jaccard = np.zeros_like(original_dist, dtype=np.float32)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, all_num], dtype=np.float32)
        nonzero = np.where(V[i, :] != 0)[0]
        for j in nonzero:
            rows = inv_index[j]
            temp_min[0, rows] = temp_min[0, rows] + np.minimum(V[i, j], V[rows, j])
        jaccard[i] = 1 - temp_min / (2.0 - temp_min)
    final = jaccard * (1 - lambda_value) + original_dist * lambda_value
    return final[:query_num, query_num:]


def _clustered(rng, n, dim=8):
    centers = rng.standard_normal((n // 3 + 1, dim)) * 2
    return (np.repeat(centers, 3, axis=0)[:n] + rng.standard_normal((n, dim))).astype(np.float32)


@pytest.mark.parametrize(
    ("Q", "G", "k1", "k2", "lam"),
    [(10, 30, 20, 6, 0.3), (15, 40, 5, 3, 0.0), (7, 25, 4, 1, 0.5), (3, 5, 20, 6, 0.3)],
)
def test_re_ranking_matches_reference(Q, G, k1, k2, lam):
    rng = np.random.default_rng(Q * 100 + G)
    x = _clustered(rng, Q + G)
    q, g = x[:Q], x[Q:]
    qg = euclidean_distance(q, g).numpy()
    qq = euclidean_distance(q, q).numpy()
    gg = euclidean_distance(g, g).numpy()
    expected = reference_re_ranking(qg, qq, gg, k1, k2, lam)
    got = re_ranking(qg, qq, gg, k1, k2, lam, chunk_size=7)
    assert isinstance(got, np.ndarray) and got.shape == (Q, G)
    # float32 input: the k-reciprocal sets and Jaccard weights sum over up to Q + G entries
    tol = rounding_tol(torch.float32, 4 * (Q + G))
    np.testing.assert_allclose(got, expected, **tol)
    got_t = re_ranking(torch.from_numpy(qg), torch.from_numpy(qq), torch.from_numpy(gg),
                       k1=k1, k2=k2, lambda_value=lam)
    assert isinstance(got_t, torch.Tensor)
    np.testing.assert_allclose(got_t.numpy(), expected, **tol)


def test_re_ranking_bad_inputs():
    qg, qq, gg = np.ones((2, 3)), np.ones((2, 2)), np.ones((3, 3))
    with pytest.raises(ValueError, match="q_q_dist"):
        re_ranking(qg, np.ones((3, 3)), gg)
    with pytest.raises(ValueError, match="g_g_dist"):
        re_ranking(qg, qq, np.ones((2, 2)))
    with pytest.raises(ValueError, match="k1"):
        re_ranking(qg, qq, gg, k1=0)
    with pytest.raises(ValueError, match="lambda_value"):
        re_ranking(qg, qq, gg, lambda_value=2.0)
    with pytest.raises(ValueError, match="q_g_dist"):
        re_ranking(np.full((2, 3), np.nan), qq, gg)

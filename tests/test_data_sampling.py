"""Frame sampling modes against slow reference implementations of the published loaders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from xreid.data import SAMPLING_MODES, num_dense_clips, sample_frame_indices

lengths = st.integers(1, 300)
clip_lens = st.integers(1, 40)


def ref_chunk_first(n: int, T: int) -> list[int]:
    """X-ReID ``rrs_test`` / MITML: pad the index list with the last frame, chunk, take firsts."""
    if n < T:
        idx = list(range(n)) + [n - 1] * (T - n)
        return idx
    c = math.ceil(n / T)
    padded = list(range(n)) + [n - 1] * (c * T - n)
    return [padded[t * c:(t + 1) * c][0] for t in range(T)]


def ref_uniform(n: int, T: int) -> list[int]:
    """AuxNet ``uniform``: floor(linspace(0, n, T, endpoint=False))."""
    return [int(x) for x in np.floor(np.linspace(0, n, T, endpoint=False))]


def ref_dense(n: int, T: int) -> list[int]:
    """X-ReID ``dense``: consecutive T-frame clips, the last padded by cycling its frames."""
    frames = list(range(n))
    clips = [frames[i:i + T] for i in range(0, n, T)]
    last = clips[-1]
    while len(last) < T:
        last = last + last
    clips[-1] = last[:T]
    return [i for c in clips for i in c]


def test_published_examples() -> None:
    assert sample_frame_indices(24, 10, "chunk_first") == [0, 3, 6, 9, 12, 15, 18, 21, 23, 23]
    assert sample_frame_indices(12, 10, "chunk_first") == [0, 2, 4, 6, 8, 10, 11, 11, 11, 11]
    assert sample_frame_indices(24, 6, "chunk_first") == [0, 4, 8, 12, 16, 20]
    assert sample_frame_indices(13, 6, "chunk_first") == [0, 3, 6, 9, 12, 12]
    assert sample_frame_indices(12, 6, "chunk_first") == [0, 2, 4, 6, 8, 10]
    assert sample_frame_indices(24, 10, "uniform") == [0, 2, 4, 7, 9, 12, 14, 16, 19, 21]
    assert sample_frame_indices(5, 10, "uniform") == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert sample_frame_indices(111, 10, "uniform") == list(range(0, 100, 11))
    assert sample_frame_indices(24, 10, "dense") == [*range(20), 20, 21, 22, 23, 20, 21, 22,
                                                     23, 20, 21]
    assert sample_frame_indices(20, 10, "dense") == list(range(20))
    # numpy's float rounding, as in AuxNet (exact arithmetic would give 15 at t=11)
    assert sample_frame_indices(30, 22, "uniform")[11] == 14


@given(lengths, clip_lens)
def test_deterministic_modes_match_references(n: int, T: int) -> None:
    assert sample_frame_indices(n, T, "chunk_first") == ref_chunk_first(n, T)
    assert sample_frame_indices(n, T, "uniform") == ref_uniform(n, T)
    dense = sample_frame_indices(n, T, "dense")
    assert dense == ref_dense(n, T)
    assert len(dense) == num_dense_clips(n, T) * T
    assert set(dense) == set(range(n))  # every frame is used


@given(lengths, clip_lens, st.integers(0, 2**31))
def test_restricted_random_one_frame_per_segment(n: int, T: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    idx = sample_frame_indices(n, T, "restricted_random", g)
    assert len(idx) == T
    for t, i in enumerate(idx):
        lo = (t * n) // T
        hi = max(((t + 1) * n) // T, lo + 1)
        assert lo <= i < hi <= n
    assert idx == sorted(idx)
    if n >= T:
        assert len(set(idx)) == T  # segments are disjoint: no repeated frame
    g2 = torch.Generator().manual_seed(seed)
    assert sample_frame_indices(n, T, "restricted_random", g2) == idx


def test_restricted_random_is_uniform_within_segments() -> None:
    g = torch.Generator().manual_seed(0)
    counts = np.zeros(24, dtype=int)
    for _ in range(2000):
        for i in sample_frame_indices(24, 8, "restricted_random", g):
            counts[i] += 1
    assert counts.sum() == 16000
    assert counts.min() > 0.8 * 2000 / 3 and counts.max() < 1.2 * 2000 / 3
    # no skew toward the last frame (the authors' padded chunks would give frame 23 more)
    idx = [sample_frame_indices(12, 10, "restricted_random", g) for _ in range(200)]
    assert np.mean([sum(i == 11 for i in x) for x in idx]) <= 1.0


def test_restricted_random_uses_global_rng_without_generator() -> None:
    torch.manual_seed(5)
    a = sample_frame_indices(50, 7, "restricted_random")
    torch.manual_seed(5)
    assert sample_frame_indices(50, 7, "restricted_random") == a


@pytest.mark.parametrize(("args", "match"), [
    ((0, 4, "uniform"), "num_frames_in_tracklet"),
    ((5, 0, "uniform"), "num_frames"),
    ((5, 4, "random"), "mode"),
    ((5.0, 4, "uniform"), "num_frames_in_tracklet"),
    ((5, True, "dense"), "num_frames"),
])
def test_errors(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sample_frame_indices(*args)


def test_modes_constant() -> None:
    assert SAMPLING_MODES == ("restricted_random", "chunk_first", "uniform", "dense")

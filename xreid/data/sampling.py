"""Frame sampling: which frames of an n-frame tracklet form a T-frame clip.

Modes (``n`` frames in the tracklet, ``T`` = ``num_frames``):

``"restricted_random"`` (training, restricted random sampling / TSN-style)
    Split ``0..n-1`` into T consecutive, near-equal segments
    ``[floor(t*n/T), floor((t+1)*n/T))`` and draw one frame uniformly from each. When
    ``n < T`` a segment can be empty; it then holds the single frame ``floor(t*n/T)``, so the
    clip repeats frames in order. The authors' version splits into ``ceil(n/T)``-sized chunks
    and pads the list with the last frame, which spends up to T-1 picks on the last frame for
    ``n`` slightly above T (``docs/differences.md``, "Frame sampling"); equal segments avoid it.
``"chunk_first"`` (test; X-ReID ``rrs_test``, MITML)
    Chunks of ``c = ceil(n/T)`` frames, first frame of each, clamped to ``n-1``:
    ``min(t*c, n-1)``. n=24, T=10 -> [0,3,6,9,12,15,18,21,23,23]. This reproduces the
    published protocol exactly, including its repetition of the last frame.
``"uniform"`` (test; AuxNet)
    ``floor(linspace(0, n, T, endpoint=False))``, evaluated like numpy (``floor(t * (n/T))``
    in float64), so the indices equal AuxNet's even where rounding puts them one below
    ``(t*n)//T`` (e.g. n=30, T=22). n=24, T=10 -> [0,2,4,7,9,12,14,16,19,21].
``"dense"`` (test; X-ReID ``eval_all.py``)
    Every frame, as ``ceil(n/T)`` consecutive clips of T frames; the last clip is the
    remainder padded by cycling its own frames (n=24, T=10 -> [0..9], [10..19],
    [20,21,22,23,20,21,22,23,20,21]). Returns ``ceil(n/T) * T`` indices, clip-major.
"""

from __future__ import annotations

import math

import torch

from xreid._validation import check_positive_int

__all__ = ["SAMPLING_MODES", "num_dense_clips", "sample_frame_indices"]

SAMPLING_MODES: tuple[str, ...] = ("restricted_random", "chunk_first", "uniform", "dense")


def num_dense_clips(num_frames_in_tracklet: int, num_frames: int) -> int:
    """Number of clips ``"dense"`` sampling yields: ``ceil(n / T)``."""
    return -(-num_frames_in_tracklet // num_frames)


def sample_frame_indices(num_frames_in_tracklet: int, num_frames: int, mode: str,
                         generator: torch.Generator | None = None) -> list[int]:
    """Return the frame indices (0-based, temporal order) of a clip; see the module docstring.

    Args:
        num_frames_in_tracklet: n >= 1.
        num_frames: T >= 1, frames per clip.
        mode: one of :data:`SAMPLING_MODES`.
        generator: random source for ``"restricted_random"`` (torch's global generator when
            None); the other modes are deterministic and ignore it.

    Returns:
        T indices, or ``ceil(n/T) * T`` for ``"dense"``.
    """
    n, T = num_frames_in_tracklet, num_frames
    check_positive_int(n, "num_frames_in_tracklet")
    check_positive_int(T, "num_frames")
    if mode == "chunk_first":
        c = -(-n // T)
        return [min(t * c, n - 1) for t in range(T)]
    if mode == "uniform":
        step = n / T
        return [math.floor(t * step) for t in range(T)]
    if mode == "restricted_random":
        starts = [(t * n) // T for t in range(T + 1)]
        widths = [max(starts[t + 1] - starts[t], 1) for t in range(T)]
        u = torch.rand(T, generator=generator, dtype=torch.float64).tolist()
        return [starts[t] + min(int(u[t] * widths[t]), widths[t] - 1) for t in range(T)]
    if mode == "dense":
        out: list[int] = []
        for s in range(0, n, T):
            clip = list(range(s, min(s + T, n)))
            out.extend(clip[i % len(clip)] for i in range(T))
        return out
    raise ValueError(f"mode: expected one of {SAMPLING_MODES}, got {mode!r}")

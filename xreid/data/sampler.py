"""Cross-modal identity batch sampler: P identities x (K visible + K infrared) per batch."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from xreid._validation import check_positive_int
from xreid.constants import INFRARED, VISIBLE
from xreid.data.tracklet import Tracklet

__all__ = ["CrossModalIdentitySampler"]

_M64 = (1 << 64) - 1


class CrossModalIdentitySampler(torch.utils.data.Sampler[list[int]]):
    """Batch sampler for cross-modal training; yields lists of indices into ``tracklets``.

    **Batch order (a contract):** a batch has ``2 * P * K`` indices (P = ``ids_per_batch``,
    K = ``clips_per_modality``): first the P*K visible ones in identity-major order
    (id0 clip0, id0 clip1, ..., id1 clip0, ...), then the P*K infrared ones in the *same*
    identity order, so visible position ``i`` and infrared position ``i`` share the identity.
    Every batch holds exactly P distinct identities.

    Only training tracklets (``label >= 0``) are used; every training identity must have at
    least one visible and one infrared tracklet (``ValueError`` naming the identity otherwise).

    **Drawing.** Each identity y gets ``u_y = max(1, min(n_vis_y, n_ir_y) // K)``
    appearances per epoch. The appearances are shuffled and cut into batches of P distinct
    identities (a fresh shuffled cycle is appended when fewer than P distinct identities
    remain). The K clips of an identity in one modality are the next K entries of a shuffled
    cycle over its tracklets in that modality, all distinct within the batch; only when an
    identity has fewer than K tracklets in a modality are some repeated (with replacement).
    Everything derives from ``numpy.random.default_rng([seed, epoch, ...])``: deterministic
    per (seed, epoch), re-drawn by :meth:`set_epoch`.

    **Length.** ``len(sampler) = batches_per_epoch`` if given, else
    ``sum(u_y) / (P * num_replicas)`` rounded down (``drop_last=True``) or up — about one
    pass over the smaller modality per epoch, as the authors' sampler. Batches are always full.

    **DDP.** Each epoch the identities are shuffled with a seed shared by all ranks and rank r
    takes every ``num_replicas``-th one, so ranks get disjoint identities; every rank yields
    ``len(sampler)`` batches. Needs at least ``P * num_replicas`` identities.

    Args:
        tracklets: all tracklets of the dataset (indices refer to this sequence).
        ids_per_batch: P.
        clips_per_modality: K.
        seed: base seed.
        num_replicas, rank: distributed world size and this process's rank.
        drop_last: round the epoch length down (True) or up (False).
        batches_per_epoch: fixed number of batches per epoch (overrides the above).
    """

    def __init__(
        self,
        tracklets: Sequence[Tracklet],
        *,
        ids_per_batch: int = 4,
        clips_per_modality: int = 2,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = True,
        batches_per_epoch: int | None = None,
    ) -> None:
        for name, v in (("ids_per_batch", ids_per_batch),
                        ("clips_per_modality", clips_per_modality),
                        ("num_replicas", num_replicas)):
            check_positive_int(v, name)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"rank: expected an integer in [0, {num_replicas}), got {rank!r}")
        if batches_per_epoch is not None and (not isinstance(batches_per_epoch, int)
                                              or batches_per_epoch < 1):
            raise ValueError(f"batches_per_epoch: expected None or an integer >= 1, got "
                             f"{batches_per_epoch!r}")
        self.ids_per_batch = ids_per_batch
        self.clips_per_modality = clips_per_modality
        self.seed = int(seed)
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = bool(drop_last)
        self.epoch = 0

        index: dict[int, tuple[list[int], list[int]]] = {}
        pid_of: dict[int, int] = {}
        for i, t in enumerate(tracklets):
            if t.label < 0:
                continue
            vis, ir = index.setdefault(t.label, ([], []))
            (vis if t.modality == VISIBLE else ir).append(i)
            pid_of.setdefault(t.label, t.pid)
        if not index:
            raise ValueError("tracklets: no training tracklets (label >= 0)")
        for label in sorted(index):
            vis, ir = index[label]
            if not vis or not ir:
                missing = "visible" if not vis else "infrared"
                raise ValueError(f"tracklets: identity label {label} (pid {pid_of[label]}) has "
                                 f"no {missing} training tracklet; every identity needs both "
                                 "modalities")
        need = ids_per_batch * num_replicas
        if len(index) < need:
            raise ValueError(f"ids_per_batch: {ids_per_batch} identities per batch x "
                             f"{num_replicas} replicas need at least {need} training "
                             f"identities, got {len(index)}")
        self._labels = np.array(sorted(index), dtype=np.int64)
        self._index = {y: (np.array(v), np.array(r)) for y, (v, r) in index.items()}
        K = clips_per_modality
        self._units = {y: max(1, min(len(v), len(r)) // K) for y, (v, r) in index.items()}
        if batches_per_epoch is not None:
            self._len = batches_per_epoch
        else:
            per = sum(self._units.values()) / (ids_per_batch * num_replicas)
            self._len = max(1, math.floor(per) if self.drop_last else math.ceil(per))

    @property
    def batch_size(self) -> int:
        """Indices per batch: ``2 * ids_per_batch * clips_per_modality``."""
        return 2 * self.ids_per_batch * self.clips_per_modality

    @property
    def num_identities(self) -> int:
        """Training identities available (all ranks together)."""
        return len(self._labels)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to draw; batches are a function of (seed, epoch, rank) only."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._len

    def rank_identities(self, rank: int | None = None) -> list[int]:
        """Labels assigned to ``rank`` (default: this rank) in the current epoch."""
        r = self.rank if rank is None else rank
        perm = np.random.default_rng([self.seed & _M64, self.epoch & _M64]).permutation(
            self._labels)
        return sorted(perm[r::self.num_replicas].tolist())

    def __iter__(self) -> Iterator[list[int]]:
        P = self.ids_per_batch
        mine = np.array(self.rank_identities(), dtype=np.int64)
        rng = np.random.default_rng([self.seed & _M64, self.epoch & _M64, 1 + self.rank])
        units = np.array([self._units[int(y)] for y in mine])
        pool: list[int] = []
        queues: dict[tuple[int, int], list[int]] = {}
        for _ in range(self._len):
            chosen: list[int] = []
            i = 0
            while len(chosen) < P:
                if i >= len(pool):
                    pool.extend(rng.permutation(np.repeat(mine, units)).tolist())
                y = pool[i]
                if y in chosen:
                    i += 1
                else:
                    chosen.append(y)
                    del pool[i]
            vis = [j for y in chosen for j in self._take(y, VISIBLE, rng, queues)]
            ir = [j for y in chosen for j in self._take(y, INFRARED, rng, queues)]
            yield vis + ir

    def _take(self, label: int, modality: int, rng: np.random.Generator,
              queues: dict[tuple[int, int], list[int]]) -> list[int]:
        K = self.clips_per_modality
        items = self._index[label][0 if modality == VISIBLE else 1]
        if len(items) < K:  # too few tracklets: all of them, then repeats
            return rng.permutation(items).tolist() + rng.choice(items, K - len(items)).tolist()
        q = queues.get((label, modality), [])
        if len(q) >= K:
            queues[(label, modality)] = q[K:]
            return q[:K]
        cycle = rng.permutation(items).tolist()
        extra = [i for i in cycle if i not in q][: K - len(q)]
        queues[(label, modality)] = [i for i in cycle if i not in extra]
        return q + extra

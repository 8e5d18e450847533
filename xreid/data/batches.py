"""The training batches of a run: augmented clips in the cross-modal identity order.

:class:`TrainBatches` builds the training transform, the clip dataset (restricted random
sampling of T frames) and :class:`~xreid.data.CrossModalIdentitySampler` once, and yields the
batches of an epoch: ``video`` (B, T, 3, H, W), ``label``, ``modality``, ``camera`` (B,).
Deterministic per (seed, epoch); an epoch that needs more iterations than one pass of the
sampler cycles it with a new sub-epoch seed (``epoch * 1000 + cycle``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from xreid.data.config import DataConfig
from xreid.data.dataset import VideoClipDataset
from xreid.data.sampler import CrossModalIdentitySampler
from xreid.data.tracklet import Tracklet
from xreid.data.transforms import ClipTransform

__all__ = ["TrainBatches"]


class TrainBatches:
    """``batches(epoch)`` iterates the ``len(batches)`` training batches of the 0-based epoch.

    Args:
        tracklets: the training split.
        data: clip shape, batch composition and augmentation (:class:`DataConfig`).
        seed: seed of the sampler, the frame sampling and the augmentation.
        iterations: batches per epoch (None: one pass of the sampler).
        rank, world_size: this process's shard of the identities (DDP).
        pin_memory: pin the loader's memory (CUDA).
    """

    def __init__(self, tracklets: Sequence[Tracklet], data: DataConfig, *, seed: int = 0,
                 iterations: int | None = None, rank: int = 0, world_size: int = 1,
                 pin_memory: bool = False) -> None:
        transform = ClipTransform(tuple(data.img_size), train=True,
                                  normalization=data.normalization, flip_p=data.flip_p,
                                  pad=data.pad, erasing_p=data.erasing_p)
        self.dataset = VideoClipDataset(tracklets, num_frames=data.num_frames,
                                        sampling="restricted_random", transform=transform,
                                        seed=seed)
        self.sampler = CrossModalIdentitySampler(
            tracklets, ids_per_batch=data.ids_per_batch,
            clips_per_modality=data.clips_per_modality, seed=seed, num_replicas=world_size,
            rank=rank)
        if len(self.sampler) == 0:
            num_ids = len({t.pid for t in tracklets})
            raise ValueError(
                "ids_per_batch: the training set has too few identities for one batch per "
                f"rank (ids_per_batch={data.ids_per_batch}, world size {world_size}, "
                f"{num_ids} identities)"
            )
        self.iterations = iterations
        self.num_workers = data.num_workers
        self.pin_memory = pin_memory

    def __len__(self) -> int:
        return self.iterations or len(self.sampler)

    def __call__(self, epoch: int) -> Iterator[dict[str, Any]]:
        needed = len(self)
        produced, cycle = 0, 0
        while produced < needed:
            sub_epoch = epoch * 1000 + cycle
            self.sampler.set_epoch(sub_epoch)
            self.dataset.set_epoch(sub_epoch)
            loader = torch.utils.data.DataLoader(
                self.dataset, batch_sampler=self.sampler, num_workers=self.num_workers,
                pin_memory=self.pin_memory,
            )
            for batch in loader:
                yield batch
                produced += 1
                if produced >= needed:
                    return
            cycle += 1

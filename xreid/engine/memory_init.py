"""The CPC memory initialisation as a trainer hook (paper: "Cross-modal Prototype
Collaboration"; the prototypes of Eq. 1 start from the encoder's clip features).

:class:`MemoryInitHook` rebuilds the prototypes of an :class:`~xreid.XReID` model before the
first epoch (``memory_init="once"``, the paper) or before every epoch (``"every_epoch"``, the
authors' code): every training tracklet gives one clip (restricted random sampling, T frames,
no augmentation, eval mode, no gradient), its feature is the training batches' memory feature
(``memory_norm`` of the clip feature, the camera embedding included when used) normalised with
the mean and biased variance of the whole training set (N, F), and each identity's prototype
per modality is the mean of its clips. Under DDP each rank extracts a disjoint shard and the
statistics and per-identity sums are all-reduced.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xreid.data.dataset import VideoClipDataset
from xreid.data.transforms import ClipTransform
from xreid.engine.hooks import Hook
from xreid.memory.build import extract_memory_features

__all__ = ["MemoryInitHook", "feature_statistics"]


def feature_statistics(x: torch.Tensor, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (biased, as BatchNorm) variance per column of ``x`` (N, F), in float64, over
    every rank's rows (all-reduced when ``world_size`` > 1); returned as float32 (F,)."""
    x = x.double()
    stats = torch.cat([x.sum(0), (x * x).sum(0), x.new_tensor([x.shape[0]])])
    if world_size > 1:
        torch.distributed.all_reduce(stats)
    f = x.shape[1]
    n = stats[-1]
    mean = stats[:f] / n
    var = stats[f : 2 * f] / n - mean * mean
    return mean.float(), var.clamp_min(0).float()


class MemoryInitHook(Hook):
    """(Re)build the CPC prototypes of ``model`` from the ``tracklets`` of the training split.

    Args:
        model: the (unwrapped) X-ReID model; a model without memory is left alone.
        tracklets: the training tracklets.
        num_frames, img_size, normalization: the clip, as training reads it.
        every_epoch: rebuild before every epoch (else once, before the first).
        seed: seed of the frame sampling (with the epoch).
        batch_size, num_workers: the extraction's loader.
        device, autocast_dtype: where and in which precision the extraction runs.
        use_cameras: include the camera embedding, as training does.
        rank, world_size: this process's shard of the tracklets.
    """

    main_process_only = False

    def __init__(self, model: nn.Module, tracklets: Any, *, num_frames: int,
                 img_size: tuple[int, int], normalization: str, every_epoch: bool = False,
                 seed: int = 0, batch_size: int = 32, num_workers: int = 0,
                 device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None,
                 use_cameras: bool = False, rank: int = 0, world_size: int = 1) -> None:
        self.model = model
        self.tracklets = tracklets
        self.num_frames = num_frames
        self.img_size = tuple(img_size)
        self.normalization = normalization
        self.every_epoch = every_epoch
        self.seed = seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.device = torch.device(device)
        self.autocast_dtype = autocast_dtype
        self.use_cameras = use_cameras
        self.rank = rank
        self.world_size = world_size
        self.initialized = False

    def on_epoch_start(self, trainer: Any, epoch: int, num_iterations: int) -> None:
        if self.model.memory is None:
            return
        if self.every_epoch or not self.initialized:
            trainer.message(f"initialising the CPC memory (epoch {epoch + 1})")
            self.initialize(epoch)

    def initialize(self, epoch: int = 0) -> None:
        """Rebuild the prototypes now, sampling the clips of ``epoch`` (a no-op without
        memory)."""
        core = self.model
        if core.memory is None:
            return
        dataset = VideoClipDataset(
            self.tracklets, num_frames=self.num_frames, sampling="restricted_random",
            transform=ClipTransform(self.img_size, train=False, normalization=self.normalization),
            seed=self.seed,
        )
        dataset.set_epoch(epoch)
        # each rank extracts a disjoint shard; ``initialize`` all-reduces the per-identity sums
        shard = torch.utils.data.Subset(dataset, range(self.rank, len(dataset), self.world_size))
        loader = torch.utils.data.DataLoader(shard, batch_size=self.batch_size, shuffle=False,
                                             num_workers=self.num_workers)
        use_cameras = self.use_cameras

        def clip_features(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
            # the same clip feature as training's (camera embedding included when used)
            return model.clip_features(batch["video"], batch["camera"] if use_cameras else None)

        raw, labels, modality = extract_memory_features(
            core, loader, feature_fn=clip_features, device=self.device,
            autocast_dtype=self.autocast_dtype)
        # the training batches' memory feature is BN with batch statistics: normalise every
        # clip with the statistics of the whole training set (every rank's shard)
        with torch.no_grad():
            mean, var = feature_statistics(raw, self.world_size)
            core.memory.initialize(core.memory_norm(raw, mean, var), labels, modality)
        self.initialized = True

    def state_dict(self) -> dict[str, Any]:
        return {"memory_initialized": self.initialized}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.initialized = bool(state.get("memory_initialized", True))

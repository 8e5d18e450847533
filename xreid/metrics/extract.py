"""Tracklet embeddings for a query or gallery split: batched clips through ``model.embed``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from xreid._torch_utils import eval_mode, model_device
from xreid._validation import check_positive_int, shape_str

__all__ = ["ExtractedFeatures", "Progress", "extract_features", "report_progress"]

Progress = Callable[[int, int | None], object] | Any
"""``callable(done, total)`` or a tqdm-like object with ``update(n)``."""


class ExtractedFeatures(NamedTuple):
    """Output of :func:`extract_features` (unpacks as ``features, pids, cameras``).

    Attributes:
        features: ``(M, E)`` float32 CPU tensor, one row per tracklet, not normalised.
        pids: ``(M,)`` int64 CPU tensor.
        cameras: ``(M,)`` int64 CPU tensor.
    """

    features: torch.Tensor
    pids: torch.Tensor
    cameras: torch.Tensor


def report_progress(progress: Progress | None, done: int, total: int | None, step: int) -> None:
    """Tell ``progress`` that ``step`` more items are done (``done`` of ``total`` so far)."""
    if progress is None:
        return
    update = getattr(progress, "update", None)
    if callable(update):
        update(step)
    else:
        progress(done, total)


def _embed_fn(model: nn.Module) -> Callable[..., torch.Tensor]:
    fn = getattr(model, "embed", None)
    return fn if callable(fn) else model


def _wants_cameras(model: nn.Module, use_cameras: bool) -> bool:
    """Pass cameras unless disabled or the model declares it has no camera embedding."""
    return use_cameras and getattr(model, "num_cameras", None) != 0


def _embed_video(
    embed: Callable[..., torch.Tensor],
    video: torch.Tensor,
    cameras: torch.Tensor | None,
    max_clips: int,
) -> torch.Tensor:
    """``video`` (B, T, 3, H, W) -> (B, E), at most ``max_clips`` clips per call."""
    outs = []
    for s in range(0, video.shape[0], max_clips):
        v = video[s : s + max_clips]
        if cameras is None:
            out = embed(v)
        else:
            out = embed(v, cameras=cameras[s : s + max_clips])
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != v.shape[0]:
            got = shape_str(out) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"model: expected embed(video) to return ({v.shape[0]}, E), got {got}"
            )
        outs.append(out.float())
    return torch.cat(outs) if len(outs) > 1 else outs[0]


def _as_long(x: object, name: str, batch: int) -> torch.Tensor:
    t = torch.as_tensor(x).reshape(-1).long()
    if t.numel() != batch:
        raise ValueError(f"{name}: expected {batch} entries in the batch, got {t.numel()}")
    return t


def extract_features(
    model: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    *,
    device: str | torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
    progress: Progress | None = None,
    use_cameras: bool = True,
    max_clips_per_forward: int = 64,
) -> ExtractedFeatures:
    """Embed every tracklet of ``loader`` with ``model.embed`` (``model(video)`` if absent).

    Args:
        model: a module with ``embed(video (B, T, 3, H, W), cameras=None) -> (B, E)`` such as
            :class:`xreid.XReID`. It is put in eval mode and every submodule's mode is
            restored afterwards. It is not moved: it must already live on ``device``.
        loader: yields dicts as :class:`xreid.data.VideoClipDataset` makes them (collated):
            ``"video"`` float ``(B, T, 3, H, W)``, or ``(B, n_clips, T, 3, H, W)`` for
            ``sampling="dense"`` (then the clip embeddings of a tracklet are averaged);
            ``"pid"`` ``(B,)``; ``"camera"`` ``(B,)``; optionally ``"index"`` ``(B,)``.
        device: where the clips go; ``None``: the model's device.
        autocast_dtype: e.g. ``torch.bfloat16`` to run under ``torch.autocast``; features are
            returned in float32 either way.
        progress: ``callable(done, total)`` (tracklets done, ``len(loader.dataset)`` or None)
            or a tqdm-like object whose ``update(n)`` is called per batch.
        use_cameras: pass ``batch["camera"]`` to ``embed`` (skipped anyway when the model has
            ``num_cameras == 0``).
        max_clips_per_forward: dense mode: clips per ``embed`` call (bounds memory for long
            tracklets).

    Returns:
        :class:`ExtractedFeatures` ``(features (M, E) float32 CPU, pids (M,), cameras (M,))``.
        Rows follow ``batch["index"]`` when every batch carries it (so a shuffling loader
        still gives dataset order), else loader order.
    """
    check_positive_int(max_clips_per_forward, "max_clips_per_forward")
    dev = model_device(model) if device is None else torch.device(device)
    dataset = getattr(loader, "dataset", None)
    total = len(dataset) if dataset is not None and hasattr(dataset, "__len__") else None
    embed = _embed_fn(model)
    with_cameras = _wants_cameras(model, use_cameras)
    autocast = (
        torch.autocast(device_type=dev.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    feats: list[torch.Tensor] = []
    pids: list[torch.Tensor] = []
    cams: list[torch.Tensor] = []
    indices: list[torch.Tensor] | None = []
    done = 0
    with eval_mode(model), torch.inference_mode(), autocast:
        for bi, batch in enumerate(loader):
            if not isinstance(batch, Mapping) or "video" not in batch:
                raise ValueError(f"loader: expected batches that are dicts with a 'video' "
                                 f"entry, got {type(batch).__name__} at batch {bi}")
            video = batch["video"]
            if not isinstance(video, torch.Tensor) or video.dim() not in (5, 6):
                got = shape_str(video) if isinstance(video, torch.Tensor) else type(video)
                raise ValueError(f"video: expected (B, T, 3, H, W) or (B, n_clips, T, 3, H, W), "
                                 f"got {got} at batch {bi}")
            B = video.shape[0]
            pid = _as_long(batch["pid"], "pid", B)
            cam = _as_long(batch["camera"], "camera", B)
            video = video.to(dev, non_blocking=True)
            if video.dim() == 6:  # dense: every clip of the tracklet, averaged
                n_clips = video.shape[1]
                clips = video.flatten(0, 1)
                cam_arg = cam.repeat_interleave(n_clips).to(dev) if with_cameras else None
                out = _embed_video(embed, clips, cam_arg, max_clips_per_forward)
                out = out.view(B, n_clips, -1).mean(dim=1)
            else:
                cam_arg = cam.to(dev) if with_cameras else None
                out = _embed_video(embed, video, cam_arg, max(B, 1))
            feats.append(out.float().cpu())
            pids.append(pid)
            cams.append(cam)
            if indices is not None:
                if "index" in batch:
                    indices.append(_as_long(batch["index"], "index", B))
                else:
                    indices = None
            done += B
            report_progress(progress, done, total, B)
    if not feats:
        empty = torch.zeros(0, dtype=torch.long)
        return ExtractedFeatures(torch.zeros(0, 0), empty, empty.clone())
    features = torch.cat(feats)
    pid_t, cam_t = torch.cat(pids), torch.cat(cams)
    if indices:
        order = torch.argsort(torch.cat(indices), stable=True)
        features, pid_t, cam_t = features[order], pid_t[order], cam_t[order]
    return ExtractedFeatures(features, pid_t, cam_t)

"""Clip dataset over tracklets: frame sampling, Pillow decoding, clip transforms."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from xreid._validation import check_positive_int
from xreid.data.sampling import SAMPLING_MODES, sample_frame_indices
from xreid.data.tracklet import DataError, DataFileNotFoundError, Tracklet
from xreid.data.transforms import ClipTransform

__all__ = ["VideoClipDataset", "item_seed", "load_frame"]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The 63-bit seed of item ``index`` in ``epoch``: a hash of ``(seed, epoch, index)``.

    Independent of worker count and order, so a clip is the same whichever worker makes it.
    """
    h = _splitmix64(seed & _MASK64)
    h = _splitmix64(h ^ (epoch & _MASK64))
    h = _splitmix64(h ^ (index & _MASK64))
    return h >> 1


def load_frame(path: str, size: tuple[int, int] | None = None, *, draft: bool = True
               ) -> np.ndarray:
    """Decode one image as an RGB uint8 array ``(H, W, 3)``, optionally resized to ``size``.

    Grayscale (infrared) images are converted to 3 channels. ``size=(h, w)`` resizes with
    Pillow bilinear (as the authors' ``RectScale``); with ``draft``, a JPEG at least twice the
    target size is first decoded at a reduced DCT scale, which is much faster.

    Raises:
        DataFileNotFoundError: the file does not exist (path named).
        DataError: the file cannot be decoded (path named; the cause is chained).
    """
    return _decode(path, size, draft=draft, resize=True)


def _decode(path: str, size: tuple[int, int] | None, *, draft: bool, resize: bool
            ) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if size is not None and draft and im.format == "JPEG":
                im.draft("RGB", (size[1], size[0]))
            rgb = im.convert("RGB")
            if resize and size is not None and rgb.size != (size[1], size[0]):
                rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return np.asarray(rgb)
    except FileNotFoundError as err:
        raise DataFileNotFoundError(f"frame file {path} does not exist") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot decode image {path}: {err}") from err


class VideoClipDataset(torch.utils.data.Dataset):
    """Map-style dataset of clips sampled from tracklets.

    Args:
        tracklets: the tracklets (e.g. ``reader.train`` or ``reader.query("i2v")``).
        num_frames: T, frames per clip.
        sampling: one of :data:`~xreid.data.SAMPLING_MODES`; ``"restricted_random"`` for
            training, ``"chunk_first"``/``"uniform"`` for testing, ``"dense"`` for every frame.
        transform: called as ``transform(video_uint8 (T, 3, H, W), generator)`` and returning
            a float tensor. Default: ``ClipTransform((288, 144), train=False)`` (ImageNet
            normalisation). The transform receives the decoded frames and resizes them
            (:class:`ClipTransform` does); frames of one tracklet that differ in size are
            first resized to the transform's ``img_size`` (a transform without that
            attribute then raises).
        seed: base seed of the per-item random generators.
        jpeg_draft: allow Pillow's reduced-scale JPEG decoding for large frames.

    ``dataset[i]`` is a dict:

    * ``"video"``: float32 ``(T, 3, h, w)``; for ``"dense"`` ``(n_clips, T, 3, h, w)`` with
      ``n_clips = ceil(n / T)``, the last clip padded by cycling its own frames (use
      ``batch_size=1`` or a custom collate: ``n_clips`` varies);
    * ``"pid"``, ``"label"``, ``"camera"``, ``"modality"``: ints from the tracklet;
    * ``"index"``: ``i``;
    * ``"frame_indices"``: int64 tensor of the sampled frame indices, shaped like the clip
      axes of ``"video"``.

    Randomness (frame choice and augmentation) comes from a ``torch.Generator`` seeded with
    :func:`item_seed` ``(seed, epoch, i)``, so an item is reproducible and identical in any
    DataLoader worker. Call :meth:`set_epoch` before each epoch to re-draw; with
    ``persistent_workers=True`` the workers keep the epoch they started with.
    """

    def __init__(
        self,
        tracklets: Sequence[Tracklet],
        *,
        num_frames: int = 10,
        sampling: str = "chunk_first",
        transform: Callable[..., torch.Tensor] | None = None,
        seed: int = 0,
        jpeg_draft: bool = True,
    ) -> None:
        check_positive_int(num_frames, "num_frames")
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling: expected one of {SAMPLING_MODES}, got {sampling!r}")
        self.tracklets = list(tracklets)
        for i, t in enumerate(self.tracklets):
            if not isinstance(t, Tracklet):
                raise ValueError(f"tracklets[{i}]: expected a Tracklet, got "
                                 f"{type(t).__name__}")
        self.num_frames = num_frames
        self.sampling = sampling
        self.transform = ClipTransform((288, 144), train=False) if transform is None else transform
        size = getattr(self.transform, "img_size", None)
        self._size: tuple[int, int] | None = (int(size[0]), int(size[1])) if size else None
        self.seed = int(seed)
        self.epoch = 0
        self.jpeg_draft = jpeg_draft
        self._pass_generator = _accepts_generator(self.transform)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws :meth:`__getitem__` makes."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.tracklets)

    def generator(self, index: int) -> torch.Generator:
        """The generator used by item ``index`` in the current epoch."""
        return torch.Generator().manual_seed(item_seed(self.seed, self.epoch, index))

    def load_clip(self, tracklet: Tracklet, indices: Sequence[int]) -> torch.Tensor:
        """Decode ``tracklet.frames[indices]`` into a uint8 ``(len(indices), 3, H, W)``.

        Frames keep their decoded size (JPEG draft mode may shrink big ones by a power of two
        toward the transform's ``img_size``); the transform resizes them. If frames differ in
        size they are resized to ``img_size`` here with Pillow.
        """
        decoded: dict[int, np.ndarray] = {}
        for k in indices:
            if k not in decoded:
                decoded[k] = _decode(tracklet.frames[k], self._size, draft=self.jpeg_draft,
                                     resize=False)
        if len({a.shape for a in decoded.values()}) > 1:
            if self._size is None:
                shapes = sorted({a.shape for a in decoded.values()})
                raise DataError(f"tracklet of pid {tracklet.pid} starting at "
                                f"{tracklet.frames[0]}: frames differ in size {shapes}; use a "
                                "transform with an img_size attribute (e.g. ClipTransform)")
            h, w = self._size
            for k, a in decoded.items():
                if a.shape[:2] != (h, w):
                    decoded[k] = np.asarray(Image.fromarray(a).resize(
                        (w, h), Image.Resampling.BILINEAR))
        arr = np.stack([decoded[k] for k in indices])
        return torch.from_numpy(arr).permute(0, 3, 1, 2)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} tracklets")
        index = int(index) % len(self)
        t = self.tracklets[index]
        g = self.generator(index)
        T = self.num_frames
        idx = sample_frame_indices(len(t.frames), T, self.sampling, g)
        video = self.load_clip(t, idx)
        if self.sampling == "dense":
            n_clips = len(idx) // T
            clips = [self._apply(video[c * T:(c + 1) * T], g) for c in range(n_clips)]
            out = torch.stack(clips)
            frame_idx = torch.tensor(idx, dtype=torch.int64).view(n_clips, T)
        else:
            out = self._apply(video, g)
            frame_idx = torch.tensor(idx, dtype=torch.int64)
        return {"video": out, "pid": t.pid, "label": t.label, "camera": t.camera,
                "modality": t.modality, "index": index, "frame_indices": frame_idx}

    def _apply(self, video: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self._pass_generator:
            return self.transform(video, g)
        return self.transform(video)


def _accepts_generator(fn: Callable[..., Any]) -> bool:
    """Whether ``fn(video, generator)`` binds (otherwise it is called as ``fn(video)``)."""
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        return False
    except ValueError:  # no signature available (some builtins): assume it does
        return True
    return True

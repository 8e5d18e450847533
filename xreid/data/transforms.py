"""Sequence-consistent clip transforms as tensor ops (no torchvision).

:class:`ClipTransform` turns a uint8 clip ``(T, 3, H, W)`` into a normalised float32 clip
``(T, 3, h, w)``. Training mode applies, in order:

1. resize to ``img_size`` (bilinear, antialiased like Pillow's ``resize``; uint8 in, uint8
   out, on torch's fast uint8 path; skipped when the size already matches);
2. horizontal flip with probability ``flip_p``, **one decision per clip**;
3. pad by ``pad`` pixels (value ``pad_fill``) and random-crop back to ``img_size``, **one
   crop offset per clip** (MITML; the paper's "random cropping");
4. random erasing **per frame** with probability ``erasing_p``: a rectangle of area
   ``U(erasing_scale) * h * w`` and log-uniform aspect ratio in ``erasing_ratio``, placed at
   the sampled position (the authors' ``RandomSizedEarser`` pastes it at the wrong corner),
   filled with a random solid colour (``erasing_value="random"``) or a given colour;
5. ``/255`` and normalisation by ``(mean, std)``.

Evaluation mode (``train=False``) does 1 and 5 only. Every random draw comes from the
``generator`` argument (or a seed), so clips are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from xreid.constants import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD

__all__ = ["NORMALIZATIONS", "ClipTransform", "resolve_normalization"]

NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "clip": (CLIP_MEAN, CLIP_STD),
}

Normalization = str | tuple[Sequence[float], Sequence[float]] | None


def resolve_normalization(normalization: Normalization
                          ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``"imagenet"`` | ``"clip"`` | ``(mean, std)`` | None (mean 0, std 1) -> (mean, std)."""
    if normalization is None:
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if isinstance(normalization, str):
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization: expected one of {tuple(NORMALIZATIONS)}, a "
                             f"(mean, std) pair or None, got {normalization!r}")
        return NORMALIZATIONS[normalization]
    try:
        mean, std = normalization
        mean_t, std_t = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    except (TypeError, ValueError) as err:
        raise ValueError(f"normalization: expected a (mean, std) pair of 3 floats each, got "
                         f"{normalization!r}") from err
    if len(mean_t) != 3 or len(std_t) != 3 or min(std_t) <= 0:
        raise ValueError(f"normalization: expected 3 means and 3 positive stds, got "
                         f"{normalization!r}")
    return mean_t, std_t


def _pair(x: int | Sequence[int], name: str) -> tuple[int, int]:
    t = (x, x) if isinstance(x, int) else tuple(x)
    if len(t) != 2 or not all(isinstance(v, int) and v > 0 for v in t):
        raise ValueError(f"{name}: expected (height, width) positive integers, got {x!r}")
    return t[0], t[1]


def _min_max(x: Sequence[float], name: str, lo: float, hi: float) -> tuple[float, float]:
    a, b = (float(v) for v in x)
    if not lo <= a <= b <= hi:
        raise ValueError(f"{name}: expected (min, max) with {lo} <= min <= max <= {hi}, "
                         f"got {x!r}")
    return a, b


class ClipTransform:
    """Sequence-consistent clip transform; see the module docstring for the pipeline.

    Args:
        img_size: output ``(height, width)``.
        train: enable the random augmentations (flip, pad-crop, erasing).
        normalization: ``"imagenet"`` (the authors' loaders), ``"clip"``, ``(mean, std)``
            in [0, 1] pixel units, or None (only ``/255``).
        flip_p: probability of flipping the whole clip.
        pad: padding (pixels) before the random crop; 0 disables the crop.
        erasing_p: per-frame probability of random erasing; 0 disables it.
        erasing_scale: erased area as a fraction of the frame, ``(min, max)``.
        erasing_ratio: aspect ratio (h/w) range, sampled log-uniformly.
        erasing_value: ``"random"`` (a random solid RGB colour per erased frame) or an RGB
            colour in [0, 1] pixel units.
        pad_fill: pixel value (0..255) of the padding.

    Call: ``transform(video, generator=None) -> (T, 3, h, w) float32``. ``video`` is a uint8
    (or float in [0, 255]) tensor ``(T, 3, H, W)``, or a sequence of ``(3, H_i, W_i)`` frames
    (resized one by one). ``generator`` is a ``torch.Generator``, an int seed, or None (torch's
    global generator). The input is never modified.
    """

    def __init__(
        self,
        img_size: int | Sequence[int] = (288, 144),
        *,
        train: bool = False,
        normalization: Normalization = "imagenet",
        flip_p: float = 0.5,
        pad: int = 10,
        erasing_p: float = 0.5,
        erasing_scale: Sequence[float] = (0.02, 0.2),
        erasing_ratio: Sequence[float] = (0.3, 1 / 0.3),
        erasing_value: str | Sequence[float] = "random",
        pad_fill: int = 0,
    ) -> None:
        self.img_size = _pair(img_size, "img_size")
        self.train = bool(train)
        self.mean, self.std = resolve_normalization(normalization)
        for name, p in (("flip_p", flip_p), ("erasing_p", erasing_p)):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1], got {p!r}")
        self.flip_p = float(flip_p)
        self.erasing_p = float(erasing_p)
        if not isinstance(pad, int) or pad < 0:
            raise ValueError(f"pad: expected an integer >= 0, got {pad!r}")
        self.pad = pad
        self.erasing_scale = _min_max(erasing_scale, "erasing_scale", 0.0, 1.0)
        self.erasing_ratio = _min_max(erasing_ratio, "erasing_ratio", 1e-6, math.inf)
        if erasing_value == "random":
            self.erasing_value: tuple[float, ...] | None = None
        else:
            if isinstance(erasing_value, str) or len(erasing_value) != 3:
                raise ValueError(f"erasing_value: expected 'random' or 3 floats in [0, 1], got "
                                 f"{erasing_value!r}")
            self.erasing_value = tuple(255.0 * float(v) for v in erasing_value)
        if not 0 <= int(pad_fill) <= 255:
            raise ValueError(f"pad_fill: expected a pixel value in 0..255, got {pad_fill!r}")
        self.pad_fill = int(pad_fill)
        # fused normalisation: x * scale + shift == (x / 255 - mean) / std
        self._scale = torch.tensor([1.0 / (255.0 * s) for s in self.std]).view(3, 1, 1)
        self._shift = torch.tensor([-m / s for m, s in zip(self.mean, self.std)]).view(3, 1, 1)

    def __repr__(self) -> str:
        return (f"ClipTransform(img_size={self.img_size}, train={self.train}, mean={self.mean}, "
                f"std={self.std}, flip_p={self.flip_p}, pad={self.pad}, "
                f"erasing_p={self.erasing_p})")

    # ------------------------------------------------------------------ call
    def __call__(self, video: torch.Tensor | Sequence[torch.Tensor],
                 generator: torch.Generator | int | None = None) -> torch.Tensor:
        x = self._resize(video)
        if isinstance(generator, int) and not isinstance(generator, bool):
            generator = torch.Generator().manual_seed(generator)
        if self.train:
            if self.flip_p > 0 and float(torch.rand((), generator=generator)) < self.flip_p:
                x = x.flip(-1)
            if self.pad > 0:
                x = self._pad_crop(x, generator)
        out = x.to(torch.float32, copy=True)  # our own buffer from here on
        if self.train and self.erasing_p > 0:
            self._erase(out, generator)
        return out.mul_(self._scale).add_(self._shift).contiguous()

    def _resize(self, video: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        h, w = self.img_size
        if isinstance(video, torch.Tensor):
            if video.dim() != 4 or video.shape[1] != 3:
                raise ValueError(f"video: expected a (T, 3, H, W) tensor, got shape "
                                 f"{tuple(video.shape)}")
            if video.shape[0] == 0:
                raise ValueError("video: expected at least one frame, got T=0")
            if video.shape[-2:] == (h, w):
                return video
            return self._interpolate(video)
        frames = list(video)
        if not frames:
            raise ValueError("video: expected at least one frame, got an empty sequence")
        for i, f in enumerate(frames):
            if not isinstance(f, torch.Tensor) or f.dim() != 3 or f.shape[0] != 3:
                shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
                raise ValueError(f"video[{i}]: expected a (3, H, W) tensor, got {shape}")
        out = [f.unsqueeze(0) if f.shape[-2:] == (h, w) else self._interpolate(f.unsqueeze(0))
               for f in frames]
        dtype = torch.float32 if any(o.dtype != torch.uint8 for o in out) else torch.uint8
        return torch.cat([o.to(dtype) for o in out])

    def _interpolate(self, x: torch.Tensor) -> torch.Tensor:
        """Bilinear, antialiased resize; uint8 stays uint8 (fast path matching Pillow)."""
        if x.dtype == torch.uint8:
            return F.interpolate(x, size=self.img_size, mode="bilinear", align_corners=False,
                                 antialias=True)
        y = F.interpolate(x.float(), size=self.img_size, mode="bilinear", align_corners=False,
                          antialias=True)
        return y.clamp_(0.0, 255.0)

    def _pad_crop(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        p = self.pad
        dy, dx = (torch.randint(0, 2 * p + 1, (2,), generator=generator) - p).tolist()
        if dy == 0 and dx == 0:
            return x
        H, W = x.shape[-2:]
        out = torch.full_like(x, self.pad_fill)
        # out[y, x] = in[y + dy, x + dx] where inside, else the fill value
        ys, yd = max(dy, 0), max(-dy, 0)
        xs, xd = max(dx, 0), max(-dx, 0)
        hh, ww = H - abs(dy), W - abs(dx)
        if hh > 0 and ww > 0:
            out[..., yd:yd + hh, xd:xd + ww] = x[..., ys:ys + hh, xs:xs + ww]
        return out

    def _erase(self, x: torch.Tensor, generator: torch.Generator | None) -> None:
        T, _, H, W = x.shape
        lo, hi = math.log(self.erasing_ratio[0]), math.log(self.erasing_ratio[1])
        s0, s1 = self.erasing_scale
        apply = (torch.rand(T, generator=generator) < self.erasing_p).tolist()
        for t in range(T):
            if not apply[t]:
                continue
            for _ in range(10):
                u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
                area = (s0 + (s1 - s0) * u[0]) * H * W
                ratio = math.exp(lo + (hi - lo) * u[1])
                eh = round(math.sqrt(area * ratio))
                ew = round(math.sqrt(area / ratio))
                if 0 < eh < H and 0 < ew < W:
                    y0 = min(int(u[2] * (H - eh + 1)), H - eh)
                    x0 = min(int(u[3] * (W - ew + 1)), W - ew)
                    if self.erasing_value is None:
                        colour = torch.rand(3, generator=generator) * 255.0
                    else:
                        colour = torch.tensor(self.erasing_value)
                    x[t, :, y0:y0 + eh, x0:x0 + ew] = colour.view(3, 1, 1)
                    break

"""Procedural renderer of synthetic pedestrians in a visible and an infrared version.

Used by :mod:`xreid.data.synthetic`. Everything is numpy on a small pixel grid; a frame of
64x32 renders in well under a millisecond.

Identity cues (fixed per identity, shared by both modalities where physically sensible):

* body shape: height in the crop, torso width, leg length, head size;
* clothing: top colour + pattern (plain, horizontal/vertical stripes, two-tone, logo) in a
  second colour, garment length (shirt / jacket / coat), sleeve length, bottom colour,
  shorts or trousers, shoes;
* hair colour or a hat, skin tone, a bag (none / backpack / shoulder bag);
* gait: stride period and amplitude.

Visible frames show the colours; infrared frames show a *thermal* intensity: a fixed
non-linear, non-monotonic function of the garment colour (:func:`thermal`, so two colours of
equal brightness can look very different and vice versa), warm skin, cool shoes and bags,
then a per-camera gain/offset, a warm or cool background, blur and stronger noise. The
geometry (shape, pattern layout, gait) is identical in both, so the cross-modal link is
learnable but not given by a fixed pixel mapping.

Nuisances: per-camera illumination (gain, colour cast, gamma, side light) and background
(gradient, floor, poles, with a per-tracklet shift), per-tracklet scale, position, facing
direction and gait phase, per-frame detector jitter and scale drift, occluders (a static
pole or a passing object), sensor noise and JPEG compression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Camera", "Identity", "Scene", "render_background", "render_frame", "sample_camera",
           "sample_identity", "sample_scene", "thermal"]

_TOPS = np.array([
    (0.80, 0.12, 0.12), (0.55, 0.05, 0.10), (0.95, 0.50, 0.10), (0.95, 0.85, 0.20),
    (0.20, 0.65, 0.25), (0.08, 0.35, 0.15), (0.10, 0.55, 0.60), (0.15, 0.35, 0.85),
    (0.08, 0.10, 0.35), (0.50, 0.20, 0.65), (0.95, 0.55, 0.70), (0.93, 0.93, 0.90),
    (0.65, 0.65, 0.65), (0.10, 0.10, 0.10), (0.45, 0.28, 0.15), (0.85, 0.75, 0.55),
])
_BOTTOMS = np.array([
    (0.08, 0.08, 0.10), (0.10, 0.12, 0.30), (0.25, 0.38, 0.60), (0.45, 0.45, 0.47),
    (0.70, 0.62, 0.42), (0.40, 0.25, 0.15), (0.90, 0.90, 0.88), (0.15, 0.30, 0.15),
])
_SKINS = np.array([(0.96, 0.80, 0.68), (0.82, 0.62, 0.46), (0.55, 0.38, 0.26)])
_HAIRS = np.array([(0.06, 0.05, 0.05), (0.30, 0.18, 0.08), (0.85, 0.72, 0.40),
                   (0.55, 0.55, 0.55)])
_SHOES = np.array([(0.05, 0.05, 0.05), (0.92, 0.92, 0.92), (0.40, 0.25, 0.12)])


def thermal(rgb: np.ndarray) -> np.ndarray:
    """Infrared intensity in [0.12, 0.88] of a worn garment of colour ``rgb`` (``(..., 3)``).

    A fixed smooth non-linear function of the colour, *not* of its brightness: red and blue
    dyes look warm, green ones cool (green is the brightest channel in visible luminance), so
    the visible->infrared mapping is identity-consistent but has to be learned.
    """
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    z = 5.0 * (0.9 * r - 0.7 * g + 0.5 * b - 0.2)
    return 0.12 + 0.76 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class Identity:
    height: float        # person height as a fraction of the frame height
    width: float         # torso width as a fraction of the frame width
    leg: float           # hip height as a fraction of the person height (from the top)
    head: float          # head radius as a fraction of the person height
    top: np.ndarray      # RGB
    top2: np.ndarray     # pattern colour
    pattern: int         # 0 plain, 1 h-stripes, 2 v-stripes, 3 two-tone, 4 logo
    period: float        # stripe period, fraction of the person height
    hem: float           # top garment end, fraction of the person height
    long_sleeve: bool
    bottom: np.ndarray
    shorts: bool
    shoes: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    hat: np.ndarray | None
    bag: int             # 0 none, 1 backpack, 2 shoulder bag
    bag_colour: np.ndarray
    gait_period: float   # frames per stride
    stride: float        # foot swing, fraction of the person height
    skin_ir: float


@dataclass(frozen=True)
class Camera:
    gain: float
    cast: np.ndarray
    gamma: float
    side_light: float
    bg_top: np.ndarray
    bg_bottom: np.ndarray
    floor_y: float
    floor: np.ndarray
    poles: tuple[tuple[float, float, np.ndarray, float], ...]  # (x, width, rgb, ir)
    noise: float
    ir_gain: float
    ir_offset: float
    ir_bg: float
    ir_floor: float
    ir_noise: float
    ir_blur: bool


@dataclass(frozen=True)
class Scene:
    """Per-tracklet parameters (the same for the two halves of an aligned pair)."""

    scale: float
    x_shift: float
    facing: int
    phase: float
    drift: float
    bg_shift: float
    light: float
    jitter: np.ndarray           # (n, 2) per-frame (dx, dy) detector jitter, in pixels
    occluder: int                # 0 none, 1 pole, 2 passing object
    occ_x: float
    occ_w: float
    occ_rgb: np.ndarray
    occ_ir: float
    occ_speed: float


def _jitter_colour(rng: np.random.Generator, c: np.ndarray, amount: float = 0.06) -> np.ndarray:
    return _clip01(c + rng.uniform(-amount, amount, 3))


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw the appearance and gait of one identity."""
    ti = rng.integers(len(_TOPS))
    t2 = (ti + rng.integers(3, len(_TOPS) - 2)) % len(_TOPS)
    has_hat = rng.random() < 0.2
    return Identity(
        height=float(rng.uniform(0.72, 0.96)),
        width=float(rng.uniform(0.24, 0.48)),
        leg=float(rng.uniform(0.47, 0.56)),
        head=float(rng.uniform(0.055, 0.075)),
        top=_jitter_colour(rng, _TOPS[ti]),
        top2=_jitter_colour(rng, _TOPS[t2]),
        pattern=int(rng.choice(5, p=[0.3, 0.2, 0.15, 0.2, 0.15])),
        period=float(rng.choice([0.08, 0.12, 0.16])),
        hem=float(rng.choice([0.5, 0.58, 0.72])),
        long_sleeve=bool(rng.random() < 0.6),
        bottom=_jitter_colour(rng, _BOTTOMS[rng.integers(len(_BOTTOMS))]),
        shorts=bool(rng.random() < 0.25),
        shoes=_SHOES[rng.integers(len(_SHOES))],
        skin=_jitter_colour(rng, _SKINS[rng.integers(len(_SKINS))], 0.03),
        hair=_HAIRS[rng.integers(len(_HAIRS))],
        hat=_jitter_colour(rng, _TOPS[rng.integers(len(_TOPS))]) if has_hat else None,
        bag=int(rng.choice(3, p=[0.5, 0.3, 0.2])),
        bag_colour=_jitter_colour(rng, _BOTTOMS[rng.integers(len(_BOTTOMS))]),
        gait_period=float(rng.uniform(7.0, 14.0)),
        stride=float(rng.uniform(0.05, 0.12)),
        skin_ir=float(rng.uniform(0.8, 0.92)),
    )


def _around(rng: np.random.Generator, centre: float, half: float, d: float,
            size: int | None = None) -> Any:
    """``centre + d * U(-half, half)``: a nuisance whose spread scales with difficulty d."""
    return centre + d * rng.uniform(-half, half, size)


def sample_camera(rng: np.random.Generator, difficulty: float = 1.0) -> Camera:
    """Draw the illumination, background and sensor of one camera (both modalities).

    ``difficulty`` scales every nuisance spread (0 = neutral grey camera, 1 = strong).
    """
    d = difficulty
    poles = tuple(
        (float(rng.uniform(0.0, 1.0)), float(rng.uniform(0.05, 0.2)),
         _around(rng, 0.5, 0.4, d, 3), float(_around(rng, 0.35, 0.25, d)))
        for _ in range(int(rng.integers(0, 3)))
        if rng.random() < d
    )
    return Camera(
        gain=float(_around(rng, 0.975, 0.225, d)),
        cast=_around(rng, 1.0, 0.1, d, 3),
        gamma=float(_around(rng, 1.0, 0.15, d)),
        side_light=float(_around(rng, 0.0, 0.3, d)),
        bg_top=_around(rng, 0.5, 0.4, d, 3),
        bg_bottom=_around(rng, 0.5, 0.4, d, 3),
        floor_y=float(rng.uniform(0.6, 0.85)),
        floor=_around(rng, 0.45, 0.35, d, 3),
        poles=poles,
        noise=float(d * rng.uniform(0.015, 0.04)),
        ir_gain=float(_around(rng, 0.975, 0.125, d)),
        ir_offset=float(_around(rng, 0.0, 0.06, d)),
        ir_bg=float(_around(rng, 0.34, 0.26, d)),
        ir_floor=float(_around(rng, 0.275, 0.225, d)),
        ir_noise=float(0.01 + d * rng.uniform(0.02, 0.05)),
        ir_blur=bool(rng.random() < 0.5 * d),
    )


def sample_scene(rng: np.random.Generator, num_frames: int, occlusion_p: float,
                 difficulty: float = 1.0) -> Scene:
    """Draw the per-tracklet viewing conditions (spreads scaled by ``difficulty``)."""
    d = difficulty
    steps = rng.normal(0.0, 0.35 * d, (num_frames, 2))
    jitter = np.cumsum(steps, axis=0)
    jitter -= jitter.mean(axis=0)
    occ = int(rng.choice([1, 2])) if rng.random() < occlusion_p else 0
    return Scene(
        scale=float(_around(rng, 0.95, 0.09, d)),
        x_shift=float(_around(rng, 0.0, 0.06, d)),
        facing=int(rng.choice([-1, 1])),
        phase=float(rng.uniform(0.0, 2 * math.pi)),
        drift=float(_around(rng, 0.0, 0.006, d)),
        bg_shift=float(rng.uniform(-0.4, 0.4)),
        light=float(_around(rng, 1.0, 0.15, d)),
        jitter=jitter,
        occluder=occ,
        occ_x=float(rng.uniform(0.1, 0.9)),
        occ_w=float(rng.uniform(0.15, 0.3)),
        occ_rgb=rng.uniform(0.05, 0.95, 3),
        occ_ir=float(rng.uniform(0.1, 0.9)),
        occ_speed=float(rng.uniform(-0.08, 0.08)),
    )


def _clip01(x: np.ndarray) -> np.ndarray:
    """``clip(x, 0, 1)`` as two ufunc calls (``np.clip`` has a large per-call overhead)."""
    return np.minimum(np.maximum(x, 0.0), 1.0)


class _Canvas:
    """Two layers painted together: RGB ``(H, W, 3)`` and infrared ``(H, W)``.

    A layer whose flag is False is left untouched (saves work when one modality is unused).
    """

    def __init__(self, rgb: np.ndarray, ir: np.ndarray, want: tuple[bool, bool] = (True, True)
                 ) -> None:
        self.rgb, self.ir = rgb, ir
        self.want_rgb, self.want_ir = want

    def paint(self, alpha: np.ndarray, rgb: np.ndarray, ir: np.ndarray | float,
              sl: tuple[slice, slice] = (slice(None), slice(None))) -> None:
        """Blend colour ``rgb`` (``(3,)`` or per pixel) and ``ir`` with weight ``alpha``.

        ``alpha`` (and per-pixel colours) cover the window ``sl`` of the canvas.
        """
        if self.want_rgb:
            dst = self.rgb[sl]
            dst += alpha[..., None] * (rgb - dst)
        if self.want_ir:
            dst_ir = self.ir[sl]
            dst_ir += alpha * (ir - dst_ir)


def _capsule(xx: np.ndarray, yy: np.ndarray, x0: float, y0: float, x1: float, y1: float,
             r: float) -> np.ndarray:
    """Anti-aliased mask of a segment (x0,y0)-(x1,y1) thickened by radius ``r`` (pixels)."""
    dx, dy = x1 - x0, y1 - y0
    L2 = dx * dx + dy * dy
    if L2 < 1e-9:
        d = np.hypot(xx - x0, yy - y0)
    else:
        t = _clip01(((xx - x0) * dx + (yy - y0) * dy) / L2)
        d = np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy))
    return _clip01(r - d + 0.5)


def _box(xx: np.ndarray, yy: np.ndarray, x0: float, x1: float, y0: float, y1: float
         ) -> np.ndarray:
    """Anti-aliased mask of the axis-aligned box [x0, x1] x [y0, y1] (pixels)."""
    ax = _clip01(np.minimum(xx - x0, x1 - xx) + 0.5)
    ay = _clip01(np.minimum(yy - y0, y1 - yy) + 0.5)
    return ax * ay


class _Person:
    """Shapes in person-centric coordinates (x mirrored about ``xc`` when facing left),
    each evaluated only inside its bounding window of the canvas."""

    def __init__(self, canvas: _Canvas, xc: float, facing: int) -> None:
        self.canvas, self.xc, self.facing = canvas, xc, facing
        self.H, self.W = canvas.ir.shape
        self.yy, self.xx = _grid(self.H, self.W)

    def window(self, x0: float, x1: float, y0: float, y1: float
               ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
        """Canvas window of the person-space box; returns (slices, px, yy) or None."""
        if self.facing < 0:
            x0, x1 = 2 * self.xc - x1, 2 * self.xc - x0
        c0, c1 = max(math.floor(x0) - 1, 0), min(math.ceil(x1) + 1, self.W)
        r0, r1 = max(math.floor(y0) - 1, 0), min(math.ceil(y1) + 1, self.H)
        if c0 >= c1 or r0 >= r1:
            return None
        sl = (slice(r0, r1), slice(c0, c1))
        px = self.xc + self.facing * (self.xx[sl] - self.xc)
        return sl, px, self.yy[sl]

    def capsule(self, x0: float, y0: float, x1: float, y1: float, r: float
                ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray] | None:
        w = self.window(min(x0, x1) - r, max(x0, x1) + r, min(y0, y1) - r, max(y0, y1) + r)
        if w is None:
            return None
        sl, px, yy = w
        return sl, _capsule(px, yy, x0, y0, x1, y1, r), px, yy

    def box(self, x0: float, x1: float, y0: float, y1: float
            ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray] | None:
        w = self.window(x0, x1, y0, y1)
        if w is None:
            return None
        sl, px, yy = w
        return sl, _box(px, yy, x0, x1, y0, y1), px, yy

    def fill(self, shape: tuple[tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray] | None,
             rgb: np.ndarray, ir: float) -> None:
        if shape is not None:
            self.canvas.paint(shape[1], rgb, ir, shape[0])


_GRIDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _grid(H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    g = _GRIDS.get((H, W))
    if g is None:
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
        g = _GRIDS[(H, W)] = (yy, xx)
    return g


def render_background(cam: Camera, scene: Scene, size: tuple[int, int]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The static background of a tracklet: ``(rgb (H, W, 3), ir (H, W))`` floats."""
    H, W = size
    yy, xx = _grid(H, W)
    v = yy / H
    u = (xx / W + scene.bg_shift) % 1.0
    rgb = cam.bg_top * (1 - v[..., None]) + cam.bg_bottom * v[..., None]
    ir = cam.ir_bg * (1.1 - 0.3 * v)
    floor = _clip01((v - cam.floor_y) * H + 0.5)
    tiles = 0.85 + 0.15 * (np.floor((v - cam.floor_y) * 12.0 + u * 2.0) % 2)
    canvas = _Canvas(rgb, ir)
    canvas.paint(floor, cam.floor * tiles[..., None], cam.ir_floor * tiles)
    for px, pw, prgb, pir in cam.poles:
        cx = ((px + scene.bg_shift) % 1.0) * W
        canvas.paint(_box(xx, yy, cx - pw * W / 2, cx + pw * W / 2, -1.0, cam.floor_y * H),
                     prgb, pir)
    return canvas.rgb, canvas.ir


def render_frame(ident: Identity, cam: Camera, scene: Scene, t: int, size: tuple[int, int],
                 rng: np.random.Generator, modalities: tuple[bool, bool] = (True, True),
                 background: tuple[np.ndarray, np.ndarray] | None = None,
                 ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Render frame ``t`` of a tracklet; returns ``(rgb uint8 (H,W,3), ir uint8 (H,W))``.

    ``modalities = (want_rgb, want_ir)``; an unwanted output is None (noise is only drawn for
    the wanted ones). ``background`` is :func:`render_background` (computed if None; pass it
    to render many frames of one tracklet faster).
    """
    H, W = size
    yy, xx = _grid(H, W)
    if background is None:
        background = render_background(cam, scene, size)
    canvas = _Canvas(background[0].copy(), background[1].copy(), modalities)

    # ---------------------------------------------------------------- person geometry
    s = scene.scale * (1.0 + scene.drift * t)
    hb = ident.height * H * s
    phase = scene.phase + 2 * math.pi * t / ident.gait_period
    bob = 0.012 * hb * abs(math.sin(phase))
    jx, jy = scene.jitter[t]
    feet = H * 0.975 - bob + jy
    top = feet - hb
    xc = W * (0.5 + scene.x_shift) + jx
    person = _Person(canvas, xc, scene.facing)
    tw = ident.width * W * s
    shoulder = top + 0.16 * hb
    hem = top + ident.hem * hb
    hip = top + ident.leg * hb
    swing = ident.stride * hb * math.sin(phase)
    leg_r = 0.2 * tw
    arm_r = 0.13 * tw
    head_r = ident.head * hb
    head_c = top + head_r * 1.05
    skin_rgb, skin_ir = ident.skin, ident.skin_ir
    top_ir = float(thermal(ident.top))
    bag_ir = 0.75 * float(thermal(ident.bag_colour))

    def split_paint(shape: tuple | None, y_split: float, upper: tuple, lower: tuple) -> None:
        if shape is None:
            return
        sl, m, _px, yy_ = shape
        low = _clip01(yy_ - y_split + 0.5)
        canvas.paint(m * (1 - low), upper[0], upper[1], sl)
        canvas.paint(m * low, lower[0], lower[1], sl)

    # backpack behind the body
    if ident.bag == 1:
        bx = xc - 0.55 * tw
        person.fill(person.box(bx - 0.22 * tw, bx + 0.22 * tw, shoulder + 0.02 * hb,
                               shoulder + 0.3 * hb), ident.bag_colour, bag_ir)
    # legs and shoes
    leg_ir = float(thermal(ident.bottom))
    fy = feet - 0.03 * hb
    for side, sw in ((-1, swing), (1, -swing)):
        hx = xc + side * 0.22 * tw
        fx = hx + sw
        leg = person.capsule(hx, hip, fx, fy, leg_r)
        if ident.shorts:
            split_paint(leg, hip + 0.45 * (fy - hip), (ident.bottom, leg_ir),
                        (skin_rgb, skin_ir))
        else:
            person.fill(leg, ident.bottom, leg_ir)
        person.fill(person.capsule(fx, fy + 0.01 * hb, fx + 0.06 * hb, fy + 0.01 * hb,
                                   leg_r * 1.05), ident.shoes, 0.22)
    # torso with its pattern
    w = person.window(xc - 0.5 * tw, xc + 0.5 * tw, shoulder, hem)
    if w is not None:
        sl, px, yy_ = w
        m = np.maximum(_capsule(px, yy_, xc, shoulder + 0.3 * tw, xc, hem - 0.3 * tw, 0.5 * tw),
                       _box(px, yy_, xc - 0.5 * tw, xc + 0.5 * tw, shoulder + 0.3 * tw, hem))
        if ident.pattern == 0:
            canvas.paint(m, ident.top, top_ir, sl)
        else:
            if ident.pattern == 1:
                pm = (((yy_ - shoulder) / (ident.period * hb)) % 1.0 < 0.5) * 1.0
            elif ident.pattern == 2:
                pm = (((px - xc) / (ident.period * hb) + 0.25) % 1.0 < 0.5) * 1.0
            elif ident.pattern == 3:
                pm = _clip01(yy_ - (shoulder + hem) / 2 + 0.5)
            else:
                pm = _box(px, yy_, xc - 0.22 * tw, xc + 0.22 * tw, shoulder + 0.12 * hb,
                          shoulder + 0.25 * hb)
            col = ident.top + pm[..., None] * (ident.top2 - ident.top)
            canvas.paint(m, col, thermal(col), sl)
    # arms (swing opposite to the legs)
    for side, sw in ((-1, -swing), (1, swing)):
        sx = xc + side * (0.5 * tw + 0.2 * arm_r)
        sy = shoulder + arm_r
        hx, hy = sx + 0.6 * sw, shoulder + 0.36 * hb
        arm = person.capsule(sx, sy, hx, hy, arm_r)
        if ident.long_sleeve:
            person.fill(arm, ident.top, top_ir)
            person.fill(person.capsule(hx, hy, hx, hy, arm_r * 0.9), skin_rgb, skin_ir)
        else:
            split_paint(arm, sy + 0.4 * (hy - sy), (ident.top, top_ir), (skin_rgb, skin_ir))
    # head, hair or hat
    head = person.capsule(xc, head_c, xc, head_c, head_r)
    person.fill(head, skin_rgb, skin_ir)
    if head is not None:
        sl, m, _px, yy_ = head
        cap = m * _clip01(head_c - 0.15 * head_r - yy_ + 0.5)
        if ident.hat is not None:
            canvas.paint(cap, ident.hat, 0.8 * float(thermal(ident.hat)), sl)
            person.fill(person.box(xc - 1.3 * head_r, xc + 1.3 * head_r, head_c - 0.35 * head_r,
                                   head_c - 0.1 * head_r), ident.hat,
                        0.8 * float(thermal(ident.hat)))
        else:
            canvas.paint(cap, ident.hair, 0.5, sl)
    # shoulder bag in front, with a strap
    if ident.bag == 2:
        person.fill(person.capsule(xc - 0.4 * tw, shoulder, xc + 0.45 * tw, hip - 0.05 * hb,
                                   0.6), ident.bag_colour, bag_ir)
        person.fill(person.box(xc + 0.35 * tw, xc + 0.8 * tw, hip - 0.1 * hb,
                               hip + 0.04 * hb), ident.bag_colour, bag_ir)

    # ---------------------------------------------------------------- occluders
    if scene.occluder == 1:
        cx = scene.occ_x * W
        canvas.paint(_box(xx, yy, cx - scene.occ_w * W / 2, cx + scene.occ_w * W / 2, -1.0,
                          H + 1.0), scene.occ_rgb, scene.occ_ir)
    elif scene.occluder == 2:
        cx = ((scene.occ_x + scene.occ_speed * t) % 1.3 - 0.15) * W
        canvas.paint(_box(xx, yy, cx - scene.occ_w * W, cx + scene.occ_w * W, 0.6 * H,
                          H + 1.0), scene.occ_rgb, scene.occ_ir)

    # ---------------------------------------------------------------- sensors
    out_rgb = out_ir = None
    if modalities[0]:
        light = scene.light * cam.gain * (1.0 + cam.side_light * (xx / W - 0.5))
        img = _clip01(canvas.rgb * cam.cast * light[..., None]) ** cam.gamma
        img = img + rng.normal(0.0, cam.noise, img.shape)
        out_rgb = (_clip01(img) * 255.0 + 0.5).astype(np.uint8)
    if modalities[1]:
        img = _clip01(cam.ir_offset + cam.ir_gain * canvas.ir)
        if cam.ir_blur:
            p = np.pad(img, 1, mode="edge")
            img = (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] + 4 * img) / 8.0
        img = img + rng.normal(0.0, cam.ir_noise, img.shape)
        out_ir = (_clip01(img) * 255.0 + 0.5).astype(np.uint8)
    return out_rgb, out_ir

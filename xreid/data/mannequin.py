"""A second, independently designed synthetic generator ("mannequin"), for transfer checks.

It writes the same on-disk layouts as :mod:`xreid.data.synthetic` (HITSZ-VCM and
BUPTCampus, through the same layout writers, so every reader runs on it), but every frame
comes from a different model of people, cameras and infrared:

* **body**: an articulated stick figure — shoulder/elbow/wrist and hip/knee/ankle joints
  driven by a walking cycle with knee flexion and opposite arm swing — dressed with
  elliptical limbs of per-identity thickness, a trapezoid torso (shoulder and hip widths),
  an elliptical head with a hairline; seen from the side, the front or the back (the view is
  per tracklet);
* **textures**: continuous HSV colours (no palette) with a per-garment texture drawn from
  plaid, polka dots, diagonal stripes, a vertical gradient or smooth value noise, in
  garment-fixed coordinates so they move with the body;
* **motion**: the person walks across the scene at a per-tracklet speed while a lagging
  tracker crop follows (the person slides inside the crop and the crop's size breathes),
  instead of a fixed-centre crop with detector jitter;
* **visible camera**: a white-balance colour temperature, exposure, vignetting, a cast
  shadow, horizontal motion blur and chroma noise; backgrounds are brick or foliage textures;
* **infrared physics**: every surface has a temperature — skin at body temperature, each
  garment between body and ambient temperature according to its insulation, bags and
  shoes near ambient, the background at the camera's ambient temperature with warm/cool
  patches — and an emissivity; the sensor sees ``e * T^4 + (1 - e) * T_sky^4`` (Kelvin),
  then automatic gain control maps the frame's 2nd..98th percentiles to the output range,
  with a bright halo around warm objects, fixed-pattern column noise and temporal noise.

Identities, cameras and scenes come from ``numpy.random.default_rng([seed, 77, ...])``
streams, so a dataset is a pure function of its arguments and shares no draw with
:mod:`xreid.data.synthetic` for the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from xreid.data.synthetic import make_synthetic_bupt_campus, make_synthetic_hitsz_vcm

__all__ = ["MannequinRenderer", "make_mannequin_bupt_campus", "make_mannequin_hitsz_vcm"]

_STREAM = 77  # first key of every rng of this module (xreid.data.synthetic uses 1..5)
_SKY_K = 250.0  # effective temperature of reflected sky/surroundings, Kelvin


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


@dataclass(frozen=True)
class _Garment:
    colour: np.ndarray   # RGB
    colour2: np.ndarray  # texture colour
    texture: int         # 0 plaid, 1 dots, 2 diagonal, 3 gradient, 4 value noise, 5 plain
    scale: float         # texture period in body heights
    insulation: float    # 0 thin .. 1 thick
    emissivity: float
    noise: np.ndarray    # (8, 8) value-noise lattice


@dataclass(frozen=True)
class _Body:
    height: float
    shoulder: float
    hip: float
    limb: float
    head: float
    torso: float         # shoulder-to-hip length, fraction of height
    upper: _Garment
    lower: _Garment
    sleeve: float        # 0 none .. 1 full
    trouser: float       # 0.45 shorts .. 1 full
    skin: np.ndarray
    hair: np.ndarray
    hair_len: float
    shoes: np.ndarray
    bag: int             # 0 none, 1 tote at the hip, 2 backpack
    bag_colour: np.ndarray
    cadence: float       # steps per frame (radians of the gait phase per frame)
    swing: float         # leg swing amplitude, radians
    arm_swing: float
    body_k: float        # core temperature, Kelvin


@dataclass(frozen=True)
class _Cam:
    wb: np.ndarray       # RGB gains of the white balance
    exposure: float
    vignette: float
    blur: int            # horizontal motion-blur taps
    bg_kind: int         # 0 brick, 1 foliage
    bg_a: np.ndarray
    bg_b: np.ndarray
    ambient_k: float     # ambient temperature, Kelvin
    bg_patch_k: np.ndarray  # (4,) temperature offsets of background patches
    column_fpn: np.ndarray  # (W,) fixed-pattern column offsets
    ir_noise: float
    halo: float
    rgb_noise: float


def _garment(rng: np.random.Generator) -> _Garment:
    h, s, v = rng.random(), rng.uniform(0.1, 0.95), rng.uniform(0.15, 0.95)
    return _Garment(
        colour=_hsv(h, s, v),
        colour2=_hsv((h + rng.uniform(0.2, 0.8)) % 1.0, rng.uniform(0.0, 0.9),
                     rng.uniform(0.1, 1.0)),
        texture=int(rng.integers(0, 6)),
        scale=float(rng.uniform(0.05, 0.14)),
        insulation=float(rng.uniform(0.1, 0.95)),
        emissivity=float(rng.uniform(0.75, 0.98)),
        noise=rng.random((8, 8)),
    )


def _body(rng: np.random.Generator) -> _Body:
    skin_v = rng.uniform(0.3, 0.95)
    return _Body(
        height=float(rng.uniform(0.78, 0.95)),
        shoulder=float(rng.uniform(0.2, 0.3)),
        hip=float(rng.uniform(0.15, 0.24)),
        limb=float(rng.uniform(0.045, 0.075)),
        head=float(rng.uniform(0.06, 0.085)),
        torso=float(rng.uniform(0.28, 0.36)),
        upper=_garment(rng),
        lower=_garment(rng),
        sleeve=float(rng.choice([0.0, 0.5, 1.0])),
        trouser=float(rng.choice([0.45, 1.0, 1.0])),
        skin=_hsv(rng.uniform(0.03, 0.09), rng.uniform(0.3, 0.6), skin_v),
        hair=_hsv(rng.uniform(0.0, 0.12), rng.uniform(0.0, 0.7), rng.uniform(0.05, 0.8)),
        hair_len=float(rng.uniform(0.2, 1.0)),
        shoes=_hsv(rng.random(), rng.uniform(0, 0.5), rng.uniform(0.05, 0.9)),
        bag=int(rng.choice([0, 0, 1, 2])),
        bag_colour=_hsv(rng.random(), rng.uniform(0.2, 0.9), rng.uniform(0.1, 0.9)),
        cadence=float(rng.uniform(0.45, 0.8)),
        swing=float(rng.uniform(0.25, 0.5)),
        arm_swing=float(rng.uniform(0.15, 0.45)),
        body_k=float(rng.uniform(306.0, 308.5)),
    )


def _camera(rng: np.random.Generator, width: int, difficulty: float) -> _Cam:
    d = difficulty
    kelvin = rng.uniform(-1.0, 1.0) * d  # warm (<0) .. cool (>0) white balance
    wb = np.array([1.0 - 0.25 * kelvin, 1.0, 1.0 + 0.25 * kelvin])
    return _Cam(
        wb=wb / wb.mean(),
        exposure=float(1.0 + d * rng.uniform(-0.35, 0.3)),
        vignette=float(d * rng.uniform(0.0, 0.5)),
        blur=int(rng.integers(1, 2 + int(3 * d))),
        bg_kind=int(rng.integers(0, 2)),
        bg_a=_hsv(rng.random(), rng.uniform(0, 0.6), rng.uniform(0.2, 0.8)),
        bg_b=_hsv(rng.random(), rng.uniform(0, 0.6), rng.uniform(0.2, 0.8)),
        ambient_k=float(rng.uniform(278.0, 300.0)),
        bg_patch_k=rng.uniform(-6.0, 10.0, 4) * (0.4 + d),
        column_fpn=rng.normal(0.0, 0.02 * d, width),
        ir_noise=float(0.01 + 0.03 * d * rng.random()),
        halo=float(rng.uniform(0.0, 0.25) * d),
        rgb_noise=float(0.005 + 0.02 * d * rng.random()),
    )


@dataclass(frozen=True)
class _Track:
    view: int            # 0 side, 1 front, 2 back
    direction: int       # +1 / -1 walking direction (side view)
    phase: float
    speed: float         # pixels per frame of the person inside the world
    lag: float           # tracker lag factor
    zoom: float
    breathe: float
    bg_offset: float
    occluder: int        # 0 none, 1 low wall, 2 passer-by silhouette
    occ_pos: float
    occ_colour: np.ndarray
    occ_k: float


def _track(rng: np.random.Generator, occlusion_p: float, difficulty: float) -> _Track:
    d = difficulty
    return _Track(
        view=int(rng.choice([0, 0, 1, 2])),
        direction=int(rng.choice([-1, 1])),
        phase=float(rng.uniform(0, 2 * math.pi)),
        speed=float(rng.uniform(0.3, 1.2)),
        lag=float(d * rng.uniform(0.0, 0.6)),
        zoom=float(1.0 + d * rng.uniform(-0.12, 0.1)),
        breathe=float(d * rng.uniform(0.0, 0.05)),
        bg_offset=float(rng.uniform(0, 100)),
        occluder=int(rng.choice([1, 2])) if rng.random() < occlusion_p else 0,
        occ_pos=float(rng.uniform(0.0, 1.0)),
        occ_colour=rng.uniform(0.1, 0.9, 3),
        occ_k=float(rng.uniform(-5.0, 12.0)),
    )


def _segment_mask(xx: np.ndarray, yy: np.ndarray, p0: tuple[float, float],
                  p1: tuple[float, float], r0: float, r1: float) -> np.ndarray:
    """Soft mask of a tapered limb from p0 (radius r0) to p1 (radius r1)."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    L2 = dx * dx + dy * dy + 1e-9
    t = np.clip(((xx - p0[0]) * dx + (yy - p0[1]) * dy) / L2, 0.0, 1.0)
    d = np.hypot(xx - p0[0] - t * dx, yy - p0[1] - t * dy)
    r = r0 + (r1 - r0) * t
    return np.clip(r - d + 0.5, 0.0, 1.0)


def _texture(g: _Garment, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(H, W, 3) garment colours at garment coordinates (u, v) in body heights."""
    if g.texture == 5:
        w = np.zeros_like(u)
    elif g.texture == 0:  # plaid
        a = (np.floor(u / g.scale) + np.floor(v / g.scale)) % 2
        w = 0.6 * a
    elif g.texture == 1:  # polka dots
        cu = (u / g.scale) % 1.0 - 0.5
        cv = (v / g.scale) % 1.0 - 0.5
        w = np.clip((0.3 - np.hypot(cu, cv)) * 8.0, 0.0, 1.0)
    elif g.texture == 2:  # diagonal stripes
        w = ((u + v) / g.scale % 1.0 < 0.4).astype(float)
    elif g.texture == 3:  # vertical gradient
        w = np.clip(v * 2.5, 0.0, 1.0)
    else:  # value noise
        iu = np.clip(u / (g.scale * 2) % 7, 0, 6.999)
        iv = np.clip(v / (g.scale * 2) % 7, 0, 6.999)
        i0, j0 = iu.astype(int), iv.astype(int)
        fu, fv = iu - i0, iv - j0
        n = g.noise
        w = ((n[j0, i0] * (1 - fu) + n[j0, i0 + 1] * fu) * (1 - fv)
             + (n[j0 + 1, i0] * (1 - fu) + n[j0 + 1, i0 + 1] * fu) * fv)
    return g.colour + w[..., None] * (g.colour2 - g.colour)


class MannequinRenderer:
    """Renders tracklets of the mannequin model into image files (``write`` as in
    :mod:`xreid.data.synthetic`'s renderer, so its layout writers use it)."""

    def __init__(self, seed: int, size: tuple[int, int], num_cameras: int,
                 occlusion_p: float, difficulty: float, quality: int) -> None:
        self.seed, self.size, self.occlusion_p, self.quality = seed, size, occlusion_p, quality
        self.difficulty = difficulty
        self.cameras = [_camera(self._rng(1, c), size[1], difficulty)
                        for c in range(num_cameras)]
        self._bodies: dict[int, _Body] = {}
        yy, xx = np.mgrid[0:size[0], 0:size[1]].astype(np.float64) + 0.5
        self.yy, self.xx = yy, xx

    def _rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.seed & ((1 << 64) - 1), _STREAM, *keys])

    def body(self, pid: int) -> _Body:
        b = self._bodies.get(pid)
        if b is None:
            b = self._bodies[pid] = _body(self._rng(2, pid))
        return b

    def track(self, pid: int, key: int) -> _Track:
        """The viewing conditions of tracklet ``key`` of identity ``pid``."""
        return _track(self._rng(3, pid, key), self.occlusion_p, self.difficulty)

    # ------------------------------------------------------------------ one frame
    def frame(self, body: _Body, cam: _Cam, tr: _Track, t: int, noise: np.random.Generator,
              want: tuple[bool, bool]) -> tuple[np.ndarray | None, np.ndarray | None]:
        H, W = self.size
        xx, yy = self.xx, self.yy
        # tracker crop: the person's offset inside the crop lags behind the walk
        lag = tr.lag * math.sin(0.3 * t + tr.phase) * 0.12 * W
        scale = tr.zoom * (1.0 + tr.breathe * math.sin(0.5 * t))
        hb = body.height * H * scale
        foot_y = H * 0.96 + 0.02 * H * math.sin(0.7 * t)
        top = foot_y - hb
        xc = 0.5 * W + lag
        phase = tr.phase + body.cadence * t

        # background (scrolls with the walk): brick or foliage, and its temperature
        u = xx + tr.bg_offset + tr.direction * tr.speed * t
        if cam.bg_kind == 0:
            row = np.floor(yy / 5.0)
            brick = ((np.floor((u + 4.0 * (row % 2)) / 9.0) + row) % 3 == 0).astype(float)
            mortar = ((yy % 5.0) < 0.8) | (((u + 4.0 * (row % 2)) % 9.0) < 0.8)
            wall = 0.35 * brick + 0.6 * mortar
        else:
            wall = 0.5 + 0.25 * np.sin(u * 0.7) * np.cos(yy * 0.5) + 0.2 * np.sin(u * 0.23 + yy)
        bg = cam.bg_a + np.clip(wall, 0, 1)[..., None] * (cam.bg_b - cam.bg_a)
        patch = (np.floor(u / (W / 2)) + np.floor(yy / (H / 2))).astype(int) % 4
        temp = cam.ambient_k + cam.bg_patch_k[patch]
        emis = np.full((H, W), 0.9)
        rgb = bg.copy()

        def paint(mask: np.ndarray, colour: np.ndarray | float, kelvin: float | np.ndarray,
                  e: float) -> None:
            nonlocal temp, emis
            m = mask[..., None]
            rgb[:] = rgb + m * (colour - rgb)
            temp = temp + mask * (kelvin - temp)
            emis = emis + mask * (e - emis)

        def garment_k(g: _Garment) -> float:
            return cam.ambient_k + (body.body_k - 2.0 - cam.ambient_k) * math.exp(
                -2.2 * g.insulation)

        # shadow on the ground
        shadow = np.clip(1.0 - np.hypot((xx - xc) / (0.35 * hb), (yy - foot_y) / 2.0), 0, 1)
        rgb *= (1.0 - 0.35 * shadow)[..., None]

        side = tr.view == 0
        sgn = tr.direction if side else 1
        sh_y = top + 2.2 * body.head * hb
        hip_y = sh_y + body.torso * hb
        leg_len = foot_y - hip_y
        half_sh = 0.5 * body.shoulder * W * scale * (0.55 if side else 1.0)
        half_hip = 0.5 * body.hip * W * scale * (0.65 if side else 1.0)
        limb_r = body.limb * hb * 0.5
        swing = body.swing * (1.0 if side else 0.35)
        arm = body.arm_swing * (1.0 if side else 0.3)

        def leg(k: int) -> None:
            a = swing * math.sin(phase + k * math.pi)
            knee_bend = max(0.0, math.sin(phase + k * math.pi + 1.2)) * 0.6 * swing
            hx = xc + (0 if side else (-1) ** k * 0.5 * half_hip)
            knee = (hx + sgn * math.sin(a) * 0.5 * leg_len, hip_y + math.cos(a) * 0.5 * leg_len)
            ankle = (knee[0] + sgn * math.sin(a - knee_bend) * 0.5 * leg_len,
                     min(foot_y, knee[1] + math.cos(a - knee_bend) * 0.5 * leg_len))
            low = body.lower
            cov_end = body.trouser
            tex = _texture(low, (xx - hx) / hb, (yy - hip_y) / hb)
            thigh = _segment_mask(xx, yy, (hx, hip_y), knee, 1.25 * limb_r, limb_r)
            paint(thigh, tex, garment_k(low), low.emissivity)
            if cov_end >= 1.0:
                paint(_segment_mask(xx, yy, knee, ankle, limb_r, 0.8 * limb_r), tex,
                      garment_k(low), low.emissivity)
            else:
                paint(_segment_mask(xx, yy, knee, ankle, 0.8 * limb_r, 0.7 * limb_r),
                      body.skin, body.body_k - 1.5, 0.98)
            foot = (ankle[0] + sgn * 0.9 * limb_r * (1 if side else 0), ankle[1])
            paint(_segment_mask(xx, yy, ankle, foot, 0.75 * limb_r, 0.75 * limb_r),
                  body.shoes, cam.ambient_k + 4.0, 0.9)

        def arm_(k: int) -> None:
            a = arm * math.sin(phase + (k + 1) * math.pi)
            sx = xc + (0 if side else (-1) ** k * half_sh)
            upper_len = 0.19 * hb
            elbow = (sx + sgn * math.sin(a) * upper_len, sh_y + math.cos(a) * upper_len)
            wrist = (elbow[0] + sgn * math.sin(a + 0.3) * upper_len,
                     elbow[1] + math.cos(a + 0.3) * upper_len)
            up = body.upper
            tex = _texture(up, (xx - sx) / hb, (yy - sh_y) / hb)
            sleeve_k = garment_k(up)
            m1 = _segment_mask(xx, yy, (sx, sh_y), elbow, 0.9 * limb_r, 0.75 * limb_r)
            m2 = _segment_mask(xx, yy, elbow, wrist, 0.75 * limb_r, 0.6 * limb_r)
            if body.sleeve > 0:
                paint(m1, tex, sleeve_k, up.emissivity)
            else:
                paint(m1, body.skin, body.body_k - 1.0, 0.98)
            if body.sleeve >= 1.0:
                paint(m2, tex, sleeve_k, up.emissivity)
            else:
                paint(m2, body.skin, body.body_k - 1.5, 0.98)

        far, near = (0, 1) if sgn > 0 else (1, 0)
        if side:
            arm_(far)
            leg(far)
        else:
            leg(0)
            leg(1)
        # torso: trapezoid shoulder -> hip
        f = np.clip((yy - sh_y) / max(hip_y - sh_y, 1e-6), 0, 1)
        half = half_sh + (half_hip - half_sh) * f
        inside = np.clip(half - np.abs(xx - xc) + 0.5, 0, 1)
        inside *= np.clip(np.minimum(yy - sh_y + 1.0, hip_y + 0.1 * hb - yy) + 0.5, 0, 1)
        if body.bag == 2 and tr.view != 1:  # backpack visible from side/back
            bx = xc - sgn * half_sh * (1.2 if side else 0.0)
            bag = np.clip(0.8 * half_sh - np.hypot((xx - bx) / 1.0, (yy - (sh_y + 0.4 * (
                hip_y - sh_y))) / 1.6) + 0.5, 0, 1)
            if tr.view == 2:
                paint(inside, _texture(body.upper, (xx - xc) / hb, (yy - sh_y) / hb),
                      garment_k(body.upper), body.upper.emissivity)
            paint(bag, body.bag_colour, cam.ambient_k + 2.0, 0.85)
            if tr.view == 2:
                inside = inside * 0
        paint(inside, _texture(body.upper, (xx - xc) / hb, (yy - sh_y) / hb),
              garment_k(body.upper), body.upper.emissivity)
        if side:
            leg(near)
            arm_(near)
        else:
            arm_(0)
            arm_(1)
        if body.bag == 1:
            tx = xc + (sgn * 1.1 * half_hip if side else half_hip + limb_r)
            tote = np.clip(np.minimum(2.2 * limb_r - np.abs(xx - tx),
                                      1.6 * limb_r - np.abs(yy - hip_y)) + 0.5, 0, 1)
            paint(tote, body.bag_colour, cam.ambient_k + 1.0, 0.85)
        # head + hair
        hr = body.head * hb
        hy = sh_y - 1.15 * hr
        head = np.clip(hr - np.hypot((xx - xc) / 0.85, yy - hy) + 0.5, 0, 1)
        face = body.skin if tr.view != 2 else body.hair
        paint(head, face, body.body_k - 0.5, 0.98)
        hair_line = hy - hr * (1.0 - body.hair_len) if tr.view != 2 else hy + 0.6 * hr
        hair = head * np.clip(hair_line - yy + 0.5, 0, 1)
        paint(hair, body.hair, body.body_k - 6.0, 0.95)

        # occluders
        if tr.occluder == 1:  # low wall in front
            wall_m = np.clip(yy - (H * (0.72 + 0.12 * tr.occ_pos)) + 0.5, 0, 1)
            paint(wall_m, tr.occ_colour, cam.ambient_k + tr.occ_k, 0.93)
        elif tr.occluder == 2:  # a passer-by silhouette sliding through
            ox = (tr.occ_pos * W + 2.0 * t * (1 if tr.direction < 0 else -1)) % (1.4 * W) - 0.2 * W
            pas = np.clip(0.18 * W - np.abs(xx - ox) + 0.5, 0, 1) * (yy > 0.15 * H)
            paint(pas, tr.occ_colour, body.body_k - 5.0, 0.95)

        out_rgb = out_ir = None
        if want[0]:
            img = rgb * cam.wb * cam.exposure
            vig = 1.0 - cam.vignette * (((xx - W / 2) / W) ** 2 + ((yy - H / 2) / H) ** 2) * 2
            img = img * vig[..., None]
            if cam.blur > 1:
                k = cam.blur
                pad = np.pad(img, ((0, 0), (k // 2, k - 1 - k // 2), (0, 0)), mode="edge")
                img = sum(pad[:, i:i + W] for i in range(k)) / k
            img = img + noise.normal(0, cam.rgb_noise, img.shape)
            out_rgb = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        if want[1]:
            radiance = emis * temp ** 4 + (1.0 - emis) * _SKY_K ** 4
            if cam.halo > 0:  # bright halo around warm objects (a blurred copy added)
                blur = radiance.copy()
                for _ in range(2):
                    blur = 0.25 * (np.roll(blur, 1, 0) + np.roll(blur, -1, 0)
                                   + np.roll(blur, 1, 1) + np.roll(blur, -1, 1))
                radiance = radiance + cam.halo * np.maximum(blur - np.median(radiance), 0)
            lo, hi = np.percentile(radiance, (2.0, 98.0))
            ir = (radiance - lo) / max(hi - lo, 1e-6)
            ir = 0.1 + 0.8 * ir + cam.column_fpn[None, :]
            ir = ir + noise.normal(0, cam.ir_noise, ir.shape)
            out_ir = (np.clip(ir, 0, 1) * 255 + 0.5).astype(np.uint8)
        return out_rgb, out_ir

    def render(self, pid: int, camera: int, key: int, n: int, want: tuple[bool, bool]
               ) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
        """The ``n`` frames of tracklet ``key`` of identity ``pid`` in camera ``camera``, in
        memory: per frame (visible (H, W, 3) uint8 or None, infrared (H, W) uint8 or None),
        ``want`` = (visible, infrared). A pure function of the arguments and the renderer's."""
        body, cam = self.body(pid), self.cameras[camera]
        tr = self.track(pid, key)
        noise = self._rng(4, pid, key)
        return [self.frame(body, cam, tr, t, noise, want) for t in range(n)]

    # ------------------------------------------------------------------ files
    def write(self, pid: int, camera: int, key: int, n: int,
              rgb_paths: Sequence[Path] | None, ir_paths: Sequence[Path] | None) -> None:
        """Render an ``n``-frame tracklet (``key`` makes it unique) into the given files."""
        want = (rgb_paths is not None, ir_paths is not None)
        for t, (rgb, ir) in enumerate(self.render(pid, camera, key, n, want)):
            if rgb_paths is not None and rgb is not None:
                self._save(Image.fromarray(rgb, "RGB"), rgb_paths[t])
            if ir_paths is not None and ir is not None:
                self._save(Image.fromarray(ir, "L"), ir_paths[t])

    def _save(self, image: Image.Image, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="JPEG", quality=self.quality)


def make_mannequin_hitsz_vcm(root: str | PathLike[str], **kwargs: Any) -> Path:
    """:func:`xreid.data.make_synthetic_hitsz_vcm` (same arguments, same layout) with the
    mannequin frames of this module."""
    return make_synthetic_hitsz_vcm(root, renderer=MannequinRenderer, **kwargs)


def make_mannequin_bupt_campus(root: str | PathLike[str], **kwargs: Any) -> Path:
    """:func:`xreid.data.make_synthetic_bupt_campus` (same arguments, same layout) with the
    mannequin frames of this module."""
    return make_synthetic_bupt_campus(root, renderer=MannequinRenderer, **kwargs)

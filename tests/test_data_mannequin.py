"""The second synthetic generator: same layouts and readers, other frames, deterministic."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from xreid.data import HITSZVCM, BUPTCampus, make_synthetic_hitsz_vcm
from xreid.data.mannequin import (
    MannequinRenderer,
    make_mannequin_bupt_campus,
    make_mannequin_hitsz_vcm,
)

SMALL = dict(num_train_ids=3, num_test_ids=2, frames=(3, 4), num_short=0, img_size=(32, 16))


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def test_hitsz_vcm_layout_reads_and_is_deterministic(tmp_path):
    a = make_mannequin_hitsz_vcm(tmp_path / "a", seed=5, **SMALL)
    b = make_mannequin_hitsz_vcm(tmp_path / "b", seed=5, **SMALL)
    assert _files(a) == _files(b)
    reader = HITSZVCM(a, min_len=3)
    assert reader.num_train_identities == 3
    assert len(reader.query("i2v")) == 2 * 2
    marker = json.loads((a / ".xreid-synthetic.json").read_text())
    assert marker["renderer"] == "xreid.data.mannequin.MannequinRenderer"


def test_frames_differ_from_the_procedural_generator(tmp_path):
    a = make_mannequin_hitsz_vcm(tmp_path / "m", seed=5, **SMALL)
    p = make_synthetic_hitsz_vcm(tmp_path / "p", seed=5, **SMALL)
    fa, fp = _files(a), _files(p)
    assert fa.keys() == fp.keys()  # the same layout and file names
    assert all(fa[k] != fp[k] for k in fa)
    assert "renderer" not in json.loads((p / ".xreid-synthetic.json").read_text())


def test_bupt_layout_reads(tmp_path):
    root = make_mannequin_bupt_campus(tmp_path / "bupt", seed=2, num_train_ids=3,
                                      num_aux_ids=0, num_test_ids=2, frames=(3, 4),
                                      img_size=(32, 16))
    reader = BUPTCampus(root)
    assert reader.num_train_identities == 3
    assert len(reader.query("i2v")) + len(reader.query("v2i")) == 2


def test_infrared_shows_skin_warmer_than_a_cold_background(tmp_path):
    # skin at ~307 K against a background near ambient (278-300 K): after the automatic gain
    # the head pixels sit above the median of the frame
    r = MannequinRenderer(1, (64, 32), 1, 0.0, 0.0, 90)
    body = r.body(0)
    track = r.track(0, 0)
    _, ir = r.frame(body, r.cameras[0], track, 0, np.random.default_rng(0), (False, True))
    assert ir is not None and ir.dtype == np.uint8 and ir.shape == (64, 32)
    rgb, _ = r.frame(body, r.cameras[0], track, 0, np.random.default_rng(0), (True, False))
    assert rgb is not None and rgb.shape == (64, 32, 3)
    # the head centre: the top fifth of the frame around the middle column
    head = ir[6:14, 13:19].astype(float).mean()
    assert head > np.median(ir) + 20
    Image.fromarray(ir)  # a valid 8-bit image

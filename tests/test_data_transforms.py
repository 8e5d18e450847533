"""ClipTransform: normalisation constants, sequence-consistent flip/crop, per-frame erasing."""

from __future__ import annotations

import pytest
import torch
from tolerance import rounding_tol

from xreid.constants import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD
from xreid.data import ClipTransform


def _video(T: int = 6, H: int = 32, W: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (T, 3, H, W), generator=g, dtype=torch.uint8)


def _norm(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x.float() / 255.0 - m) / s


@pytest.mark.parametrize(("norm", "mean", "std"), [
    ("imagenet", IMAGENET_MEAN, IMAGENET_STD),
    ("clip", CLIP_MEAN, CLIP_STD),
    (((0.5, 0.5, 0.5), (0.5, 0.25, 0.125)), (0.5, 0.5, 0.5), (0.5, 0.25, 0.125)),
    (None, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
])
def test_eval_normalisation_constants(norm, mean, std) -> None:
    x = _video()
    out = ClipTransform((32, 16), normalization=norm)(x)
    assert out.dtype == torch.float32 and out.shape == (6, 3, 32, 16) and out.is_contiguous()
    # x / 255, minus the mean, over the std: three roundings of terms up to 1 / min(std)
    torch.testing.assert_close(out, _norm(x, mean, std),
                               **rounding_tol(torch.float32, 3, scale=1 / min(std)))


def test_constants_are_the_published_ones() -> None:
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    assert [round(v, 4) for v in CLIP_MEAN] == [0.4815, 0.4578, 0.4082]
    assert [round(v, 4) for v in CLIP_STD] == [0.2686, 0.2613, 0.2758]


def test_eval_is_deterministic_and_ignores_augmentations() -> None:
    x = _video()
    t = ClipTransform((32, 16), train=False, flip_p=1.0, erasing_p=1.0, pad=5)
    torch.testing.assert_close(t(x, 1), t(x, 2))
    torch.testing.assert_close(t(x), _norm(x, IMAGENET_MEAN, IMAGENET_STD))


def test_resize_tensor_and_frame_list() -> None:
    x = _video(H=64, W=32)
    t = ClipTransform((32, 16))
    out = t(x)
    assert out.shape == (6, 3, 32, 16)
    frames = [_video(1, 40, 20)[0], _video(1, 64, 32, 1)[0], _video(1, 32, 16, 2)[0]]
    out = t(frames)
    assert out.shape == (3, 3, 32, 16)
    torch.testing.assert_close(out[2], _norm(frames[2][None], IMAGENET_MEAN, IMAGENET_STD)[0])
    # a constant image stays constant through the resize
    const = torch.full((2, 3, 50, 30), 200, dtype=torch.uint8)
    torch.testing.assert_close(t(const), _norm(torch.full((2, 3, 32, 16), 200), IMAGENET_MEAN,
                                                IMAGENET_STD))


def test_flip_is_one_decision_per_clip() -> None:
    x = _video()
    t = ClipTransform((32, 16), train=True, flip_p=0.5, pad=0, erasing_p=0.0)
    plain = _norm(x, IMAGENET_MEAN, IMAGENET_STD)
    seen = set()
    for seed in range(40):
        out = t(x, seed)
        tol = rounding_tol(torch.float32, 3, scale=1 / min(IMAGENET_STD))
        if torch.allclose(out, plain, **tol):
            seen.add("same")
        else:
            torch.testing.assert_close(out, plain.flip(-1))  # every frame flipped together
            seen.add("flipped")
    assert seen == {"same", "flipped"}
    always = ClipTransform((32, 16), train=True, flip_p=1.0, pad=0, erasing_p=0.0)
    torch.testing.assert_close(always(x, 0), plain.flip(-1))


def test_pad_crop_is_one_shift_per_clip() -> None:
    x = _video(T=4)
    pad = 3
    t = ClipTransform((32, 16), train=True, flip_p=0.0, pad=pad, erasing_p=0.0,
                      normalization=None)
    ref = x.float() / 255.0
    shifts = set()
    for seed in range(30):
        out = t(x, seed)
        found = None
        for dy in range(-pad, pad + 1):
            for dx in range(-pad, pad + 1):
                exp = torch.zeros_like(ref)
                ys, yd, xs, xd = max(dy, 0), max(-dy, 0), max(dx, 0), max(-dx, 0)
                h, w = 32 - abs(dy), 16 - abs(dx)
                exp[..., yd:yd + h, xd:xd + w] = ref[..., ys:ys + h, xs:xs + w]
                if torch.allclose(out, exp, **rounding_tol(torch.float32, 1)):
                    found = (dy, dx)
        assert found is not None  # all frames share one crop offset within +-pad
        shifts.add(found)
    assert len(shifts) > 5


def test_erasing_per_frame_at_the_sampled_position() -> None:
    T, H, W = 40, 48, 24
    x = torch.full((T, 3, H, W), 128, dtype=torch.uint8)
    t = ClipTransform((H, W), train=True, flip_p=0.0, pad=0, erasing_p=1.0,
                      erasing_scale=(0.05, 0.2), normalization=None)
    out = t(x, 0)
    corners = set()
    for f in range(T):
        changed = ((out[f] - 128 / 255.0).abs() > 1e-6).any(0)
        assert changed.any()
        ys, xs = torch.nonzero(changed, as_tuple=True)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        # one solid rectangle
        assert changed[y0:y1, x0:x1].all() and int(changed.sum()) == (y1 - y0) * (x1 - x0)
        patch = out[f, :, y0:y1, x0:x1].reshape(3, -1)
        assert torch.equal(patch, patch[:, :1].expand_as(patch))
        area = (y1 - y0) * (x1 - x0) / (H * W)
        assert 0.03 <= area <= 0.25
        corners.add((y0, x0))
    assert len(corners) > T // 2  # independent per frame, not pasted at a fixed corner
    never = ClipTransform((H, W), train=True, flip_p=0.0, pad=0, erasing_p=0.0,
                          normalization=None)
    torch.testing.assert_close(never(x, 0), x.float() / 255.0)


def test_erasing_probability_and_fixed_value() -> None:
    x = torch.full((200, 3, 16, 8), 10, dtype=torch.uint8)
    t = ClipTransform((16, 8), train=True, flip_p=0.0, pad=0, erasing_p=0.5,
                      erasing_value=(1.0, 1.0, 1.0), normalization=None)
    out = t(x, 3)
    erased = (out > 0.5).flatten(1).any(1)
    assert 60 < int(erased.sum()) < 140
    vals = out.unique()
    assert len(vals) == 2
    torch.testing.assert_close(vals, torch.tensor([10 / 255.0, 1.0]))


def test_determinism_and_input_untouched() -> None:
    x = _video()
    keep = x.clone()
    t = ClipTransform((32, 16), train=True)
    a = t(x, 11)
    g = torch.Generator().manual_seed(11)
    torch.testing.assert_close(t(x, g), a)
    assert not torch.equal(t(x, 12), a)
    assert torch.equal(x, keep)
    xf = x.float()
    keepf = xf.clone()
    t(xf, 1)
    assert torch.equal(xf, keepf)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"img_size": (0, 4)}, "img_size"),
    ({"normalization": "openai"}, "normalization"),
    ({"normalization": ((0.5, 0.5), (1, 1))}, "normalization"),
    ({"flip_p": 1.5}, "flip_p"),
    ({"pad": -1}, "pad"),
    ({"erasing_scale": (0.5, 0.1)}, "erasing_scale"),
    ({"erasing_value": "black"}, "erasing_value"),
])
def test_constructor_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ClipTransform(**kwargs)


def test_call_errors() -> None:
    t = ClipTransform((32, 16))
    with pytest.raises(ValueError, match=r"video: expected a \(T, 3, H, W\)"):
        t(torch.zeros(3, 32, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="video"):
        t(torch.zeros(0, 3, 32, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"video\[1\]"):
        t([torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(1, 8, 8, dtype=torch.uint8)])

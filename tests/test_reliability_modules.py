"""Bad tensors into the modules and losses: dtype and device mismatches are named (checked on
metadata, no host synchronisation), the temporal shift refuses shapes it cannot shift, empty
batches give 0, labels are range-checked, and the memory warns when used before it is built."""

from __future__ import annotations

import warnings

import pytest
import torch

from xreid import (
    CII,
    CMCL,
    INFRARED,
    LII,
    MII,
    SII,
    VISIBLE,
    CPCMemory,
    TripletLoss,
    XReID,
    XReIDLoss,
    build_backbone,
    temporal_shift,
)
from xreid.layers.temporal_shift import split_frame_tokens

D, HEADS = 16, 2


def tokens(dtype=torch.float32, device="cpu", b=2, t=3, n=5):
    return torch.randn(b, t, 1 + n, D, dtype=dtype, device=device)


TOKEN_MODULES = {
    "SII": lambda: SII(D, HEADS),
    "LII": lambda: LII(D, HEADS),
    "MII": lambda: MII(D, HEADS),
}


# ----------------------------------------------------------------- dtype / device of inputs
@pytest.mark.parametrize("name", sorted(TOKEN_MODULES))
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_tokens_are_refused(name, dtype):
    with pytest.raises(ValueError, match=rf"^tokens: expected a floating-point tensor, got "
                       rf"dtype {dtype}$"):
        TOKEN_MODULES[name]()(tokens().to(dtype))


@pytest.mark.parametrize("name", sorted(TOKEN_MODULES))
def test_fp64_tokens_into_an_fp32_module_name_both_dtypes(name):
    with pytest.raises(ValueError, match=r"^tokens: expected dtype torch.float32 \(the "
                       r"parameters of .*; or run under torch.autocast\), got torch.float64$"):
        TOKEN_MODULES[name]()(tokens(torch.float64))


@pytest.mark.parametrize("name", sorted(TOKEN_MODULES))
def test_tokens_on_another_device_are_refused(name):
    with pytest.raises(ValueError, match=r"^tokens: expected a tensor on cpu \(where the "
                       r"parameters of .* are\), got one on meta$"):
        TOKEN_MODULES[name]()(tokens(device="meta"))


def test_matching_dtype_and_autocast_are_accepted():
    sii = SII(D, HEADS)
    assert sii(tokens()).shape == (2, 3, D)
    assert sii.double()(tokens(torch.float64)).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert SII(D, HEADS)(tokens(torch.bfloat16)).shape == (2, 3, D)


def test_cii_checks_query_and_patches():
    cii = CII(D, HEADS)
    q, p = torch.randn(2, D), torch.randn(2, 3, 4, D)
    assert cii(q, p).shape == (2, D)
    with pytest.raises(ValueError, match=r"^query: expected a floating-point tensor"):
        cii(q.long(), p)
    with pytest.raises(ValueError, match=r"^patches: expected dtype torch.float32"):
        cii(q, p.double())
    with pytest.raises(ValueError, match=r"^patches: expected a tensor on cpu"):
        cii(q, p.to("meta"))


def test_backbone_video_on_another_device():
    bb = build_backbone("tiny", img_size=(32, 16))
    with pytest.raises(ValueError, match=r"^video: expected a tensor on cpu \(where the "
                       r"backbone's parameters are\), got one on meta$"):
        bb(torch.randn(1, 2, 3, 32, 16, device="meta"))
    with pytest.raises(ValueError, match=r"^video: expected a floating-point tensor"):
        bb(torch.zeros(1, 2, 3, 32, 16, dtype=torch.uint8))


# --------------------------------------------------------------------------- temporal shift
def test_temporal_shift_with_fewer_channels_than_fold_div():
    with pytest.raises(ValueError, match=r"^x: expected D >= fold_div=4 .*got D=3: nothing "
                       r"would be shifted$"):
        temporal_shift(torch.randn(1, 2, 3, 3), fold_div=4)
    with pytest.raises(ValueError, match=r"^tokens: expected D >= fold_div=8"):
        split_frame_tokens(torch.randn(1, 2, 3, 4), fold_div=8)
    assert split_frame_tokens(torch.randn(1, 2, 3, 4))[1].shape == (1, 2, 2, 4)  # no shift
    with pytest.raises(ValueError, match=r"D >= fold_div=8"):
        SII(4, 1, fold_div=8)(torch.randn(1, 2, 3, 4))


def test_temporal_shift_with_zero_frames():
    with pytest.raises(ValueError, match=r"^x: expected T >= 1 frames \(B, T, N, D\), got "
                       r"shape \(2, 0, 3, 8\)$"):
        temporal_shift(torch.randn(2, 0, 3, 8))


def test_temporal_shift_at_d_equal_fold_div_moves_one_channel_each_way():
    x = torch.arange(12.0).reshape(1, 3, 1, 4)
    out = temporal_shift(x, fold_div=4)
    assert torch.equal(out[0, 1, 0], torch.tensor([x[0, 0, 0, 0], x[0, 2, 0, 1], 6.0, 7.0]))


# ----------------------------------------------------------------------------------- losses
def test_cmcl_of_an_empty_batch_is_zero_like_the_other_losses():
    a = torch.zeros(0, D, requires_grad=True)
    b = torch.zeros(0, D)
    for reduction in ("mean", "sum"):
        loss = CMCL(reduction=reduction)(a, b)
        assert loss.item() == 0.0 and loss.shape == ()
        loss.backward()
    assert CMCL(reduction="none")(a, b).shape == (0,)
    tri = TripletLoss()(torch.zeros(0, D), torch.zeros(0, dtype=torch.long))
    assert tri.item() == 0.0


def test_cmcl_mean_is_unchanged_on_a_non_empty_batch():
    a, b = torch.randn(4, D), torch.randn(4, D)
    ref = sum(((a[i] - b[i]) ** 2).sum() for i in range(4)) / 4
    assert torch.allclose(CMCL()(a, b), ref)


@pytest.fixture(scope="module")
def model_and_output():
    torch.manual_seed(0)
    model = XReID.from_preset(build_backbone("tiny", img_size=(32, 16)), 4, "paper").train()
    video = torch.randn(4, 2, 3, 32, 16)
    labels = torch.tensor([0, 1, 0, 1])
    modality = torch.tensor([VISIBLE, VISIBLE, INFRARED, INFRARED])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model(video, modality, None, labels)
    return model, out


def test_xreid_loss_without_cpcl_checks_the_label_range(model_and_output):
    _, out = model_and_output
    loss = XReIDLoss(cpcl=0.0)
    assert torch.isfinite(loss(out, torch.tensor([0, 1, 0, 1])).total)
    with pytest.raises(ValueError, match=r"^labels: .*\[0, 4\)"):
        loss(out, torch.tensor([0, 9, 0, 9]))
    with pytest.raises(ValueError, match=r"^labels: "):
        loss(out, torch.tensor([0, -1, 0, -1]))


def test_memory_update_before_initialize_warns():
    mem = CPCMemory(3, 8)
    feats = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    labels = torch.tensor([0, 1, 0, 1])
    modality = torch.tensor([VISIBLE, VISIBLE, INFRARED, INFRARED])
    with pytest.warns(UserWarning, match=r"update called before initialize\(\)"):
        mem.update(feats, labels, modality)
    mem.initialize(torch.nn.functional.normalize(torch.randn(6, 8), dim=1),
                   torch.tensor([0, 1, 2, 0, 1, 2]),
                   torch.tensor([VISIBLE] * 3 + [INFRARED] * 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mem.update(feats, labels, modality)  # no warning once initialised

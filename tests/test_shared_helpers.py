"""The shared private helpers: ``xreid._torch_utils`` and the integer checks of
``xreid._validation`` (each has one home; the modules that used copies now call these)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from xreid._torch_utils import autocast_enabled, eval_mode, is_compiling, model_device, unwrap_model
from xreid._validation import check_int, check_integer_dtype, check_positive_int


def test_autocast_enabled_per_device_type():
    assert not autocast_enabled("cpu") and not autocast_enabled("cuda")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert autocast_enabled("cpu")
        assert not autocast_enabled("cuda")  # the other device's state, not the CPU's
    assert not autocast_enabled("cpu")
    # a device type other than CPU/CUDA is asked about itself (two former copies fell back
    # to the CPU or CUDA state there)
    with torch.autocast("xpu", dtype=torch.bfloat16):
        assert autocast_enabled("xpu") and not autocast_enabled("cpu")
    assert autocast_enabled("xpu") is False


def test_unwrap_model_and_model_device():
    net = nn.Linear(2, 2)
    assert unwrap_model(net) is net
    assert unwrap_model(nn.DataParallel(net)) is net
    assert model_device(net) == torch.device("cpu")
    buffers_only = nn.BatchNorm1d(3, affine=False)
    assert model_device(buffers_only) == torch.device("cpu")
    assert model_device(nn.Identity()) == torch.device("cpu")
    assert model_device(nn.Linear(2, 2, device="meta")) == torch.device("meta")
    assert is_compiling() is False


def test_eval_mode_restores_each_submodules_flag_even_on_error():
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.BatchNorm1d(2))
    net.train()
    net[1].eval()  # a mixed state: model.train(was_training) would not restore it
    before = [m.training for m in net.modules()]
    with eval_mode(net) as inner:
        assert inner is net and not any(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == before
    with pytest.raises(RuntimeError, match="boom"), eval_mode(net):
        raise RuntimeError("boom")
    assert [m.training for m in net.modules()] == before


@pytest.mark.parametrize("bad", [0, -1, True, False, 1.0, "2", None, np.int64(3)])
def test_check_positive_int_rejects(bad):
    with pytest.raises(ValueError, match="^" + re.escape(f"n: expected an int >= 1, got {bad!r}")):
        check_positive_int(bad, "n")


def test_check_int_accepts_and_returns_plain_int():
    assert check_positive_int(3, "n") == 3
    value = check_positive_int(np.int64(3), "n", numpy=True)
    assert value == 3 and type(value) is int
    assert check_int(0, "k", minimum=0) == 0
    with pytest.raises(ValueError, match="k: expected an int >= 2, got 1"):
        check_int(1, "k", minimum=2)
    with pytest.raises(ValueError, match="n: expected an int >= 1, got np.True_"):
        check_positive_int(np.bool_(True), "n", numpy=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool, torch.complex64])
def test_check_integer_dtype(dtype):
    assert check_integer_dtype(torch.zeros(2, dtype=torch.int32), "y").dtype == torch.int32
    with pytest.raises(ValueError, match=f"y: expected an integer tensor, got dtype {dtype}"):
        check_integer_dtype(torch.zeros(2, dtype=dtype), "y")


def test_check_real_finite():
    from xreid._validation import check_real_finite

    half = torch.ones(2, dtype=torch.float16)
    assert check_real_finite(half, "x", "features").dtype == torch.float32
    wide = torch.ones(2, dtype=torch.float64)
    assert check_real_finite(wide, "x", "features", keep_float64=True).dtype == torch.float64
    assert check_real_finite(wide, "x", "features").dtype == torch.float32
    with pytest.raises(ValueError, match="x: expected real distances, got dtype torch.bool"):
        check_real_finite(torch.ones(2, dtype=torch.bool), "x", "distances")
    with pytest.raises(ValueError, match="x: expected finite features, got NaN or inf"):
        check_real_finite(torch.tensor([1.0, float("nan")]), "x", "features")

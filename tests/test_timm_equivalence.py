"""xreid's small layers against timm's: bit-equality (same weights, same input, torch.equal).

``resample_pos_embed`` now delegates to ``timm.layers.resample_abs_pos_embed``; the test pins
it to xreid's former implementation (written out below). ``DropPath``, ``Mlp`` and
``QuickGELU`` are equal to timm's (tested here) but stay xreid's own: ``xreid.layers`` and the
``"tiny"`` backbone import torch only (``test_backbones.py``), and timm imports torchvision.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xreid.backbones import resample_pos_embed
from xreid.backbones.tiny import QuickGELU
from xreid.layers import DropPath, Mlp

timm_layers = pytest.importorskip("timm.layers")


def former_resample(pos_embed, new_grid, old_grid, num_prefix_tokens=1):
    """xreid's own resampler before it delegated to timm."""
    squeeze = pos_embed.dim() == 2
    pe = pos_embed.unsqueeze(0) if squeeze else pos_embed
    prefix, grid = pe[:, :num_prefix_tokens], pe[:, num_prefix_tokens:]
    d = grid.shape[2]
    x = grid.reshape(1, *old_grid, d).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=new_grid, mode="bilinear", align_corners=False, antialias=False)
    x = x.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], d).to(pe.dtype)
    out = torch.cat([prefix, x], dim=1)
    return out[0] if squeeze else out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("prefix", [0, 1, 2])
def test_resample_pos_embed_is_bit_identical_to_the_former_implementation(dtype, prefix):
    g = torch.Generator().manual_seed(prefix)
    grids = [((14, 14), (18, 9)), ((14, 14), (16, 8)), ((18, 9), (14, 14)), ((7, 5), (3, 11)),
             ((1, 1), (4, 2)), ((4, 4), (1, 1)), ((2, 3), (3, 2))]
    for old, new in grids:
        for dim in (1, 12):
            pos = torch.randn(prefix + old[0] * old[1], dim, generator=g).to(dtype)
            for x in (pos, pos[None]):  # (P+N, D) and (1, P+N, D)
                ours = resample_pos_embed(x, new, old, num_prefix_tokens=prefix)
                assert ours.dtype == dtype
                assert torch.equal(ours, former_resample(x, new, old, prefix)), (old, new, dim)


def test_mlp_equals_timm_mlp_with_the_same_state_dict():
    torch.manual_seed(0)
    ours = Mlp(24, 96, drop=0.1)
    theirs = timm_layers.Mlp(24, 96, act_layer=nn.GELU, drop=0.1)
    assert list(ours.state_dict()) == list(theirs.state_dict())  # identical checkpoint keys
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(5, 7, 24)
    for train in (False, True):
        ours.train(train)
        theirs.train(train)
        torch.manual_seed(1)
        a = ours(x)
        torch.manual_seed(1)
        b = theirs(x)
        assert torch.equal(a, b)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.9])
def test_drop_path_equals_timm_drop_path(p):
    x = torch.randn(64, 3, 5)
    ours, theirs = DropPath(p), timm_layers.DropPath(p)
    for train in (True, False):
        ours.train(train)
        theirs.train(train)
        torch.manual_seed(2)
        a = ours(x)
        torch.manual_seed(2)
        b = theirs(x)
        assert torch.equal(a, b)
    assert not list(ours.state_dict()) and not list(theirs.state_dict())


def test_quick_gelu_equals_timm_quick_gelu():
    x = torch.linspace(-12, 12, 4001, dtype=torch.float64)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        y = x.to(dtype)
        assert torch.equal(QuickGELU()(y), timm_layers.QuickGELU()(y))

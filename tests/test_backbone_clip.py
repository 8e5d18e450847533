"""CLIP ViT-B/16 at the paper's shapes (288x144 -> 18x9 patches, D=768, d=512).

A random open_clip ``ViT-B-16-quickgelu`` is saved as a full CLIP state dict; both backbones
load it (positional embedding resampled 14x14 -> 18x9) and must reproduce open_clip's own
forward pass (``create_model(force_image_size=...)`` + ``forward_intermediates``) with the
positional embedding resized by a slow bilinear reference. Builds and loads run with the
network switched off. ViT-B/16 on CPU is slow: one module fixture, batch 1, T=2.
"""

from __future__ import annotations

import math
import socket
import warnings

import pytest
import torch
from tolerance import rounding_tol, vit_roundings
from torch import nn

from xreid import build_backbone

open_clip = pytest.importorskip("open_clip")
pytest.importorskip("timm")

pytestmark = pytest.mark.backbone

IMG = (288, 144)
GRID = (18, 9)


# ViT-B/16 at IMG: patch 16x16x3, D 768, depth 12, 1 + 162 tokens, projection over D; the
# backward pass adds a reduction over the frame's tokens
_ROUNDINGS = vit_roundings(patch_inputs=16 * 16 * 3, dim=768, depth=12, tokens=163, extra=768)
_TOL = rounding_tol(torch.float32, _ROUNDINGS)
_GRAD_TOL = rounding_tol(torch.float32, 2 * _ROUNDINGS + 163)


def slow_resample(pos: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """(1+N_old, D) -> (1+N_new, D): bilinear, align_corners=False, no antialias, [CLS] kept."""
    d = pos.shape[-1]
    g = pos[1:].reshape(*old, d).double()
    out = torch.empty(*new, d, dtype=torch.float64)
    for i in range(new[0]):
        sy = max((i + 0.5) * old[0] / new[0] - 0.5, 0.0)
        y0 = min(math.floor(sy), old[0] - 1)
        y1, wy = min(y0 + 1, old[0] - 1), sy - y0
        for j in range(new[1]):
            sx = max((j + 0.5) * old[1] / new[1] - 0.5, 0.0)
            x0 = min(math.floor(sx), old[1] - 1)
            x1, wx = min(x0 + 1, old[1] - 1), sx - x0
            out[i, j] = ((1 - wy) * ((1 - wx) * g[y0, x0] + wx * g[y0, x1])
                         + wy * ((1 - wx) * g[y1, x0] + wx * g[y1, x1]))
    return torch.cat([pos[:1], out.reshape(-1, d).to(pos.dtype)])


def _refuse(*args, **kwargs):
    raise OSError("network access attempted during a backbone test")


def _offline(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(socket.socket, "connect", _refuse)
    mp.setattr(socket.socket, "connect_ex", _refuse)
    mp.setattr(socket, "create_connection", _refuse)
    mp.setattr(socket, "getaddrinfo", _refuse)


def _create_clip(**kw) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_clip.create_model("ViT-B-16-quickgelu", pretrained=None, **kw)


def _reference(full: dict[str, torch.Tensor], video: torch.Tensor):
    """open_clip's own forward at 288x144 -> (tokens (M, 163, 768), features (M, 512))."""
    ref = _create_clip(force_image_size=IMG).visual.eval()
    assert tuple(ref.grid_size) == GRID
    sd = {k[len("visual."):]: v.float() for k, v in full.items() if k.startswith("visual.")}
    sd["positional_embedding"] = slow_resample(sd["positional_embedding"], (14, 14), GRID)
    ref.load_state_dict(sd)
    with torch.no_grad():
        out = ref.forward_intermediates(video.flatten(0, 1), indices=[11],
                                        normalize_intermediates=True, output_fmt="NLC",
                                        output_extra_tokens=True)
    tokens = torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]],
                       dim=1)
    return tokens, out["image_features"]


@pytest.fixture(scope="module")
def clip_case(tmp_path_factory):
    """(checkpoint path, full state dict, video (1,2,3,288,144), reference tokens, features)."""
    with pytest.MonkeyPatch.context() as mp:
        _offline(mp)
        torch.manual_seed(0)
        model = _create_clip()
        with torch.no_grad():
            for name, p in model.visual.named_parameters():
                if p.dim() == 1 and name != "class_embedding":  # LayerNorm / biases
                    p.add_(0.05 * torch.randn_like(p))
        full = {k: v.detach().clone() for k, v in model.state_dict().items()}
        del model
        path = tmp_path_factory.mktemp("vitb16") / "open_clip_vit_b16.pt"
        torch.save(full, path)
        video = torch.randn(1, 2, 3, *IMG, generator=torch.Generator().manual_seed(1))
        tokens, features = _reference(full, video)
    return path, full, video, tokens, features


@pytest.mark.parametrize("name", ["clip-vit-b16", "clip-vit-b16-openclip"])
def test_vit_b16_tokens_equal_open_clip(clip_case, monkeypatch, name):
    path, _, video, ref_tokens, ref_features = clip_case
    _offline(monkeypatch)
    model = build_backbone(name, weights=path, num_cameras=0).eval()
    assert (model.embed_dim, model.proj_dim) == (768, 512)
    assert (model.grid_size, model.num_patches, model.img_size) == (GRID, 162, IMG)
    with torch.no_grad():
        out = model(video)
    assert out.tokens.shape == (1, 2, 163, 768) and out.projected.shape == (1, 2, 512)
    torch.testing.assert_close(out.tokens[0], ref_tokens, **_TOL)
    torch.testing.assert_close(out.projected[0], ref_features, **_TOL)


@pytest.mark.slow
def test_vit_b16_openai_torchscript_through_convert_cli(clip_case, tmp_path, monkeypatch):
    """A full-size fp16 TorchScript archive in OpenAI naming -> xreid-convert -> timm backbone."""
    from xreid.convert import main as convert_main

    _, full, video, _, _ = clip_case
    _offline(monkeypatch)

    class Holder(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    root = Holder()
    for key, value in full.items():
        *parents, leaf = key.split(".")
        mod = root
        for part in parents:
            if not hasattr(mod, part):
                mod.add_module(part, Holder())
            mod = getattr(mod, part)
        mod.register_parameter(leaf, nn.Parameter(value.half(), requires_grad=False))
    root.register_buffer("input_resolution", torch.tensor(224))
    jit_path, out_path = tmp_path / "ViT-B-16.pt", tmp_path / "clip_vitb16.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(root), str(jit_path))
    assert convert_main([str(jit_path), str(out_path), "--img-size", "288", "144"]) == 0
    model = build_backbone("clip-vit-b16", weights=out_path).eval()
    with torch.no_grad():
        out = model(video)
    ref_tokens, ref_features = _reference({k: v.half() for k, v in full.items()}, video)
    torch.testing.assert_close(out.tokens[0], ref_tokens, **_TOL)
    torch.testing.assert_close(out.projected[0], ref_features, **_TOL)


@pytest.mark.slow
def test_vit_b16_grad_checkpointing_and_sie(clip_case):
    path = clip_case[0]
    torch.manual_seed(0)
    a = build_backbone("clip-vit-b16", weights=path, num_cameras=12, freeze_patch_embed=True)
    b = build_backbone("clip-vit-b16", weights=path, num_cameras=12, freeze_patch_embed=True,
                       grad_checkpointing=True)
    b.load_state_dict(a.state_dict())
    video, cams = clip_case[2][:, :1], torch.tensor([11])
    for m in (a, b):
        out = m(video, cams)
        (out.tokens.mean() + out.projected.sum()).backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        if p.requires_grad:
            torch.testing.assert_close(p.grad, q.grad, **_GRAD_TOL, msg=n)
    assert a.vit.patch_embed.proj.weight.grad is None

"""Backbone weights: OpenAI / open_clip / timm key conversion, TorchScript and safetensors
files, the positional-embedding resize (against a slow bilinear reference), the
``xreid-convert`` CLI, and the timm / open_clip adapters at a small size against open_clip's
own forward pass. Nothing may touch the network.
"""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from tolerance import rounding_tol, vit_roundings
from torch import nn

from xreid import build_backbone
from xreid.backbones import read_checkpoint, resample_pos_embed, to_canonical
from xreid.backbones.weights import canonical_to_openai, openai_to_canonical
from xreid.convert import main as convert_main

open_clip = pytest.importorskip("open_clip")
timm = pytest.importorskip("timm")

pytestmark = pytest.mark.backbone

SMALL = {"embed_dim": 64, "depth": 2, "num_heads": 2, "patch_size": 8, "proj_dim": 32}
SRC_IMG = (32, 32)  # the checkpoint's grid: 4x4
IMG = (48, 24)  # the backbones' grid: 6x3 (resampled)
# the small backbones at IMG: patch 8x8x3, D 64, depth 2, 1 + 18 tokens, projection over D;
# the backward pass adds a reduction over the 2 frames' tokens
_ROUNDINGS = vit_roundings(patch_inputs=8 * 8 * 3, dim=64, depth=2, tokens=19, extra=64)
_TOL = rounding_tol(torch.float32, _ROUNDINGS)
_GRAD_TOL = rounding_tol(torch.float32, 2 * _ROUNDINGS + 2 * 19)
NAMES = ["tiny", "clip-vit-b16", "clip-vit-b16-openclip"]


# ------------------------------------------------------------------------------- helpers
def slow_bilinear(grid: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """Obviously-correct bilinear resize, align_corners=False, no antialias.

    grid (gh, gw, D) -> (oh, ow, D): source coordinate (i + 0.5) * in / out - 0.5, clamped
    at 0; the upper neighbour is clamped at the border.
    """
    gh, gw, d = grid.shape
    oh, ow = out_hw
    g = grid.double()
    out = torch.empty(oh, ow, d, dtype=torch.float64)
    for i in range(oh):
        sy = max((i + 0.5) * gh / oh - 0.5, 0.0)
        y0 = min(math.floor(sy), gh - 1)
        y1, wy = min(y0 + 1, gh - 1), sy - y0
        for j in range(ow):
            sx = max((j + 0.5) * gw / ow - 0.5, 0.0)
            x0 = min(math.floor(sx), gw - 1)
            x1, wx = min(x0 + 1, gw - 1), sx - x0
            top = (1 - wx) * g[y0, x0] + wx * g[y0, x1]
            bottom = (1 - wx) * g[y1, x0] + wx * g[y1, x1]
            out[i, j] = (1 - wy) * top + wy * bottom
    return out.to(grid.dtype)


def slow_resample(pos: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """(1+N_old, D) -> (1+N_new, D), [CLS] row kept."""
    grid = pos[1:].reshape(*old, -1)
    return torch.cat([pos[:1], slow_bilinear(grid, new).reshape(-1, pos.shape[-1])])


def small_visual(img=SRC_IMG) -> nn.Module:
    """A small open_clip vision tower (QuickGELU), every parameter random."""
    from open_clip.transformer import QuickGELU, VisionTransformer

    v = VisionTransformer(image_size=img, patch_size=8, width=64, layers=2, heads=2,
                          mlp_ratio=4.0, output_dim=32, act_layer=QuickGELU)
    with torch.no_grad():
        for p in v.parameters():
            p.add_(0.1 * torch.randn_like(p))  # LayerNorm weights/biases too
    return v.eval()


def openai_checkpoint(visual: nn.Module) -> dict[str, torch.Tensor]:
    """A full-CLIP-like state dict in OpenAI naming: visual.* plus text-tower entries."""
    sd = {"visual." + k: v.detach().clone() for k, v in visual.state_dict().items()}
    sd.update({
        "positional_embedding": torch.randn(7, 16),  # text tower, must be ignored
        "token_embedding.weight": torch.randn(10, 16),
        "text_projection": torch.randn(16, 32),
        "logit_scale": torch.tensor(4.6),
        "input_resolution": torch.tensor(SRC_IMG[0]),
        "context_length": torch.tensor(7),
        "vocab_size": torch.tensor(10),
    })
    return sd


def save_torchscript(state: dict[str, torch.Tensor], path) -> None:
    """A real TorchScript archive (like OpenAI's ViT-B-16.pt) whose state_dict() is ``state``."""

    class Holder(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    root = Holder()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        mod = root
        for part in parents:
            if not hasattr(mod, part):
                mod.add_module(part, Holder())
            mod = getattr(mod, part)
        if value.is_floating_point():
            mod.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
        else:
            mod.register_buffer(leaf, value.clone())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notices
        torch.jit.save(torch.jit.script(root), str(path))


def reference_forward(visual_sd: dict[str, torch.Tensor], img, frames: torch.Tensor):
    """open_clip's own forward at ``img`` with the slow-resampled positional embedding.

    Returns (tokens (M, 1+N, D) after ln_post, image features (M, d)).
    """
    ref = small_visual(img)
    sd = dict(visual_sd)
    old = math.isqrt(sd["positional_embedding"].shape[0] - 1)
    sd["positional_embedding"] = slow_resample(sd["positional_embedding"], (old, old),
                                               ref.grid_size)
    ref.load_state_dict(sd)
    with torch.no_grad():
        out = ref.forward_intermediates(frames, indices=[len(ref.transformer.resblocks) - 1],
                                        normalize_intermediates=True, output_fmt="NLC",
                                        output_extra_tokens=True)
    tokens = torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]],
                       dim=1)
    return tokens, out["image_features"]


def build(name: str, **kw):
    kw.setdefault("img_size", IMG)
    if name == "tiny":  # the size of the open_clip checkpoints made below
        return build_backbone(name, embed_dim=64, depth=2, num_heads=2, **kw)
    return build_backbone(name, **SMALL, **kw)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during a backbone test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def checkpoint_files(tmp_path_factory):
    """The same random small CLIP saved as .pt (state dict), TorchScript and safetensors."""
    torch.manual_seed(0)
    visual = small_visual()
    full = openai_checkpoint(visual)
    root = tmp_path_factory.mktemp("ckpt")
    files = {"pt": root / "clip_full.pt", "jit": root / "ViT-tiny.pt",
             "safetensors": root / "visual.safetensors"}
    torch.save(full, files["pt"])
    save_torchscript({k: v.half() if v.is_floating_point() else v for k, v in full.items()},
                     files["jit"])
    from safetensors.torch import save_file

    save_file({k: v for k, v in full.items() if k.startswith("visual.")},
              str(files["safetensors"]))
    return visual.state_dict(), full, files


# --------------------------------------------------------------------- positional embedding
@given(
    old=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    new=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    dim=st.integers(1, 5),
)
def test_resample_pos_embed_matches_slow_bilinear(old, new, dim):
    g = torch.Generator().manual_seed(old[0] * 100 + new[1])
    pos = torch.randn(1 + old[0] * old[1], dim, generator=g)
    out = resample_pos_embed(pos, new, old)
    assert out.shape == (1 + new[0] * new[1], dim)
    # bilinear: four weighted terms, weights from two divisions each
    torch.testing.assert_close(out, slow_resample(pos, old, new), **rounding_tol(torch.float32, 8))
    assert torch.equal(out[0], pos[0])
    batched = resample_pos_embed(pos[None], new, old)
    torch.testing.assert_close(batched[0], out)


def test_resample_pos_embed_matches_timm_bilinear_not_bicubic():
    from timm.layers import resample_abs_pos_embed

    pos = torch.randn(1, 1 + 14 * 14, 12)
    ours = resample_pos_embed(pos, (18, 9))  # square old grid inferred
    timm_bilinear = resample_abs_pos_embed(pos, [18, 9], interpolation="bilinear",
                                           antialias=False)
    torch.testing.assert_close(ours, timm_bilinear, **rounding_tol(torch.float32, 8))
    timm_default = resample_abs_pos_embed(pos, [18, 9])  # bicubic + antialias
    assert (ours - timm_default).abs().max() > 1e-2


def test_resample_pos_embed_identity_and_errors():
    pos = torch.randn(1, 1 + 16, 4)
    assert resample_pos_embed(pos, (4, 4)) is pos
    with pytest.raises(ValueError, match="old_grid: expected the checkpoint's patch grid"):
        resample_pos_embed(torch.randn(1, 1 + 18, 4), (3, 3))
    with pytest.raises(ValueError, match=r"old_grid: expected gh\*gw == 16"):
        resample_pos_embed(pos, (3, 3), old_grid=(3, 5))
    with pytest.raises(ValueError, match="pos_embed: expected a"):
        resample_pos_embed(torch.randn(2, 17, 4), (3, 3))


# ------------------------------------------------------------------------ key conversion
def test_openai_to_canonical_matches_timm_converter():
    from timm.models.vision_transformer import _convert_openai_clip

    full = openai_checkpoint(small_visual())
    ours, fmt = to_canonical(full)
    assert fmt == "openai"
    theirs = _convert_openai_clip(full, None)
    assert torch.equal(theirs.pop("head.bias"), torch.zeros(32))
    assert set(ours) == set(theirs)
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k
    # and back: canonical -> OpenAI names gives the visual part of the original
    back = canonical_to_openai(ours)
    visual = {k: v for k, v in full.items() if k.startswith("visual.")}
    assert set(back) == set(visual)
    assert all(torch.equal(back[k], visual[k]) for k in visual)


def test_format_detection():
    full = openai_checkpoint(small_visual())
    visual_only = {k[len("visual."):]: v for k, v in full.items() if k.startswith("visual.")}
    canonical, _ = to_canonical(full)
    cases = {
        "openai": full,
        "open_clip-visual": visual_only,
        "timm": canonical,
        "xreid-timm": {"vit." + k: v for k, v in canonical.items()},
    }
    for fmt, sd in cases.items():
        got, detected = to_canonical(sd)
        assert detected == fmt
        assert set(got) == set(canonical)
        assert all(torch.equal(got[k], canonical[k]) for k in got), fmt
    # camera_embed passes through both directions unchanged
    cam = torch.randn(3, 64)
    assert torch.equal(openai_to_canonical({**full, "camera_embed": cam})["camera_embed"], cam)
    assert torch.equal(canonical_to_openai({**canonical, "camera_embed": cam})["camera_embed"],
                       cam)


def test_backbone_state_dicts_use_documented_names():
    names = {n: set(build(n, num_cameras=2).state_dict()) for n in NAMES}
    assert "pos_embed" in names["tiny"] and "camera_embed" in names["tiny"]
    assert "vit.pos_embed" in names["clip-vit-b16"]
    assert "vit.head.weight" in names["clip-vit-b16"]
    assert "vit.head.bias" not in names["clip-vit-b16"]  # CLIP's projection has no bias
    assert "visual.positional_embedding" in names["clip-vit-b16-openclip"]
    canon = {n: set(build(n, num_cameras=2).canonical_state_dict()) for n in NAMES}
    assert canon["tiny"] == canon["clip-vit-b16"] == canon["clip-vit-b16-openclip"]


# ---------------------------------------------------- files -> backbones == open_clip's own
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["pt", "jit", "safetensors"])
def test_loaded_backbone_equals_open_clip_forward(checkpoint_files, no_network, name, kind):
    visual_sd, _, files = checkpoint_files
    torch.manual_seed(1)
    model = build(name, weights=files[kind]).eval()
    frames = torch.randn(2, 3, *IMG)
    with torch.no_grad():
        out = model(frames.reshape(1, 2, 3, *IMG))
    if kind == "jit":  # OpenAI's archive is fp16: compare against the fp16-rounded weights
        visual_sd = {k: v.half().float() for k, v in visual_sd.items()}
    ref_tokens, ref_features = reference_forward(visual_sd, IMG, frames)
    assert out.tokens.shape == (1, 2, 1 + 18, 64)
    torch.testing.assert_close(out.tokens[0], ref_tokens, **_TOL)
    torch.testing.assert_close(out.projected[0], ref_features, **_TOL)


def test_wrong_architecture_file_lists_keys(checkpoint_files):
    _, _, files = checkpoint_files
    with pytest.raises(ValueError) as e:
        build_backbone("tiny", img_size=IMG, embed_dim=96, depth=3, num_heads=4,
                       weights=files["jit"])
    msg = str(e.value)
    assert f"weights: {str(files['jit'])!r} (format 'openai') does not fit" in msg
    assert "mismatched shapes (32): cls_token: checkpoint (1, 1, 64) vs model (1, 1, 96)" in msg
    assert "patch_embed.proj.weight: checkpoint (64, 3, 8, 8) vs model (96, 3, 8, 8)" in msg
    assert "missing keys (12): blocks.2.norm1.weight" in msg


def test_whole_model_state_dict_backbone_part_is_loaded():
    src = build_backbone("tiny", img_size=IMG, num_cameras=2)
    sd = {"backbone." + k: v for k, v in src.state_dict().items()}
    sd["classifier.weight"] = torch.randn(5, 96)
    got, fmt = to_canonical(sd)
    assert fmt == "xreid-model/timm" and set(got) == set(src.state_dict())
    dst = build_backbone("tiny", img_size=IMG, num_cameras=2, weights=sd)
    assert torch.equal(dst.camera_embed, src.camera_embed)


def test_read_checkpoint_torchscript_is_state_dict_only(checkpoint_files):
    _, full, files = checkpoint_files
    sd, meta = read_checkpoint(files["jit"])
    assert meta == {"source_format": "torchscript"}
    assert set(sd) == set(full)
    assert sd["visual.proj"].dtype == torch.float16
    assert torch.equal(sd["visual.proj"], full["visual.proj"].half())


# ------------------------------------------------------------------------------ convert CLI
@pytest.mark.parametrize("fmt", ["timm", "openclip"])
def test_convert_cli_round_trip(checkpoint_files, tmp_path, capsys, no_network, fmt):
    _, _, files = checkpoint_files
    out = tmp_path / f"converted_{fmt}.safetensors"
    assert convert_main([str(files["jit"]), str(out), "--img-size", *map(str, IMG),
                         "--format", fmt]) == 0
    assert "wrote" in capsys.readouterr().out
    sd, meta = read_checkpoint(out)
    assert meta["grid_size"] == "6,3" and meta["format"] == fmt
    assert all(v.dtype == torch.float32 for v in sd.values())
    if fmt == "timm":
        assert sd["pos_embed"].shape == (1, 1 + 18, 64) and "head.bias" in sd
    else:
        assert sd["visual.positional_embedding"].shape == (1 + 18, 64)
        assert not any(k.startswith("transformer.") for k in sd)  # text tower dropped
    frames = torch.randn(1, 2, 3, *IMG)
    a = build("clip-vit-b16", weights=out).eval()
    b = build("clip-vit-b16-openclip", weights=files["jit"]).eval()
    with torch.no_grad():
        torch.testing.assert_close(a(frames).tokens, b(frames).tokens, **_TOL)
    # the recorded 6x3 grid lets the file be loaded at another (non-square-grid) size
    c = build("tiny", img_size=(64, 32), weights=out)
    assert c.pos_embed.shape == (1, 1 + 32, 64)


def test_convert_output_loads_in_timm_itself(checkpoint_files, tmp_path, no_network):
    _, _, files = checkpoint_files
    out = tmp_path / "timm.safetensors"
    assert convert_main([str(files["pt"]), str(out), "--img-size", *map(str, IMG)]) == 0
    vit = timm.create_model(
        "vit_base_patch16_clip_quickgelu_224", pretrained=True, img_size=IMG,
        embed_dim=64, depth=2, num_heads=2, patch_size=8, num_classes=32,
        pretrained_cfg_overlay={"file": str(out), "num_classes": 32},
    ).eval()
    ours = build("clip-vit-b16", weights=out).eval()
    frames = torch.randn(2, 3, *IMG)
    with torch.no_grad():
        feats = vit.forward_features(frames)
        mine = ours(frames[None])
        torch.testing.assert_close(mine.tokens[0], feats, **_TOL)
        torch.testing.assert_close(mine.projected[0], vit.forward_head(feats), **_TOL)


def test_convert_cli_errors(tmp_path, capsys):
    assert convert_main([str(tmp_path / "missing.pt"), str(tmp_path / "o.safetensors")]) == 1
    assert "xreid-convert: error: weights: expected an existing local file" in (
        capsys.readouterr().err)
    src = tmp_path / "tiny.pt"
    torch.save(build_backbone("tiny", img_size=(32, 16)).state_dict(), src)
    assert convert_main([str(src), str(tmp_path / "o.safetensors"), "--img-size", "30", "16"]) == 1
    assert "img_size: expected positive multiples of the patch size (8, 8)" in (
        capsys.readouterr().err)
    with pytest.raises(SystemExit) as e:
        convert_main([str(src), str(tmp_path / "o.safetensors"), "--format", "onnx"])
    assert e.value.code == 2


def test_convert_module_entry_point(tmp_path):
    src, out = tmp_path / "tiny.pt", tmp_path / "tiny.safetensors"
    model = build_backbone("tiny", img_size=(32, 16), num_cameras=2)
    torch.save(model.state_dict(), src)
    res = subprocess.run([sys.executable, "-m", "xreid.convert", str(src), str(out),
                          "--img-size", "32", "16"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "patch grid 4x2" in res.stdout
    back = build_backbone("tiny", img_size=(32, 16), num_cameras=2, weights=out)
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


# ------------------------------------------------------------------------------- adapters
@pytest.mark.parametrize("name", ["clip-vit-b16", "clip-vit-b16-openclip"])
def test_adapter_attributes_sie_freeze_and_errors(name):
    m = build(name, num_cameras=3, camera_coef=2.0, freeze_patch_embed=True).eval()
    assert (m.embed_dim, m.proj_dim, m.grid_size, m.num_patches) == (64, 32, (6, 3), 18)
    assert m.img_size == IMG and m.patch_size == (8, 8) and m.num_cameras == 3
    frozen = [n for n, p in m.named_parameters() if not p.requires_grad]
    assert frozen == [{"clip-vit-b16": "vit.patch_embed.proj.weight",
                       "clip-vit-b16-openclip": "visual.conv1.weight"}[name]]
    assert m.no_weight_decay() <= dict(m.named_parameters()).keys()
    pre_norm = m.vit.norm_pre if name == "clip-vit-b16" else m.visual.ln_pre
    inputs = []
    pre_norm.register_forward_hook(lambda mod, i, o: inputs.append(i[0]))
    video, cams = torch.randn(2, 2, 3, *IMG), torch.tensor([2, 0])
    with torch.no_grad():
        m(video)
        m(video, cams)
    diff = (inputs[1] - inputs[0]).reshape(2, 2, 19, 64)
    assert torch.equal(diff[:, :, 1:], torch.zeros_like(diff[:, :, 1:]))
    torch.testing.assert_close(diff[:, :, 0], (2.0 * m.camera_embed[cams])[:, None].expand(
        2, 2, -1), **rounding_tol(torch.float32, 2))
    with pytest.raises(ValueError, match=r"cameras: expected values in \[0, 3\)"):
        m(video, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"video: expected frames of size \(H, W\) = \(48, 24\)"):
        m(torch.randn(1, 1, 3, 32, 32))


@pytest.mark.parametrize("name", ["clip-vit-b16", "clip-vit-b16-openclip"])
def test_adapter_grad_checkpointing_same_outputs_and_grads(name):
    torch.manual_seed(0)
    a = build(name, num_cameras=2)
    b = build(name, num_cameras=2, grad_checkpointing=True)
    b.load_state_dict(a.state_dict())
    video, cams = torch.randn(1, 2, 3, *IMG), torch.tensor([1])
    outs = []
    for m in (a, b):
        out = m(video, cams)
        (out.tokens.pow(2).mean() + out.projected.sum()).backward()
        outs.append(out)
    torch.testing.assert_close(outs[0].tokens, outs[1].tokens)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert p.grad is not None, n
        torch.testing.assert_close(p.grad, q.grad, **_GRAD_TOL, msg=n)


def test_adapter_rejects_bad_options():
    with pytest.raises(TypeError, match="unsupported keyword argument 'num_classes'"):
        build_backbone("clip-vit-b16", img_size=IMG, num_classes=10, **SMALL)
    with pytest.raises(ValueError, match="model_name: expected an open_clip model config"):
        build_backbone("clip-vit-b16-openclip", img_size=IMG, model_name="nope", **SMALL)
    with pytest.raises(ValueError, match=r"img_size: expected multiples of the patch size"):
        build_backbone("clip-vit-b16", img_size=(40, 24), **SMALL | {"patch_size": 16})

"""Backbones: the shared frame-encoder contract, tested on the pure-torch ``"tiny"`` ViT.

Shapes, frame flattening and batch independence, the camera embedding (SIE on [CLS] only),
freezing, gradient checkpointing, autocast, torch.compile, weight round trips, mismatch
errors and input validation. No timm / open_clip here (see ``test_backbone_weights.py``
and ``test_backbone_clip.py``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from tolerance import rounding_tol, vit_roundings

from xreid import FrameTokens, build_backbone
from xreid.backbones import list_backbones

IMG = (32, 16)  # patch 8 -> 4x2 grid, N = 8


# the tiny backbone at IMG: patch 8x8x3, D 96, depth 3, 1 + 8 tokens; the backward pass adds
# a reduction over the 2 x 3 frames' tokens to the chain
_ROUNDINGS = vit_roundings(patch_inputs=8 * 8 * 3, dim=96, depth=3, tokens=9, extra=96)
_TOL = rounding_tol(torch.float32, _ROUNDINGS)
_GRAD_TOL = rounding_tol(torch.float32, 2 * _ROUNDINGS + 2 * 3 * 9)


def _tiny(**kw):
    kw.setdefault("img_size", IMG)
    return build_backbone("tiny", **kw)


def _video(b: int = 2, t: int = 3, img=IMG, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 3, *img, generator=g)


def test_import_xreid_and_tiny_backbone_do_not_import_timm_open_clip_torchvision():
    code = textwrap.dedent(
        """
        import sys
        import torch
        import xreid
        heavy = ("timm", "open_clip", "torchvision")
        assert not [m for m in sys.modules if m.split(".")[0] in heavy], "import xreid"
        from xreid import FrameTokens, build_backbone
        import xreid.backbones
        m = build_backbone("tiny", img_size=(32, 16), num_cameras=2)
        out = m(torch.randn(1, 2, 3, 32, 16), torch.tensor([1]))
        assert isinstance(out, FrameTokens)
        bad = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in heavy})
        assert not bad, bad
        print("ok")
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_registry_names():
    assert list_backbones() == ["clip-vit-b16", "clip-vit-b16-openclip", "tiny"]


@pytest.mark.parametrize(
    ("img", "kw", "grid"),
    [
        ((32, 16), {}, (4, 2)),
        ((288, 144), {"patch_size": 16}, (18, 9)),
        ((24, 24), {"patch_size": 8, "embed_dim": 96, "depth": 3, "num_heads": 3,
                    "proj_dim": 48}, (3, 3)),
    ],
)
def test_shapes_and_attributes(img, kw, grid):
    m = build_backbone("tiny", img_size=img, **kw)
    d, p = kw.get("embed_dim", 96), kw.get("proj_dim", 32)
    n = grid[0] * grid[1]
    assert (m.embed_dim, m.proj_dim, m.grid_size, m.num_patches) == (d, p, grid, n)
    assert m.img_size == img and m.num_cameras == 0 and m.camera_embed is None
    out = m(_video(2, 3, img))
    assert isinstance(out, FrameTokens)
    assert out.tokens.shape == (2, 3, 1 + n, d)
    assert out.projected.shape == (2, 3, p)
    assert out.tokens.dtype == out.projected.dtype == torch.float32


def test_tokens_are_final_norm_output_and_projected_is_cls_through_head():
    m = _tiny().eval()
    seen = {}
    m.norm.register_forward_hook(lambda mod, i, o: seen.setdefault("norm", o))
    video = _video()
    with torch.no_grad():
        out = m(video)
    torch.testing.assert_close(out.tokens.flatten(0, 1), seen["norm"])
    torch.testing.assert_close(out.projected, out.tokens[:, :, 0] @ m.head.weight.t())


def test_frames_are_flattened_clip_major_and_encoded_independently():
    m = _tiny().eval()
    video = _video(2, 3)
    with torch.no_grad():
        out = m(video)
        for b in range(2):
            for t in range(3):
                single = m(video[b : b + 1, t : t + 1])
                torch.testing.assert_close(single.tokens[0, 0], out.tokens[b, t], **_TOL)
                torch.testing.assert_close(single.projected[0, 0], out.projected[b, t], **_TOL)


def test_batch_independent_and_deterministic():
    m = _tiny(num_cameras=3).eval()
    video, cams = _video(4, 2), torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        full = m(video, cams)
        again = m(video, cams)
        part = m(video[1:3], cams[1:3])
    assert torch.equal(full.tokens, again.tokens)
    torch.testing.assert_close(part.tokens, full.tokens[1:3], **_TOL)
    torch.testing.assert_close(part.projected, full.projected[1:3], **_TOL)


def test_input_not_modified():
    m = _tiny(num_cameras=2)
    video, cams = _video(), torch.tensor([1, 0])
    v0, c0 = video.clone(), cams.clone()
    m(video, cams).tokens.sum().backward()
    assert torch.equal(video, v0) and torch.equal(cams, c0)


@pytest.mark.parametrize("coef", [1.0, 2.5])
def test_camera_embedding_is_added_to_cls_only(coef):
    m = _tiny(num_cameras=4, camera_coef=coef).eval()
    assert m.camera_embed.shape == (4, m.embed_dim)
    assert 0.005 < float(m.camera_embed.detach().std()) < 0.05  # trunc_normal(std=0.02)
    inputs = []
    m.norm_pre.register_forward_hook(lambda mod, i, o: inputs.append(i[0]))
    video, cams = _video(2, 3), torch.tensor([3, 1])
    with torch.no_grad():
        m(video)
        with_cam = m(video, cams)
    without, with_ = inputs
    diff = (with_ - without).reshape(2, 3, -1, m.embed_dim)
    assert torch.equal(diff[:, :, 1:], torch.zeros_like(diff[:, :, 1:]))
    expected = (coef * m.camera_embed[cams])[:, None].expand(2, 3, -1)
    # one addition of a scaled embedding: two roundings
    torch.testing.assert_close(diff[:, :, 0], expected, **rounding_tol(torch.float32, 2))
    # different cameras give different outputs; frames of a clip share the camera
    with torch.no_grad():
        other = m(video, torch.tensor([0, 1]))
    assert not torch.allclose(other.tokens[0], with_cam.tokens[0])
    torch.testing.assert_close(other.tokens[1], with_cam.tokens[1])


def test_camera_errors():
    m = _tiny(num_cameras=3)
    video = _video(2, 1)
    with pytest.raises(ValueError, match=r"cameras: expected values in \[0, 3\), got .*\[0, 3\]"):
        m(video, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"cameras: expected values in \[0, 3\), got .*\[-1, 1\]"):
        m(video, torch.tensor([-1, 1]))
    with pytest.raises(ValueError, match="cameras: expected 2 entries .*got 3"):
        m(video, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="cameras: expected an integer tensor, got dtype"):
        m(video, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"cameras: expected a 1-D tensor \(B,\), got shape"):
        m(video, torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="cameras: expected None .*num_cameras=0, got Tensor"):
        _tiny()(video, torch.tensor([0, 0]))


def test_video_errors():
    m = _tiny()
    with pytest.raises(ValueError, match=r"video: expected a 5-D tensor \(B, T, 3, H, W\), "
                                         r"got shape \(2, 3, 32, 16\)"):
        m(torch.randn(2, 3, 32, 16))
    with pytest.raises(ValueError, match=r"video: expected size 3 at dim 2 .* got shape "
                                         r"\(1, 2, 1, 32, 16\)"):
        m(torch.randn(1, 2, 1, 32, 16))
    with pytest.raises(ValueError, match=r"video: expected frames of size \(H, W\) = \(32, 16\)"
                                         r".* got shape \(1, 2, 3, 64, 32\)"):
        m(torch.randn(1, 2, 3, 64, 32))
    with pytest.raises(ValueError, match="video: expected a floating-point tensor, got dtype"):
        m(torch.zeros(1, 2, 3, 32, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="video: expected a torch.Tensor .*got list"):
        m([[0.0]])


def test_build_errors():
    with pytest.raises(ValueError, match="name: expected one of .*'tiny'.*got 'vit-huge'"):
        build_backbone("vit-huge")
    with pytest.raises(ValueError, match=r"img_size: expected \(H, W\) positive integers"):
        build_backbone("tiny", img_size=(32, 0))
    with pytest.raises(ValueError, match=r"img_size: expected multiples of the patch size "
                                         r"\(8, 8\), got \(30, 16\)"):
        build_backbone("tiny", img_size=(30, 16))
    with pytest.raises(ValueError, match="num_cameras: expected an integer >= 0, got -1"):
        build_backbone("tiny", img_size=IMG, num_cameras=-1)
    with pytest.raises(ValueError, match="num_heads: expected a divisor of embed_dim=96, got 5"):
        build_backbone("tiny", img_size=IMG, num_heads=5)


def test_freeze_patch_embed():
    m = _tiny(freeze_patch_embed=True, num_cameras=2)
    frozen = [n for n, p in m.named_parameters() if not p.requires_grad]
    assert frozen == ["patch_embed.proj.weight"]
    m(_video(), torch.tensor([0, 1])).projected.sum().backward()
    assert m.patch_embed.proj.weight.grad is None


def test_every_trainable_parameter_gets_a_gradient():
    m = _tiny(num_cameras=2)
    out = m(_video(), torch.tensor([0, 1]))
    (out.tokens.sum() + out.projected.sum()).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


def test_grad_checkpointing_gives_same_outputs_and_grads():
    torch.manual_seed(0)
    a = _tiny(num_cameras=2)
    b = _tiny(num_cameras=2, grad_checkpointing=True)
    b.load_state_dict(a.state_dict())
    assert b.grad_checkpointing and not a.grad_checkpointing
    video, cams = _video(), torch.tensor([1, 0])
    outs = []
    for m in (a, b):
        out = m(video, cams)
        (out.tokens.pow(2).mean() + out.projected.sum()).backward()
        outs.append(out)
    torch.testing.assert_close(outs[0].tokens, outs[1].tokens, atol=0, rtol=0)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, **_GRAD_TOL, msg=n)
    b.set_grad_checkpointing(False)
    assert not b.grad_checkpointing


def test_no_weight_decay_names_are_parameters():
    m = _tiny(num_cameras=2)
    names = dict(m.named_parameters())
    assert m.no_weight_decay() == {"cls_token", "pos_embed", "camera_embed"}
    assert m.no_weight_decay() <= set(names)


def test_autocast_bfloat16_cpu():
    m = _tiny(num_cameras=2).eval()
    video, cams = _video(), torch.tensor([0, 1])
    with torch.no_grad():
        ref = m(video, cams)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(video, cams)
    assert out.tokens.shape == ref.tokens.shape
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.projected).all()
    torch.testing.assert_close(out.tokens.float(), ref.tokens, atol=0.15, rtol=0.05)


def test_model_dtype_follows_parameters():
    m = _tiny().double()
    out = m(_video())  # float32 video is cast to the parameters' dtype
    assert out.tokens.dtype == out.projected.dtype == torch.float64


def test_torch_compile_eager_fullgraph():
    m = _tiny(num_cameras=3).eval()
    compiled = torch.compile(m, backend="eager", fullgraph=True)
    video, cams = _video(), torch.tensor([2, 0])
    with torch.no_grad():
        ref = m(video, cams)
        out = compiled(video, cams)
    torch.testing.assert_close(out.tokens, ref.tokens)
    torch.testing.assert_close(out.projected, ref.projected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_and_runs_under_fp16_autocast():
    m = _tiny(num_cameras=2).eval()
    video, cams = _video(), torch.tensor([1, 0])
    with torch.no_grad():
        ref = m(video, cams)
        m.cuda()
        out = m(video.cuda(), cams)  # cameras may stay on the CPU
        with torch.autocast("cuda", dtype=torch.float16):
            half = m(video.cuda(), cams.cuda())
    torch.testing.assert_close(out.tokens.cpu(), ref.tokens, **_TOL)
    assert torch.isfinite(half.tokens).all() and torch.isfinite(half.projected).all()
    torch.testing.assert_close(half.tokens.float().cpu(), ref.tokens, atol=0.05, rtol=0.05)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_weights_round_trip_through_files(tmp_path, suffix):
    src = _tiny(num_cameras=3).eval()
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".pt":
        torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}},
                   path)
    else:
        from safetensors.torch import save_file

        save_file(src.state_dict(), str(path))
    torch.manual_seed(123)
    dst = build_backbone("tiny", img_size=IMG, num_cameras=3, weights=path).eval()
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    video, cams = _video(), torch.tensor([0, 2])
    with torch.no_grad():
        torch.testing.assert_close(dst(video, cams).tokens, src(video, cams).tokens)


def test_checkpoint_without_camera_embedding_keeps_initial_one():
    src = _tiny()
    torch.manual_seed(7)
    dst = _tiny(num_cameras=2)
    init = dst.camera_embed.detach().clone()
    dst.load_weights(src.state_dict())
    assert torch.equal(dst.camera_embed, init)
    assert torch.equal(dst.pos_embed, src.pos_embed)


def test_mismatched_checkpoint_lists_keys():
    def small(**kw):  # explicit size: the messages below quote D = 64
        return _tiny(**{"embed_dim": 64, "depth": 2, **kw})

    deeper = small(depth=3).state_dict()
    with pytest.raises(ValueError) as e:
        small(depth=2).load_weights(deeper)
    msg = str(e.value)
    assert msg.startswith("weights: the given state dict (format 'timm') does not fit")
    assert "unexpected keys (12): blocks.2.norm1.weight" in msg
    wider = small(embed_dim=96, num_heads=4).state_dict()
    with pytest.raises(ValueError) as e:
        small().load_weights(wider)
    msg = str(e.value)
    assert "mismatched shapes" in msg
    assert "blocks.0.attn.qkv.weight: checkpoint (288, 96) vs model (192, 64)" in msg
    assert "cls_token: checkpoint (1, 1, 96) vs model (1, 1, 64)" in msg
    partial = {k: v for k, v in small().state_dict().items() if not k.startswith("norm.")}
    with pytest.raises(ValueError, match=r"missing keys \(2\): norm.weight, norm.bias"):
        small().load_weights(partial)
    with pytest.raises(ValueError, match=r"unexpected keys \(1\): camera_embed"):
        small().load_weights(small(num_cameras=2).state_dict())
    with pytest.raises(ValueError, match=r"camera_embed: checkpoint \(2, 64\) vs model \(5, 64\)"):
        small(num_cameras=5).load_weights(small(num_cameras=2).state_dict())


def test_weights_argument_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights: expected an existing local file"):
        _tiny(weights=tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="weights: expected a path .* or a state dict, got int"):
        _tiny(weights=3)
    with pytest.raises(ValueError, match="weights: expected an OpenAI/open_clip CLIP checkpoint"):
        _tiny(weights={"foo.weight": torch.zeros(2)})
    bad = tmp_path / "garbage.bin"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="weights: could not read"):
        _tiny(weights=bad)
    sd = _tiny().state_dict()
    sd["head.bias"] = torch.ones(32)
    with pytest.raises(ValueError, match="'head.bias' to be zero or absent"):
        _tiny(weights=sd)
    sd["head.bias"] = torch.zeros(32)  # timm's converted CLIP head: accepted
    _tiny(weights=sd)

"""Textual prompts: the offline tokenizer, the prompt learner, the prompt encoder against
open_clip's own text forward, the image-text losses against slow loop references, and the
text tower loaded from OpenAI-format checkpoints written here (state dict, TorchScript and
``xreid-convert --keep-text``). Nothing may touch the network.
"""

from __future__ import annotations

import math
import socket
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from tolerance import rounding_tol, vit_roundings
from torch import nn

from xreid.prompts import (
    DEFAULT_TEMPLATE,
    PromptLearner,
    TextTowerConfig,
    build_text_tower,
    encode_prompt_embeddings,
    extract_text_state,
    image_to_text_loss,
    load_text_tower,
    prompt_logits,
    supervised_contrastive_loss,
    text_to_image_loss,
)
from xreid.prompts.learner import tokenize_template

open_clip = pytest.importorskip("open_clip")

SOT, EOT, X = 49406, 49407, 343  # CLIP BPE ids of <start_of_text>, <end_of_text>, "x</w>"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during a prompt test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def perturbed(module: nn.Module, std: float = 0.05) -> nn.Module:
    """Every parameter moved off its init (LayerNorm weights/biases too)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn_like(p))
    return module


def _text_tol(tower: nn.Module) -> dict[str, float]:
    """A text transformer over 77 tokens, then the projection over its width."""
    width, layers = tower.width, len(tower.transformer.resblocks)
    return rounding_tol(torch.float32, vit_roundings(patch_inputs=1, dim=width, depth=layers,
                                                     tokens=77, extra=width))


@pytest.fixture(scope="module")
def tower() -> nn.Module:
    torch.manual_seed(0)
    return perturbed(build_text_tower(TextTowerConfig.tiny(embed_dim=32))).eval()


# ------------------------------------------------------------------------------ tokenizer
def test_template_tokenizes_offline(no_network):
    tokens, start, n_ctx = tokenize_template(DEFAULT_TEMPLATE)
    assert tokens.shape == (77,) and tokens.dtype == torch.long
    # <sot> a photo of a X X X X person . <eot> <pad>...
    assert tokens[0] == SOT and tokens[11] == EOT and int(tokens.argmax()) == 11
    assert (start, n_ctx) == (5, 4)
    assert tokens[5:9].tolist() == [X] * 4
    assert (tokens[12:] == 0).all()


@pytest.mark.parametrize("template", ["A photo of a person.", "A X photo X person.", 3])
def test_bad_templates_are_rejected(template):
    with pytest.raises(ValueError, match="template"):
        tokenize_template(template)


# -------------------------------------------------------------------------------- learner
def test_learner_splices_the_context_between_the_template_words(tower):
    learner = PromptLearner(5, tower.token_embedding)
    assert learner.ctx.shape == (2, 5, 4, 64) and learner.eot_index == 11
    assert list(learner.state_dict()) == ["ctx"]  # the template rows are rebuilt, not saved
    m = torch.tensor([0, 1, 1, 0])
    y = torch.tensor([3, 3, 0, 4])
    out = learner(m, y)
    assert out.shape == (4, 77, 64)
    template = tower.token_embedding(learner.tokens)
    for i in range(4):
        torch.testing.assert_close(out[i, :5], template[:5])
        torch.testing.assert_close(out[i, 5:9], learner.ctx[m[i], y[i]])
        torch.testing.assert_close(out[i, 9:], template[9:])


def test_learner_gradient_reaches_only_the_used_contexts(tower):
    learner = PromptLearner(3, tower.token_embedding)
    frozen = [p for p in tower.parameters()]
    for p in frozen:
        p.requires_grad_(False)
    feats = encode_prompt_embeddings(tower, learner(torch.tensor([0, 1]), torch.tensor([2, 2])),
                                     learner.eot_index)
    feats.square().sum().backward()
    g = learner.ctx.grad
    assert g[0, 2].abs().sum() > 0 and g[1, 2].abs().sum() > 0
    assert g[:, :2].abs().sum() == 0  # identities 0, 1 were not in the batch
    assert all(p.grad is None for p in frozen)


def test_learner_errors(tower):
    learner = PromptLearner(3, tower.token_embedding)
    with pytest.raises(ValueError, match="labels"):
        learner(torch.tensor([0]), torch.tensor([3]))
    with pytest.raises(ValueError, match="modality"):
        learner(torch.tensor([2]), torch.tensor([0]))
    with pytest.raises(ValueError, match="num_identities"):
        PromptLearner(0, tower.token_embedding)
    with pytest.raises(ValueError, match="token_embedding"):
        PromptLearner(2, tower.token_embedding.weight)
    with pytest.raises(ValueError, match=r"ctx: expected shape \(2, 3, 4, 64\)"):
        learner.load_state_dict({"ctx": torch.zeros(2, 4, 4, 64)})


def test_all_prompts_enumerates_modality_major(tower):
    m, y = PromptLearner(3, tower.token_embedding).all_prompts()
    assert m.tolist() == [0, 0, 0, 1, 1, 1] and y.tolist() == [0, 1, 2, 0, 1, 2]


# ------------------------------------------------------------------------ prompt encoder
def test_encoding_token_embeddings_equals_open_clip_forward(tower):
    texts = ["a photo of a tall person.", "A photo of a X X X X person.", "hello"]
    tokens = open_clip.get_tokenizer("ViT-B-16")(texts)
    with torch.no_grad():
        ref = tower(tokens)
        emb = tower.token_embedding(tokens)
        ours = encode_prompt_embeddings(tower, emb, tokens.argmax(dim=-1))
    torch.testing.assert_close(ours, ref, **_text_tol(tower))


def test_encode_rejects_bad_embeddings(tower):
    with pytest.raises(ValueError, match="embeddings"):
        encode_prompt_embeddings(tower, torch.zeros(2, 77, 63), 3)
    with pytest.raises(ValueError, match="embeddings"):
        encode_prompt_embeddings(tower, torch.zeros(77, 64), 3)


def test_vit_b16_config_is_open_clips():
    cfg = open_clip.get_model_config("ViT-B-16")
    ours = TextTowerConfig.vit_b16()
    text = cfg["text_cfg"]
    assert (ours.width, ours.layers, ours.heads, ours.context_length, ours.vocab_size) == (
        text["width"], text["layers"], text["heads"], text["context_length"], text["vocab_size"])
    assert ours.embed_dim == cfg["embed_dim"] == 512 and ours.quick_gelu


# ---------------------------------------------------------------------------------- losses
def slow_supcon(q, k, qy, ky, scale=1.0, normalize=False) -> float:
    """Obviously-correct loop: mean over queries of the mean over positives of -log p."""
    q, k = q.double(), k.double()
    if normalize:
        q = q / q.norm(dim=1, keepdim=True)
        k = k / k.norm(dim=1, keepdim=True)
    total = 0.0
    for i in range(q.shape[0]):
        s = [scale * float(q[i] @ k[j]) for j in range(k.shape[0])]
        top = max(s)
        log_z = top + math.log(sum(math.exp(v - top) for v in s))
        pos = [j for j in range(k.shape[0]) if int(ky[j]) == int(qy[i])]
        total += -sum(s[j] - log_z for j in pos) / len(pos)
    return total / q.shape[0]


@given(
    n=st.integers(1, 7),
    classes=st.integers(1, 4),
    d=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    normalize=st.booleans(),
)
def test_batch_losses_match_the_loop_reference(n, classes, d, seed, normalize):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(n, d, generator=g) * 3
    text = torch.randn(n, d, generator=g) * 3
    y = torch.randint(0, classes, (n,), generator=g)
    scale = 100.0 if normalize else 1.0
    # CLIP-ReID stage 1: the batch's text features are the keys (text i belongs to clip i)
    i2t = image_to_text_loss(img, text, y, y, scale=scale, normalize=normalize)
    t2i = text_to_image_loss(text, img, y, y, scale=scale, normalize=normalize)
    assert float(i2t) == pytest.approx(slow_supcon(img, text, y, y, scale, normalize), rel=1e-4,
                                       abs=1e-5)
    assert float(t2i) == pytest.approx(slow_supcon(text, img, y, y, scale, normalize), rel=1e-4,
                                       abs=1e-5)


def test_i2t_over_every_prompt_is_a_cross_entropy():
    torch.manual_seed(1)
    img, prompts = torch.randn(6, 8), torch.randn(10, 8)
    y = torch.tensor([0, 9, 3, 3, 7, 1])
    loss = image_to_text_loss(img, prompts, y, torch.arange(10))
    ref = sum(-math.log(math.exp(float(img[i] @ prompts[y[i]]))
                        / sum(math.exp(float(img[i] @ prompts[c])) for c in range(10)))
              for i in range(6)) / 6
    assert float(loss) == pytest.approx(ref, rel=1e-5)
    torch.testing.assert_close(loss, F.cross_entropy(img @ prompts.t(), y))


def test_t2i_counts_every_positive_clip():
    """Text of class 0 with two clips of class 0 in the batch: the mean of both -log p."""
    text = torch.tensor([[1.0, 0.0]])
    img = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    loss = text_to_image_loss(text, img, torch.tensor([0]), torch.tensor([0, 0, 1]))
    s = [2.0, 1.0, 0.0]
    log_z = math.log(sum(math.exp(v) for v in s))
    assert float(loss) == pytest.approx(-((s[0] - log_z) + (s[1] - log_z)) / 2, rel=1e-6)


def test_supcon_gradcheck_float64():
    torch.manual_seed(2)
    q = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    qy, ky = torch.tensor([0, 1, 1, 2]), torch.tensor([1, 0, 2, 1, 0])
    for normalize in (False, True):
        assert torch.autograd.gradcheck(
            lambda a, b, n=normalize: supervised_contrastive_loss(a, b, qy, ky, scale=2.0,
                                                                  normalize=n),
            (q, k),
        )
    m = torch.tensor([1, 0, 1, 0])
    text = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, t: prompt_logits(a, m, t, normalize=True), (q, text))


def test_losses_reject_bad_inputs():
    with pytest.raises(ValueError, match="key_labels: expected a key of every query's class"):
        image_to_text_loss(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 5]),
                           torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="keys: expected width 3"):
        image_to_text_loss(torch.randn(2, 3), torch.randn(2, 4), torch.tensor([0, 1]),
                           torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="query_labels: expected 2 entries"):
        image_to_text_loss(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0]),
                           torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer"):
        image_to_text_loss(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0.0, 1.0]),
                           torch.tensor([0, 1]))


@pytest.mark.parametrize("normalize", [False, True])
def test_prompt_logits_score_each_clip_against_its_modality(normalize):
    torch.manual_seed(3)
    img, text = torch.randn(5, 4), torch.randn(2, 3, 4)
    modality = torch.tensor([0, 1, 1, 0, 1])
    scale = 50.0 if normalize else 1.0
    logits = prompt_logits(img, modality, text, scale=scale, normalize=normalize)
    assert logits.shape == (5, 3)
    for b in range(5):
        for c in range(3):
            a, t = img[b], text[modality[b], c]
            ref = float(a @ t) / (float(a.norm() * t.norm()) if normalize else 1.0)
            assert float(logits[b, c]) == pytest.approx(scale * ref, rel=1e-5, abs=1e-5)
    with pytest.raises(ValueError, match="modality"):
        prompt_logits(img, torch.tensor([0, 1, 2, 0, 1]), text)
    with pytest.raises(ValueError, match="text_features: expected width 4"):
        prompt_logits(img, modality, torch.randn(2, 3, 5))


# ------------------------------------------------------------------ checkpoints (offline)
def tiny_open_clip() -> nn.Module:
    """open_clip's own CLIP at a tiny size (QuickGELU, as OpenAI's), every weight random."""
    from open_clip.model import CLIP

    torch.manual_seed(4)
    model = CLIP(
        embed_dim=32,
        vision_cfg={"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1,
                  "layers": 2},
        quick_gelu=True,
    )
    return perturbed(model).eval()


def save_torchscript(state: dict[str, torch.Tensor], path) -> None:
    """A TorchScript archive (the format of OpenAI's ViT-B-16.pt) whose state_dict() is state."""

    class Node(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    root = Node()
    for key, value in state.items():
        *path_parts, leaf = key.split(".")
        mod = root
        for part in path_parts:
            if not hasattr(mod, part):
                mod.add_module(part, Node())
            mod = getattr(mod, part)
        mod.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(root), str(path))


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    model = tiny_open_clip()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    root = tmp_path_factory.mktemp("clip")
    files = {"pt": root / "clip_tiny.pt", "jit": root / "ViT-tiny.pt"}
    torch.save(state, files["pt"])
    save_torchscript(state, files["jit"])
    return model, state, files


@pytest.mark.parametrize("kind", ["pt", "jit", "dict"])
def test_text_tower_from_openai_checkpoint_equals_open_clip(clip_files, no_network, kind):
    model, state, files = clip_files
    source = state if kind == "dict" else files[kind]
    tower, logit_scale = load_text_tower(source)
    assert logit_scale == pytest.approx(float(model.logit_scale.detach().exp()))
    assert tower.transformer.resblocks[0].attn.num_heads == 1  # width 64 // 64
    tokens = open_clip.get_tokenizer("ViT-B-16")(["a photo of a person.", "X X X X"])
    learner = PromptLearner(2, tower.token_embedding)
    with torch.no_grad():
        ref = model.encode_text(tokens)
        torch.testing.assert_close(tower(tokens), ref, **_text_tol(tower))
        # the learner's template with its context set to the words' own embeddings
        learner.ctx[1, 0] = model.token_embedding(learner.tokens[5:9])
        ours = encode_prompt_embeddings(tower, learner(torch.tensor([1]), torch.tensor([0])),
                                        learner.eot_index)
        torch.testing.assert_close(ours, model.encode_text(learner.tokens[None]),
                                   **_text_tol(tower))


def test_convert_keep_text_round_trip(clip_files, tmp_path, no_network):
    from xreid import build_backbone
    from xreid.convert import main as convert_main

    model, _, files = clip_files
    out = tmp_path / "full.safetensors"
    assert convert_main([str(files["jit"]), str(out), "--format", "openclip", "--keep-text"]) == 0
    tower, logit_scale = load_text_tower(out)
    assert logit_scale == pytest.approx(float(model.logit_scale.detach().exp()))
    tokens = open_clip.get_tokenizer("ViT-B-16")(["a person"])
    with torch.no_grad():
        torch.testing.assert_close(tower(tokens), model.encode_text(tokens), **_text_tol(tower))
    # the same file still loads as a visual backbone
    backbone = build_backbone("clip-vit-b16-openclip", img_size=(32, 32), embed_dim=64, depth=1,
                              num_heads=1, patch_size=8, proj_dim=32, weights=out)
    assert backbone.proj_dim == 32
    # without --keep-text the text tower is gone, and the error says what to do
    visual = tmp_path / "visual.safetensors"
    assert convert_main([str(files["pt"]), str(visual), "--format", "openclip"]) == 0
    with pytest.raises(ValueError, match="--keep-text"):
        load_text_tower(visual)


def test_convert_keep_text_needs_openclip_format(clip_files, tmp_path, capsys):
    from xreid.convert import main as convert_main

    _, _, files = clip_files
    assert convert_main([str(files["pt"]), str(tmp_path / "x.safetensors"), "--keep-text"]) == 1
    assert "keep_text" in capsys.readouterr().err


def test_load_text_tower_errors(clip_files):
    _, state, _ = clip_files
    with pytest.raises(ValueError, match="text tower"):
        load_text_tower({k: v for k, v in state.items() if k.startswith("visual.")})
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_text_tower("missing.pt")
    with pytest.raises(ValueError, match="weights"):
        load_text_tower(3)
    bad = dict(state)
    bad["text_projection"] = torch.zeros(64, 16)
    bad["transformer.resblocks.0.mlp.c_fc.weight"] = torch.zeros(255, 64)
    with pytest.raises(ValueError, match="does not fit"):
        load_text_tower(bad)
    text, scale = extract_text_state({"text." + k: v for k, v in state.items()
                                      if not k.startswith("visual.")})
    assert "token_embedding.weight" in text and scale is not None


@pytest.mark.slow
def test_vit_b16_text_tower_from_open_clips_model(no_network):
    """Full size: open_clip's ViT-B-16-quickgelu (random init) -> OpenAI-named state dict ->
    our loader infers W 512, 12 layers, 8 heads and reproduces encode_text."""
    model = open_clip.create_model("ViT-B-16-quickgelu", pretrained=None).eval()
    tower, scale = load_text_tower(model.state_dict())
    assert TextTowerConfig.from_state_dict(extract_text_state(model.state_dict())[0]) == \
        TextTowerConfig.vit_b16()
    assert tower.transformer.resblocks[0].attn.num_heads == 8
    assert scale == pytest.approx(1 / 0.07, rel=1e-5)
    tokens = open_clip.get_tokenizer("ViT-B-16")([DEFAULT_TEMPLATE, "a person walking"])
    with torch.no_grad():
        torch.testing.assert_close(tower(tokens), model.encode_text(tokens), **_text_tol(tower))

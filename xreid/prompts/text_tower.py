"""CLIP's text tower (open_clip ``TextTransformer``): building, offline loading, prompt encoding.

The text encoder of CLIP (Radford et al. 2021) maps a token sequence ``(N, L)`` of the BPE
vocabulary to a feature ``(N, d)``::

    x = token_embedding(tokens) + positional_embedding          (N, L, W)
    x = ln_final(transformer(x, causal mask))                   (N, L, W)
    feature = x[n, eot(n)] @ text_projection                    (N, d)

``eot(n)`` is the position of the end-of-text token (the largest token id). Prompt learning
replaces some rows of ``token_embedding(tokens)`` by learned vectors, so
:func:`encode_prompt_embeddings` starts from the embeddings ``(N, L, W)`` instead of the ids.

**Checkpoints.** OpenAI's ``ViT-B-16.pt`` (a TorchScript archive, read with
``torch.jit.load(...).state_dict()`` only), open_clip's ``CLIP`` state dicts and the
``--keep-text`` output of ``xreid-convert`` all store the text tower under the same names,
which are also open_clip's ``TextTransformer`` names::

    token_embedding.weight (V, W)     positional_embedding (L, W)
    transformer.resblocks.i.*         ln_final.{weight,bias}
    text_projection (W, d)            logit_scale () (log of CLIP's logit scale, optional)

open_clip's ``CustomTextCLIP`` stores them under ``text.``; that prefix (and ``module.``) is
removed. The architecture is read from the shapes; the number of attention heads, which no
shape records, is ``W // 64`` as in OpenAI's CLIP (8 for ViT-B/16) unless given.
OpenAI's ViT-B-16 text tower: W = 512, 12 layers, 8 heads, L = 77, V = 49408, d = 512,
QuickGELU activations.

Nothing here touches the network; open_clip is imported when a tower is built.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from xreid._validation import check_tensor, shape_str

__all__ = [
    "TEXT_KEYS",
    "TextTowerConfig",
    "build_text_tower",
    "encode_prompt_embeddings",
    "extract_text_state",
    "load_text_tower",
]

TEXT_KEYS = ("token_embedding.weight", "positional_embedding", "ln_final.weight",
             "ln_final.bias", "text_projection")
"""Top-level text-tower names (besides ``transformer.*``) of an OpenAI / open_clip CLIP."""

_BLOCK = re.compile(r"^transformer\.resblocks\.(\d+)\.")


@dataclass(frozen=True)
class TextTowerConfig:
    """Size of a CLIP text tower (defaults: OpenAI's ViT-B/16 text tower).

    Attributes:
        width: W, the token width.
        layers: transformer blocks.
        heads: attention heads (OpenAI: ``width // 64``).
        context_length: L, tokens per sequence (77).
        vocab_size: V, the BPE vocabulary (49408; open_clip's tokenizer).
        embed_dim: d, the width of the projected feature (= the image feature width).
        mlp_ratio: FFN expansion.
        quick_gelu: QuickGELU activations (OpenAI's weights were trained with it).
    """

    width: int = 512
    layers: int = 12
    heads: int = 8
    context_length: int = 77
    vocab_size: int = 49408
    embed_dim: int = 512
    mlp_ratio: float = 4.0
    quick_gelu: bool = True

    @classmethod
    def vit_b16(cls) -> TextTowerConfig:
        """OpenAI's ViT-B/16 text tower: W 512, 12 layers, 8 heads, L 77, V 49408, d 512."""
        return cls()

    @classmethod
    def tiny(cls, embed_dim: int = 32) -> TextTowerConfig:
        """A small tower for offline tests and demos: W 64, 2 layers, 1 head (W // 64)."""
        return cls(width=64, layers=2, heads=1, embed_dim=embed_dim)

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, torch.Tensor], *, heads: int | None = None,
        quick_gelu: bool = True,
    ) -> TextTowerConfig:
        """The architecture of a text-tower state dict (``TextTowerConfig`` names as in
        :func:`extract_text_state`); ``heads`` defaults to ``width // 64`` (min 1)."""
        missing = [k for k in TEXT_KEYS if k not in state]
        if missing:
            raise ValueError(f"state: expected the text-tower keys {list(TEXT_KEYS)}, "
                             f"missing {missing}")
        vocab, width = state["token_embedding.weight"].shape
        blocks = {int(m.group(1)) for k in state if (m := _BLOCK.match(k))}
        if not blocks:
            raise ValueError("state: expected text transformer blocks "
                             "'transformer.resblocks.<i>.*', got none")
        fc = state.get("transformer.resblocks.0.mlp.c_fc.weight")
        mlp_ratio = float(fc.shape[0]) / width if fc is not None else 4.0
        return cls(
            width=int(width),
            layers=max(blocks) + 1,
            heads=int(heads) if heads is not None else max(1, int(width) // 64),
            context_length=int(state["positional_embedding"].shape[0]),
            vocab_size=int(vocab),
            embed_dim=int(state["text_projection"].shape[1]),
            mlp_ratio=mlp_ratio,
            quick_gelu=quick_gelu,
        )


def build_text_tower(config: TextTowerConfig | None = None) -> nn.Module:
    """A randomly initialised open_clip ``TextTransformer`` of ``config`` (default ViT-B/16).

    ``forward(tokens (N, L) long) -> (N, embed_dim)``; see :func:`encode_prompt_embeddings`
    for learned prompt embeddings.
    """
    from open_clip.transformer import QuickGELU, TextTransformer

    c = config or TextTowerConfig()
    if c.width % c.heads:
        raise ValueError(f"heads: expected a divisor of width {c.width}, got {c.heads}")
    return TextTransformer(
        context_length=c.context_length,
        vocab_size=c.vocab_size,
        width=c.width,
        heads=c.heads,
        layers=c.layers,
        mlp_ratio=c.mlp_ratio,
        output_dim=c.embed_dim,
        act_layer=QuickGELU if c.quick_gelu else nn.GELU,
    )


def extract_text_state(
    state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], float | None]:
    """The text tower of a full CLIP state dict -> (``TextTransformer`` state, logit scale).

    The logit scale is ``exp(logit_scale)`` (100 for OpenAI's trained CLIP), or None when the
    checkpoint has no ``logit_scale``. Raises ``ValueError`` when there is no text tower
    (e.g. a visual-only file written by ``xreid-convert`` without ``--keep-text``).
    """
    items = dict(state)
    if items and all(k.startswith("module.") for k in items):
        items = {k[len("module."):]: v for k, v in items.items()}
    if "token_embedding.weight" not in items and "text.token_embedding.weight" in items:
        items = {k[len("text."):]: v for k, v in items.items() if k.startswith("text.")}
    if "token_embedding.weight" not in items:
        sample = sorted(items)[:6]
        raise ValueError(
            "weights: expected a CLIP checkpoint with the text tower ('token_embedding.weight', "
            "'transformer.resblocks.*', 'text_projection', ...), got keys "
            f"{sample}{' ...' if len(items) > 6 else ''}; pass OpenAI's ViT-B-16.pt or a file "
            "written by `xreid-convert --format openclip --keep-text`"
        )
    text = {k: v for k, v in items.items()
            if k in TEXT_KEYS or k.startswith("transformer.")}
    scale = items.get("logit_scale")
    logit_scale = float(scale.float().exp()) if isinstance(scale, torch.Tensor) else None
    return text, logit_scale


def load_text_tower(
    weights: str | os.PathLike[str] | Mapping[str, torch.Tensor],
    *,
    heads: int | None = None,
    quick_gelu: bool = True,
) -> tuple[nn.Module, float | None]:
    """Build open_clip's ``TextTransformer`` from a local CLIP checkpoint, offline.

    Args:
        weights: OpenAI's TorchScript ``ViT-B-16.pt``, an open_clip ``CLIP`` state dict
            (``.pt/.pth/.bin``), a ``.safetensors`` written by
            ``xreid-convert --format openclip --keep-text``, or an in-memory state dict.
        heads: attention heads (default ``width // 64``, OpenAI's rule).
        quick_gelu: QuickGELU activations (OpenAI's weights).

    Returns:
        (text tower in float32, logit scale ``exp(logit_scale)`` or None).
    """
    from xreid.backbones.weights import read_checkpoint

    if isinstance(weights, Mapping):
        raw, source = dict(weights), "the given state dict"
    elif isinstance(weights, (str, os.PathLike)):
        raw, _ = read_checkpoint(weights)
        source = repr(str(weights))
    else:
        raise ValueError("weights: expected a path to a local CLIP checkpoint or a state dict, "
                         f"got {type(weights).__name__}")
    text, logit_scale = extract_text_state(raw)
    config = TextTowerConfig.from_state_dict(text, heads=heads, quick_gelu=quick_gelu)
    model = build_text_tower(config)
    expected = model.state_dict()
    mismatched = [f"{k}: checkpoint {shape_str(v)} vs model {shape_str(expected[k])}"
                  for k, v in text.items() if k in expected and v.shape != expected[k].shape]
    missing = sorted(set(expected) - set(text))
    unexpected = sorted(set(text) - set(expected))
    if mismatched or missing or unexpected:
        raise ValueError(
            f"weights: the text tower of {source} does not fit open_clip's TextTransformer "
            f"{config}; mismatched {mismatched[:5]}, missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    model.load_state_dict({k: v.float() for k, v in text.items()}, strict=True)
    return model, logit_scale


def encode_prompt_embeddings(
    text_tower: nn.Module, embeddings: torch.Tensor, eot_index: torch.Tensor | int
) -> torch.Tensor:
    """Encode token *embeddings* with a CLIP text tower (the prompt-learning forward).

    Args:
        text_tower: open_clip ``TextTransformer`` (causal mask, argmax pooling, linear
            projection: CLIP's text tower).
        embeddings: (N, L, W) token embeddings (``token_embedding(tokens)`` with the learned
            rows spliced in), L <= the tower's context length.
        eot_index: the end-of-text position, an int or an (N,) long tensor.

    Returns:
        (N, d) text features, ``ln_final(transformer(x + pos))[n, eot] @ text_projection``;
        equal to ``text_tower(tokens)`` when ``embeddings = token_embedding(tokens)``.
    """
    x = check_tensor(embeddings, "embeddings", ndim=3, layout="(N, L, W)")
    n, length, width = x.shape
    pos = text_tower.positional_embedding
    if width != pos.shape[1] or length > pos.shape[0]:
        raise ValueError(
            f"embeddings: expected (N, L <= {pos.shape[0]}, {pos.shape[1]}) for this text tower, "
            f"got shape {shape_str(x)}"
        )
    cast = text_tower.transformer.get_cast_dtype()
    x = x.to(cast) + pos[:length].to(cast)
    mask = text_tower.attn_mask
    if mask is not None:
        mask = mask[:length, :length]
    x = text_tower.transformer(x, attn_mask=mask)
    x = text_tower.ln_final(x)
    index = torch.as_tensor(eot_index, device=x.device).expand(n)
    pooled = x[torch.arange(n, device=x.device), index]
    proj = text_tower.text_projection
    if proj is None:
        return pooled
    return proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj

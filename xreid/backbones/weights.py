"""Local checkpoint reading, key conversion and positional-embedding resampling.

Nothing here touches the network. Importing this module imports neither timm nor open_clip;
:func:`resample_pos_embed` calls timm's resampler when a grid actually changes.

**Canonical names.** Every checkpoint is first converted to timm's ``VisionTransformer``
names (the ``"tiny"`` backbone's own names)::

    cls_token (1, 1, D)              <- visual.class_embedding (D,)
    pos_embed (1, 1+N, D)            <- visual.positional_embedding (1+N, D)
    patch_embed.proj.weight          <- visual.conv1.weight
    norm_pre.*                       <- visual.ln_pre.*
    blocks.i.norm1.* / norm2.*       <- visual.transformer.resblocks.i.ln_1.* / ln_2.*
    blocks.i.attn.qkv.{weight,bias}  <- ...attn.in_proj_{weight,bias}
    blocks.i.attn.proj.*             <- ...attn.out_proj.*
    blocks.i.mlp.fc1.* / fc2.*       <- ...mlp.c_fc.* / c_proj.*
    norm.*                           <- visual.ln_post.*
    head.weight (d, D)               <- visual.proj (D, d), transposed
    camera_embed (C, D)              (xreid checkpoints only)

This is the mapping of timm's ``_convert_openai_clip``; timm adds a zero ``head.bias``,
which is accepted (and dropped) here because CLIP's projection has no bias.

**Recognised inputs** (after stripping a ``module.`` prefix and unwrapping a
``{"state_dict": ...}`` / ``{"model": ...}`` dict):

- OpenAI / open_clip full CLIP dict (``visual.*`` keys; the text tower and the
  ``input_resolution``/``context_length``/``vocab_size`` entries are ignored); this is also
  the ``"clip-vit-b16-openclip"`` backbone's own ``state_dict``;
- an open_clip vision tower state dict (``class_embedding``, ``conv1.weight``, ...);
- timm / ``"tiny"`` state dicts (``cls_token``, ``patch_embed.proj.weight``, ...) and the
  ``"clip-vit-b16"`` backbone's own (``vit.*``);
- any of these under a ``backbone.`` prefix (a whole model's state dict, e.g. ``XReID``).

**Files.** OpenAI's ``ViT-B-16.pt`` is a TorchScript archive: it is read with
``torch.jit.load(path, map_location="cpu").state_dict()`` and nothing else (no scripted method
runs; still, only load archives you trust, since TorchScript deserialisation is not a
sandbox). Other ``.pt/.pth/.bin`` files are read with ``torch.load(weights_only=True)``;
``.safetensors`` with safetensors (its metadata may record the grid, see below).

**Positional embedding.** Resampled from the checkpoint's grid to the backbone's grid with
``F.interpolate(mode="bilinear", align_corners=False, antialias=False)`` on the patch
positions, the [CLS] position unchanged: exactly the authors' ``resize_pos_embed``
(CLIP-ReID/X-ReID ``model/clip/model.py``), unlike timm's and open_clip's default (bicubic with
antialias). The interpolation runs in float32 and its result is kept in float32 (OpenAI's
fp16 values are upcast first; the authors interpolate the fp16 tensor, which differs only by
fp16 rounding, ~1e-3 relative). The checkpoint's grid is read from the
safetensors metadata ``grid_size`` (written by ``xreid-convert``) or taken as square.
"""

from __future__ import annotations

import math
import os
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from xreid._validation import load_error_reason
from xreid.checkpoint_digest import verify_digest

if TYPE_CHECKING:  # pragma: no cover
    from xreid.backbones.base import FrameEncoder

__all__ = [
    "canonical_to_openai",
    "load_into",
    "openai_to_canonical",
    "read_checkpoint",
    "resample_pos_embed",
    "to_canonical",
]

WeightsSource = str | os.PathLike | Mapping[str, torch.Tensor]

# (regex on the OpenAI visual name, canonical replacement); block-level renames first
_OPENAI_TO_CANONICAL: list[tuple[str, str]] = [
    (r"^transformer\.resblocks\.(\d+)\.ln_1\.", r"blocks.\1.norm1."),
    (r"^transformer\.resblocks\.(\d+)\.ln_2\.", r"blocks.\1.norm2."),
    (r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_weight$", r"blocks.\1.attn.qkv.weight"),
    (r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_bias$", r"blocks.\1.attn.qkv.bias"),
    (r"^transformer\.resblocks\.(\d+)\.attn\.out_proj\.", r"blocks.\1.attn.proj."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_fc\.", r"blocks.\1.mlp.fc1."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_proj\.", r"blocks.\1.mlp.fc2."),
    (r"^conv1\.", "patch_embed.proj."),
    (r"^ln_pre\.", "norm_pre."),
    (r"^ln_post\.", "norm."),
]
# Deliberate mirror of _OPENAI_TO_CANONICAL (the inverse renames; a round trip is tested).
_CANONICAL_TO_OPENAI: list[tuple[str, str]] = [
    (r"^blocks\.(\d+)\.norm1\.", r"transformer.resblocks.\1.ln_1."),
    (r"^blocks\.(\d+)\.norm2\.", r"transformer.resblocks.\1.ln_2."),
    (r"^blocks\.(\d+)\.attn\.qkv\.weight$", r"transformer.resblocks.\1.attn.in_proj_weight"),
    (r"^blocks\.(\d+)\.attn\.qkv\.bias$", r"transformer.resblocks.\1.attn.in_proj_bias"),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"transformer.resblocks.\1.attn.out_proj."),
    (r"^blocks\.(\d+)\.mlp\.fc1\.", r"transformer.resblocks.\1.mlp.c_fc."),
    (r"^blocks\.(\d+)\.mlp\.fc2\.", r"transformer.resblocks.\1.mlp.c_proj."),
    (r"^patch_embed\.proj\.", "conv1."),
    (r"^norm_pre\.", "ln_pre."),
    (r"^norm\.", "ln_post."),
]
_XREID_KEYS = ("camera_embed",)  # kept as they are in every format


def _rename(key: str, table: list[tuple[str, str]]) -> str:
    for pattern, repl in table:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def openai_to_canonical(
    state: Mapping[str, torch.Tensor], prefix: str = "visual."
) -> dict[str, torch.Tensor]:
    """OpenAI / open_clip visual names (``prefix`` + name) -> canonical (timm) names.

    Keys outside ``prefix`` are dropped (text tower, ``input_resolution``, ...), except
    ``camera_embed``. Unknown visual keys keep their (prefix-stripped) name.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _XREID_KEYS:
            out[key] = value
            continue
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name == "class_embedding":
            out["cls_token"] = value.reshape(1, 1, -1)
        elif name == "positional_embedding":
            out["pos_embed"] = value.reshape(1, *value.shape[-2:])
        elif name == "proj":
            out["head.weight"] = value.t()
        else:
            out[_rename(name, _OPENAI_TO_CANONICAL)] = value
    return out


def canonical_to_openai(
    state: Mapping[str, torch.Tensor], prefix: str = "visual."
) -> dict[str, torch.Tensor]:
    """Canonical (timm) names -> OpenAI / open_clip visual names with ``prefix``.

    ``head.bias`` must be absent or zero (CLIP's projection has no bias) and is dropped.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _XREID_KEYS:
            out[key] = value
        elif key == "cls_token":
            out[prefix + "class_embedding"] = value.reshape(-1)
        elif key == "pos_embed":
            out[prefix + "positional_embedding"] = value.reshape(*value.shape[-2:])
        elif key == "head.weight":
            out[prefix + "proj"] = value.t()
        elif key == "head.bias":
            check_zero_head_bias(value)
        else:
            out[prefix + _rename(key, _CANONICAL_TO_OPENAI)] = value
    return out


def check_zero_head_bias(value: torch.Tensor) -> None:
    if value.numel() and bool(value.detach().ne(0).any()):
        raise ValueError(
            "weights: expected 'head.bias' to be zero or absent (CLIP's projection has no "
            f"bias), got a non-zero bias of shape {tuple(value.shape)}"
        )


def _state_dict_of(obj: Any, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "module"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and any(
                isinstance(v, torch.Tensor) for v in inner.values()
            ):
                obj = inner
                break
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            keys = list(tensors)
            if all(k.startswith("module.") for k in keys):
                tensors = {k[len("module."):]: v for k, v in tensors.items()}
            return tensors
    raise ValueError(
        f"weights: expected a state dict (a mapping of names to tensors) in {source}, "
        f"got {type(obj).__name__}"
    )


def _is_torchscript_zip(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n < path.stat().st_size and head[8:9] == b"{"


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a local checkpoint file -> (state dict as stored, metadata).

    TorchScript archives (OpenAI's ``ViT-B-16.pt``): ``torch.jit.load(...).state_dict()``;
    safetensors: ``safetensors.torch.load_file`` (metadata returned); anything else:
    ``torch.load(weights_only=True, map_location="cpu")``. Tensors stay on the CPU.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weights: expected an existing local file, got {str(path)!r}")
    source = f"{str(path)!r}"
    if _is_torchscript_zip(p):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notices
            archive = torch.jit.load(str(p), map_location="cpu")
        return _state_dict_of(dict(archive.state_dict()), source), {"source_format": "torchscript"}
    if _is_safetensors(p):
        from safetensors import safe_open

        tensors: dict[str, torch.Tensor] = {}
        try:
            with safe_open(str(p), framework="pt", device="cpu") as f:
                meta = dict(f.metadata() or {})
                for key in f.keys():
                    tensors[key] = f.get_tensor(key)
        except Exception as e:  # SafetensorError: header too large, truncated file, ...
            raise ValueError(
                f"weights: {source} is not a valid safetensors file: {str(e).splitlines()[0]}"
            ) from e
        return _state_dict_of(tensors, source), meta
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:
        blocked, reason = load_error_reason(e)
        raise ValueError(
            f"weights: could not read {source} as a TorchScript archive, safetensors file or "
            "torch.load(weights_only=True) checkpoint"
            + (" (it holds Python objects other than tensors; nothing in the file was "
               "executed)" if blocked else "") + f": {reason}"
        ) from e
    verify_digest(obj, p)
    state = _state_dict_of(obj, source)
    return state, _training_checkpoint_grid(obj, state)


def _training_checkpoint_grid(obj: Any, state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """``{"grid_size": "gh,gw"}`` of an xreid training checkpoint: its configuration records
    the frame size, its patch-embedding weight the patch size (``{}`` for other files)."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("config"), Mapping):
        return {}
    spec = obj.get("model_spec")
    if isinstance(spec, Mapping) and isinstance(spec.get("patch_grid"), (list, tuple)):
        gh, gw = spec["patch_grid"]  # this version records the grid with the model
        return {"grid_size": f"{int(gh)},{int(gw)}"}
    config = obj["config"]
    data = config.get("data")  # nested by section in this version, flat before
    size = (data if isinstance(data, Mapping) else config).get("img_size")
    weight = next((v for k, v in state.items()
                   if k.endswith("patch_embed.proj.weight") or k.endswith("conv1.weight")),
                  None)
    if weight is None or weight.ndim != 4 or not isinstance(size, (list, tuple)) or len(
            size) != 2:
        return {}
    (h, w), (ph, pw) = size, weight.shape[-2:]
    return {"grid_size": f"{int(h) // ph},{int(w) // pw}"}


def to_canonical(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Detect the naming of a state dict and convert it to canonical names -> (dict, format).

    ``format`` is one of ``"openai"`` (OpenAI / open_clip full CLIP, or the open_clip
    backbone), ``"open_clip-visual"``, ``"xreid-timm"`` (the timm backbone) and ``"timm"``
    (timm or the tiny backbone); ``"xreid-model/<format>"`` for the ``backbone.*`` part of a
    whole model's state dict (e.g. :class:`xreid.XReID`).
    """
    keys = set(state)
    if any(k.startswith("visual.") for k in keys):
        return openai_to_canonical(state, prefix="visual."), "openai"
    if "vit.cls_token" in keys or "vit.patch_embed.proj.weight" in keys:
        return {k.removeprefix("vit."): v for k, v in state.items()}, "xreid-timm"
    if "class_embedding" in keys or "conv1.weight" in keys:
        return openai_to_canonical(state, prefix=""), "open_clip-visual"
    if "cls_token" in keys or "patch_embed.proj.weight" in keys:
        return dict(state), "timm"
    if any(k.startswith("backbone.") for k in keys):  # a whole xreid.XReID state dict
        inner, fmt = to_canonical(
            {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        )
        return inner, f"xreid-model/{fmt}"
    sample = sorted(keys)[:6]
    raise ValueError(
        "weights: expected an OpenAI/open_clip CLIP checkpoint ('visual.class_embedding', ...), "
        "an open_clip vision tower ('class_embedding', 'conv1.weight', ...) or a timm/xreid "
        f"ViT ('cls_token', 'patch_embed.proj.weight', ...), got keys {sample}"
        + (" ..." if len(keys) > 6 else "")
    )


def resample_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """Resize a ViT positional embedding to another patch grid (the authors' resize).

    Args:
        pos_embed: (1, P+N_old, D) or (P+N_old, D); the first ``num_prefix_tokens`` rows
            ([CLS]) are kept unchanged.
        new_grid: (gh, gw) of the target.
        old_grid: (gh, gw) of ``pos_embed``; ``None`` takes a square grid.

    Returns:
        (1, P+gh*gw, D) or (P+gh*gw, D) as the input, same dtype: the patch rows reshaped
        row-major to ``old_grid`` and interpolated with ``F.interpolate(mode="bilinear",
        align_corners=False, antialias=False)`` in float32 (``timm.layers.
        resample_abs_pos_embed`` with those settings; timm's defaults, bicubic with antialias,
        differ from the authors' resize).
    """
    squeeze = pos_embed.dim() == 2
    pe = pos_embed.unsqueeze(0) if squeeze else pos_embed
    if pe.dim() != 3 or pe.shape[0] != 1:
        raise ValueError(
            f"pos_embed: expected a (1, P+N, D) or (P+N, D) tensor, got shape "
            f"{tuple(pos_embed.shape)}"
        )
    n = max(pe.shape[1] - num_prefix_tokens, 0)
    if old_grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(
                f"old_grid: expected the checkpoint's patch grid (its {n} patch positions are "
                "not a square), got None; convert the file with `xreid-convert --img-size H W` "
                "(it records the grid) or load it at the size it was saved with"
            )
        old_grid = (side, side)
    gh, gw = int(old_grid[0]), int(old_grid[1])
    if gh * gw != n:
        raise ValueError(f"old_grid: expected gh*gw == {n} patch positions, got {old_grid}")
    new_grid = (int(new_grid[0]), int(new_grid[1]))
    if (gh, gw) == new_grid:
        return pos_embed
    # timm's resampler (imported here, only when a grid really changes): float32, bilinear,
    # align_corners=False, no antialias; bit-identical to xreid's former own code (tested)
    from timm.layers import resample_abs_pos_embed

    out = resample_abs_pos_embed(pe, list(new_grid), [gh, gw],
                                 num_prefix_tokens=num_prefix_tokens,
                                 interpolation="bilinear", antialias=False, align_corners=False)
    return out[0] if squeeze else out


def parse_grid(meta: Mapping[str, str]) -> tuple[int, int] | None:
    text = meta.get("grid_size")
    if not text:
        return None
    try:
        gh, gw = (int(v) for v in re.split(r"[x,\s]+", text.strip()))
    except ValueError:
        return None
    return gh, gw


def _fmt_list(title: str, items: list[str], limit: int = 25) -> str:
    shown = items[:limit]
    more = f", ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"{title} ({len(items)}): " + ", ".join(shown) + more


def load_into(model: FrameEncoder, weights: WeightsSource) -> None:
    """Load ``weights`` (a local file or an in-memory state dict) into a backbone.

    See :meth:`xreid.backbones.base.FrameEncoder.load_weights`.
    """
    if isinstance(weights, Mapping):
        raw, meta, source = _state_dict_of(weights, "the state dict"), {}, "the given state dict"
    elif isinstance(weights, (str, os.PathLike)):
        raw, meta = read_checkpoint(weights)
        source = repr(str(weights))
    else:
        raise ValueError(
            "weights: expected a path to a local checkpoint file or a state dict, "
            f"got {type(weights).__name__}"
        )
    state, fmt = to_canonical(raw)
    if "head.bias" in state:
        check_zero_head_bias(state.pop("head.bias"))

    expected = model.canonical_state_dict()
    pe, target = state.get("pos_embed"), expected.get("pos_embed")
    if pe is not None and target is not None and pe.dim() == 3 and pe.shape[2] == target.shape[2]:
        old_grid = parse_grid(meta)
        if pe.shape[1] != target.shape[1] or old_grid not in (None, model.grid_size):
            try:
                state["pos_embed"] = resample_pos_embed(pe.float(), model.grid_size, old_grid)
            except ValueError as e:
                raise ValueError(
                    f"weights: cannot resample the positional embedding of {source} "
                    f"({pe.shape[1] - 1} patch positions) to the grid {model.grid_size}: {e}"
                ) from e

    missing = [k for k in expected if k not in state and k not in _XREID_KEYS]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        parts = [
            f"weights: {source} (format {fmt!r}) does not fit the backbone "
            f"{type(model).__name__}(img_size={model.img_size}, embed_dim={model.embed_dim}, "
            f"proj_dim={model.proj_dim}, num_cameras={model.num_cameras}); expected the same "
            "architecture, got"
        ]
        if mismatched:
            parts.append(_fmt_list("mismatched shapes", mismatched))
        if missing:
            parts.append(_fmt_list("missing keys", missing))
        if unexpected:
            parts.append(_fmt_list("unexpected keys", unexpected))
        raise ValueError("\n  ".join(parts))

    result = model.load_state_dict(model.state_from_canonical(state), strict=False)
    left = [k for k in result.missing_keys if k not in _XREID_KEYS]
    if left or result.unexpected_keys:  # pragma: no cover - guarded by the checks above
        raise ValueError(
            f"weights: internal key mapping error, missing {left}, "
            f"unexpected {result.unexpected_keys}"
        )

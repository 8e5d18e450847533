"""Convert a CLIP ViT checkpoint to a safetensors file that ``build_backbone`` loads.

Usage::

    python -m xreid.convert ViT-B-16.pt clip_vitb16.safetensors [--img-size 288 144] \
        [--format timm|openclip]
    xreid-convert ViT-B-16.pt clip_vitb16.safetensors --img-size 288 144

Input: OpenAI's TorchScript ``ViT-B-16.pt`` (read with ``torch.jit.load(...).state_dict()``
only, so use a file you trust), an open_clip / timm / xreid state dict (``.pt/.pth/.bin``, read
with ``torch.load(weights_only=True)``) or a safetensors file. Only the visual tower is kept,
in float32 (plus ``camera_embed`` from an xreid backbone checkpoint), unless ``--keep-text``
(``openclip`` format only) also keeps CLIP's text tower and ``logit_scale`` under their
OpenAI names, as the textual-prompts variant needs (``xreid.prompts.load_text_tower``).

Output formats:

- ``timm`` (default): timm ``VisionTransformer`` names with ``head.weight = proj.T`` and a zero
  ``head.bias``; timm itself also loads it (``pretrained_cfg_overlay=dict(file=...)``).
- ``openclip``: OpenAI / open_clip names with the ``visual.`` prefix (visual tower only).

``--img-size H W`` resamples the positional embedding to the ``(H/p, W/p)`` grid with the
authors' resize (bilinear, no antialias, [CLS] position kept); the grid is recorded in the
safetensors metadata (``grid_size``), so the file can later be loaded at any size.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import torch

__all__ = ["convert_checkpoint", "main"]

FORMATS = ("timm", "openclip")


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    *,
    img_size: tuple[int, int] | None = None,
    fmt: str = "timm",
    keep_text: bool = False,
) -> dict[str, str]:
    """Convert ``src`` to a float32 safetensors file ``dst``; returns the written metadata.

    Raises ``ValueError`` for an unknown format, an unrecognised checkpoint, an
    ``img_size`` that is not a multiple of the patch size, or a ``dst`` that is ``src``.
    """
    from safetensors.torch import save

    from xreid.backbones.weights import (
        canonical_to_openai,
        check_zero_head_bias,
        parse_grid,
        read_checkpoint,
        resample_pos_embed,
        to_canonical,
    )
    from xreid.output_files import atomic_write, check_output

    check_output(dst, inputs=[src], overwrite=True, what="output")
    if fmt not in FORMATS:
        raise ValueError(f"fmt: expected one of {FORMATS}, got {fmt!r}")
    if keep_text and fmt != "openclip":
        raise ValueError("keep_text: the text tower is stored with OpenAI / open_clip names, "
                         f"so it needs fmt='openclip' (--format openclip), got fmt={fmt!r}")
    raw, meta = read_checkpoint(src)
    text: dict[str, torch.Tensor] = {}
    if keep_text:
        from xreid.prompts.text_tower import extract_text_state

        text, _ = extract_text_state(raw)
        if "logit_scale" in raw:
            text["logit_scale"] = raw["logit_scale"]
    state, src_fmt = to_canonical(raw)
    if "head.bias" in state:
        check_zero_head_bias(state.pop("head.bias"))
    for key in ("pos_embed", "patch_embed.proj.weight"):
        if key not in state:
            raise ValueError(
                f"src: expected a ViT checkpoint with {key!r}, got keys {sorted(state)[:6]}"
            )
    pe = state["pos_embed"]
    old_grid = parse_grid(meta)
    if old_grid is None:
        side = math.isqrt(pe.shape[1] - 1)
        old_grid = (side, side) if side * side == pe.shape[1] - 1 else None
    ph, pw = state["patch_embed.proj.weight"].shape[-2:]
    if img_size is not None:
        h, w = img_size
        if h <= 0 or w <= 0 or h % ph or w % pw:
            raise ValueError(
                f"img_size: expected positive multiples of the patch size ({ph}, {pw}), "
                f"got {tuple(img_size)}"
            )
        grid = (h // ph, w // pw)
        if old_grid is not None or pe.shape[1] - 1 != grid[0] * grid[1]:
            state["pos_embed"] = resample_pos_embed(pe.float(), grid, old_grid)
        # else: an unknown grid with as many positions as the target is taken as the target
    else:
        grid = old_grid

    out = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in state.items()}
    if fmt == "timm":
        if "head.weight" in out:
            out["head.bias"] = torch.zeros(out["head.weight"].shape[0])
    else:
        out = canonical_to_openai(out, prefix="visual.")
        out.update({k: v.detach().to(torch.float32) for k, v in text.items()})
        out = {k: v.contiguous() for k, v in out.items()}
    metadata = {
        "format": fmt,
        "source_format": src_fmt,
        "patch_size": f"{ph},{pw}",
        "producer": "xreid.convert",
    }
    if keep_text:
        metadata["text_tower"] = "kept"
    if grid is not None:
        metadata["grid_size"] = f"{grid[0]},{grid[1]}"
    data = save(out, metadata=metadata)
    atomic_write(dst, lambda fh: fh.write(data), what="output")
    return metadata


class _OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _OneLineErrorParser(
        prog="xreid-convert",
        description="Convert an OpenAI / open_clip / timm CLIP ViT checkpoint to a safetensors "
        "file for xreid.build_backbone(..., weights=OUTPUT). Reads local files only.",
    )
    p.add_argument("input", help="ViT-B-16.pt (OpenAI TorchScript), .pt/.pth/.bin or .safetensors"
                   " (with --upgrade: a training checkpoint of an earlier xreid version)")
    p.add_argument("output", help="output .safetensors file (with --upgrade: a new .pt file)")
    p.add_argument("--upgrade", action="store_true",
                   help="convert a training checkpoint of an earlier xreid version (flat "
                        "configuration, no model spec) for this version's load_model")
    p.add_argument(
        "--img-size", nargs=2, type=int, metavar=("H", "W"), default=None,
        help="resample the positional embedding to this frame size (e.g. 288 144)",
    )
    p.add_argument(
        "--format", choices=FORMATS, default="timm",
        help="key names of the output (default: timm)",
    )
    p.add_argument(
        "--keep-text", action="store_true",
        help="also keep CLIP's text tower (needs --format openclip; for --text-prompts)",
    )
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUTPUT that xreid-convert did not write")
    p.add_argument("--debug", action="store_true",
                   help="show the full Python traceback of an error")
    return p


def is_converted_weights(path: Path) -> bool:
    """Whether ``path`` is a safetensors file written by :func:`convert_checkpoint`."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return (fh.metadata() or {}).get("producer") == "xreid.convert"
    except Exception:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (``xreid-convert``); returns the process exit code."""
    from xreid.engine.checkpoint import error_message
    from xreid.output_files import OutputRefused, check_output

    args = _parser().parse_args(argv)
    if args.upgrade:
        from xreid.engine.upgrade import upgrade_checkpoint

        try:
            upgrade_checkpoint(args.input, args.output)
        except Exception as e:
            if args.debug:
                raise
            print(f"xreid-convert: error: {error_message(e)}", file=sys.stderr)
            return 1
        print(f"wrote {args.output} (training checkpoint of this version)")
        return 0
    try:
        check_output(args.output, inputs=[args.input], overwrite=args.overwrite,
                     is_ours=is_converted_weights, what="output")
        meta = convert_checkpoint(
            args.input,
            args.output,
            img_size=tuple(args.img_size) if args.img_size else None,
            fmt=args.format,
            keep_text=args.keep_text,
        )
    except Exception as e:
        if args.debug:
            raise
        message = error_message(e)
        print(f"xreid-convert: error: {message}", file=sys.stderr)
        return 2 if isinstance(e, OutputRefused) else 1
    grid = meta.get("grid_size", "unknown").replace(",", "x")
    print(
        f"wrote {args.output} (format {meta['format']}, from {meta['source_format']}, "
        f"patch grid {grid})"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

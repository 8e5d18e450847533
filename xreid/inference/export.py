"""ONNX export of the inference embedder ``video (B, T, 3, H, W) -> embedding (B, E)``.

The exported graph is ``model.embed(video)`` in eval mode (BatchNorm running statistics)
without the camera embedding. Axis 0 is dynamic and named ``batch``. Axis 1 (T, frames per
clip) is dynamic and named ``frames`` where the model allows it: the temporal shift needs a
previous *and* a next frame, so the traced graph holds for ``T >= 3``
(:data:`MIN_DYNAMIC_FRAMES`); a model exported at ``T < 3``, or one whose graph cannot be
traced with a symbolic T, is exported with T fixed. H and W are fixed (the positional
embedding is built for them). Opset :data:`ONNX_OPSET`.

The file is self-contained (weights inside the ``.onnx``) when the weights stay under the
2 GB protobuf limit; otherwise they go to ``<name>.onnx.data`` next to it, and the two files
must travel together (:func:`onnx_files` lists them).

The model's metadata (``metadata_props``) states how clips must be prepared, so the file
describes itself: ``xreid.img_size`` ``[H, W]``, ``xreid.mean``, ``xreid.std`` (of ``[0, 1]``
RGB), ``xreid.num_frames`` (T used in training), ``xreid.frames`` (``"3.."`` or the fixed
T), ``xreid.sampling``, ``xreid.normalization``, ``xreid.embedding_dim``,
``xreid.checkpoint_sha256``, ``xreid.input_layout`` and ``xreid.version`` (JSON values).

Not exported: the training forward (losses, CII, classifiers, the CPC memory and its update),
the camera embedding input, and frames of another size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xreid._torch_utils import eval_mode
from xreid._validation import check_positive_int

__all__ = ["MIN_DYNAMIC_FRAMES", "ONNX_OPSET", "Embedder", "export_onnx", "input_dims",
           "onnx_files", "onnx_metadata"]

ONNX_OPSET = 18
#: smallest T the exported graph accepts when the frame axis is dynamic
MIN_DYNAMIC_FRAMES = 3
#: weights above this many bytes go to an external ``.onnx.data`` file (protobuf limit 2 GiB,
#: minus room for the graph itself)
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


class Embedder(nn.Module):
    """``forward(video) = model.embed(video)``: the part of a model that is exported."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.model.embed(video)


def _export(embedder: nn.Module, video: torch.Tensor, path: Path, dims: dict[int, Any],
            external: bool, optimize: bool) -> None:
    with eval_mode(embedder), torch.no_grad():
        torch.onnx.export(
            embedder, (video,), str(path), input_names=["video"], output_names=["embedding"],
            opset_version=ONNX_OPSET, dynamic_shapes={"video": dims}, dynamo=True,
            verbose=False, optimize=optimize, external_data=external)


def export_onnx(model: nn.Module, path: str | Path, *, num_frames: int,
                img_size: tuple[int, int], batch_size: int = 2, optimize: bool = True,
                dynamic_frames: bool = True, metadata: dict[str, Any] | None = None) -> Path:
    """Export ``model.embed`` to ONNX at ``path`` (input ``video``, output ``embedding``).

    Args:
        model: an :class:`xreid.XReID` (put in eval mode; moved to the CPU for tracing).
        num_frames: T of the example clip (and the fixed T when the frame axis is static).
        img_size: (H, W) of the exported frames.
        batch_size: batch of the example input (the exported batch axis is dynamic).
        optimize: run the ONNX graph optimiser after export (slower export, leaner graph).
        dynamic_frames: try a dynamic frame axis (``T >= 3``); falls back to a fixed T.
        metadata: extra ``metadata_props`` (values JSON-encoded unless strings), e.g. the
            preprocessing and the checkpoint hash; ``xreid.frames``, ``xreid.input_layout``
            and ``xreid.version`` are always written.

    Returns:
        ``path`` (see :func:`onnx_files` for the external-data file of a > 2 GB model).
    """
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("ONNX export needs onnx: pip install 'xreid[export]'") from exc
    from xreid.version import __version__

    check_positive_int(num_frames, "num_frames")
    check_positive_int(batch_size, "batch_size")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    embedder = Embedder(model).cpu()
    video = torch.randn(batch_size, num_frames, 3, *img_size)
    weight_bytes = sum(t.numel() * t.element_size()
                       for t in [*embedder.parameters(), *embedder.buffers()])
    external = weight_bytes > EXTERNAL_DATA_THRESHOLD
    batch = torch.export.Dim("batch")
    frames = "fixed"
    if dynamic_frames and num_frames >= MIN_DYNAMIC_FRAMES:
        try:
            _export(embedder, video, path,
                    {0: batch, 1: torch.export.Dim("frames", min=MIN_DYNAMIC_FRAMES)},
                    external, optimize)
            if input_dims(path)[:2] == ["batch", "frames"]:
                frames = f"{MIN_DYNAMIC_FRAMES}.."
        except Exception:  # a graph that specialises T: export it with T fixed
            frames = "fixed"
    if frames == "fixed":
        _export(embedder, video, path, {0: batch}, external, optimize)
    if input_dims(path)[0] != "batch":
        raise RuntimeError(f"export: the batch axis of {path} could not be made dynamic "
                           f"(input dims {input_dims(path)})")
    props = {"xreid.frames": frames if frames != "fixed" else str(num_frames),
             "xreid.input_layout": "video float32 (batch, frames, 3, H, W), normalised RGB",
             "xreid.version": __version__}
    props.update({k if k.startswith("xreid.") else f"xreid.{k}":
                  v if isinstance(v, str) else json.dumps(v)
                  for k, v in (metadata or {}).items()})
    proto = onnx.load(str(path), load_external_data=False)
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


def input_dims(path: str | Path) -> list[int | str]:
    """The ``video`` input's dims of an ONNX file: a name for a dynamic axis, else its size."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    return [d.dim_param if d.dim_param else int(d.dim_value) for d in dims]


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file as a dict (values as stored)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def onnx_files(path: str | Path) -> list[Path]:
    """The files an exported model consists of: ``path`` and any external-data file its
    initializers name (these must stay in the same folder, under the same names)."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    path = Path(path)
    proto = onnx.load(str(path), load_external_data=False)
    extra: list[Path] = []
    for tensor in proto.graph.initializer:
        if uses_external_data(tensor):
            location = next(e.value for e in tensor.external_data if e.key == "location")
            if path.parent / location not in extra:
                extra.append(path.parent / location)
    return [path, *extra]

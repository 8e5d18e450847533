"""ONNX export of the inference embedder ``video (B, T, 3, H, W) -> (B, E)``.

The exported graph is ``model.embed(video)`` in eval mode (BatchNorm running statistics)
without the camera embedding; the batch axis is dynamic, T, H and W are fixed at export time
(the positional embedding and the temporal interactions are built for them). Opset
:data:`ONNX_OPSET`. Not exported: the training forward (losses, CII, classifiers, the CPC
memory and its update), the camera embedding input, and clips of another length or size.

The file carries the ONNX metadata entry ``xreid`` = :data:`ONNX_PRODUCER` (and ``checkpoint``
when given), which is how ``xreid export`` recognises a file it may replace.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xreid._torch_utils import eval_mode
from xreid._validation import check_positive_int
from xreid.output_files import atomic_write

__all__ = ["ONNX_OPSET", "ONNX_PRODUCER", "Embedder", "export_onnx", "is_xreid_onnx"]

ONNX_OPSET = 18
#: the value of the ``xreid`` metadata entry of every exported file
ONNX_PRODUCER = "xreid.export"


class Embedder(nn.Module):
    """``forward(video) = model.embed(video)``: the part of a model that is exported."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.model.embed(video)


def export_onnx(model: nn.Module, path: str | Path, *, num_frames: int,
                img_size: tuple[int, int], batch_size: int = 2, optimize: bool = True,
                checkpoint: str | None = None) -> Path:
    """Export ``model.embed`` to ONNX at ``path`` (input ``video``, output ``embedding``).

    Args:
        model: an :class:`xreid.XReID` (put in eval mode; moved to the CPU for tracing).
        num_frames: T of the exported clips.
        img_size: (H, W) of the exported frames.
        batch_size: batch of the example input (the exported batch axis is dynamic).
        optimize: run the ONNX graph optimiser after export (slower export, leaner graph).
        checkpoint: recorded in the file's metadata.

    The file is written whole or not at all (:func:`xreid.output_files.atomic_write`).
    """
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("ONNX export needs onnx: pip install 'xreid[export]'") from exc
    check_positive_int(num_frames, "num_frames")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    embedder = Embedder(model).cpu()
    video = torch.randn(batch_size, num_frames, 3, *img_size)
    kwargs: dict[str, Any] = {
        "input_names": ["video"], "output_names": ["embedding"], "opset_version": ONNX_OPSET,
        "dynamic_shapes": {"video": {0: torch.export.Dim.DYNAMIC}},
        "dynamo": True, "verbose": False, "optimize": optimize,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    os.close(fd)
    try:
        with eval_mode(embedder), torch.no_grad():
            torch.onnx.export(embedder, (video,), tmp, **kwargs)
        graph = onnx.load(tmp)
        graph.metadata_props.add(key="xreid", value=ONNX_PRODUCER)
        if checkpoint is not None:
            graph.metadata_props.add(key="checkpoint", value=str(checkpoint))
        data = graph.SerializeToString()
    finally:
        Path(tmp).unlink(missing_ok=True)
    return atomic_write(path, lambda fh: fh.write(data), what="--output")


def is_xreid_onnx(path: str | Path) -> bool:
    """Whether ``path`` is an ONNX file written by :func:`export_onnx`."""
    try:
        import onnx

        graph = onnx.load(str(path), load_external_data=False)
    except Exception:
        return False
    return any(p.key == "xreid" and p.value == ONNX_PRODUCER for p in graph.metadata_props)

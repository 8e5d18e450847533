"""Atomic checkpoints with the complete training state (model, memory, optimiser, RNG).

A checkpoint holds only tensors and plain Python values (dict, list, tuple, str, int, float,
bool, None), so it is read with ``torch.load(weights_only=True)``: loading a file never runs
code stored in it. The random-number-generator states are converted accordingly
(:func:`capture_rng_state`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xreid._validation import load_error_reason
from xreid.checkpoint_digest import seal, verify_digest
from xreid.output_files import (
    atomic_write,
    current_umask,
    remove_stale_temporaries,
)

__all__ = [
    "atomic_save",
    "atomic_write",
    "capture_rng_state",
    "current_umask",
    "error_message",
    "load_checkpoint",
    "remove_stale_temporaries",
    "restore_rng_state",
]

def error_message(exc: BaseException) -> str:
    """One line for a CLI: the message of ``exc`` without an ``OSError``'s ``[Errno N]``
    prefix when the message already names the file (as :func:`atomic_write`'s do)."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.strerror and exc.filename is None and (
            ": " in exc.strerror):
        text = exc.strerror
    return " ".join(text.split()) or type(exc).__name__


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` through :func:`xreid.output_files.atomic_write` (same guarantees
    and errors)."""
    if isinstance(obj, dict) and "model" in obj:  # a checkpoint: store its content hash
        obj = seal(obj)
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`atomic_save` with ``torch.load(weights_only=True)``.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for a
    corrupt file, a file holding anything but tensors and plain values (nothing in it is
    executed) or one without a ``model`` entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no such file {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt, foreign or unsafe file
        blocked, reason = load_error_reason(exc)
        if blocked:
            raise ValueError(
                f"checkpoint: refusing to load {path}: it holds Python objects other than "
                f"tensors and plain values ({reason}); nothing in the file was executed. "
                "Checkpoints of xreid 0.1.0 (NumPy RNG state inside) cannot be resumed"
            ) from exc
        raise ValueError(f"checkpoint: cannot read {path}: {reason}") from exc
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"checkpoint: {path} is not an xreid training checkpoint "
                         "(no 'model' entry)")
    verify_digest(state, path)
    return state


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states as tensors and plain values."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - global state
    state: dict[str, Any] = {
        "python": {"version": int(version),
                   "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss},
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()),
                     py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32),  # noqa: NPY002
                         npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])

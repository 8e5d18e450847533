"""A content hash of a checkpoint's tensors, stored at save time and checked at every load.

``content_digest(state)`` is the SHA-256 of every tensor in ``state`` (nested dicts, lists
and tuples, in key order): for each tensor its path of keys, dtype, shape and raw bytes; the
entry :data:`DIGEST_KEY` itself is left out. :func:`seal` adds it; :func:`verify_digest`
raises ``ValueError`` naming the file when the tensors no longer match it (a flipped bit, a
file patched by hand). A checkpoint without the entry (written before it existed) loads as
before: there is nothing to check it against.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

__all__ = ["DIGEST_KEY", "content_digest", "seal", "verify_digest"]

DIGEST_KEY = "content_sha256"


def _walk(obj: Any, prefix: str, h: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"{prefix}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            if prefix == "" and key == DIGEST_KEY:
                continue
            _walk(obj[key], f"{prefix}/{key}", h)
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            _walk(item, f"{prefix}/{i}", h)


def content_digest(state: Any) -> str:
    """SHA-256 (hex) of the tensors in ``state`` (see the module docstring)."""
    h = hashlib.sha256()
    _walk(state, "", h)
    return h.hexdigest()


def seal(state: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``state`` with its :data:`DIGEST_KEY` entry."""
    return {**state, DIGEST_KEY: content_digest(state)}


def verify_digest(state: Any, path: str | Path) -> None:
    """Raise ``ValueError`` naming ``path`` when ``state``'s tensors differ from its stored
    digest (nothing to check when it has none)."""
    if not isinstance(state, dict) or DIGEST_KEY not in state:
        return
    stored = state[DIGEST_KEY]
    if not isinstance(stored, str) or content_digest(state) != stored:
        raise ValueError(
            f"checkpoint: {path} is damaged: its tensors no longer match the content hash "
            "stored when it was written (a flipped bit or an edited file); use another copy"
        )

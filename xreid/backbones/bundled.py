"""Weights shipped inside the package, addressed by name (``build_backbone(weights=NAME)``).

``BUNDLED_WEIGHTS[name]`` records the backbone the file belongs to, its file name under
``xreid/backbones/pretrained/`` and its SHA-256. :func:`bundled_weights_path` checks the hash
before the file is used, so a truncated or altered file is an error naming the file, never
silently different weights. Nothing is downloaded.

``"synthetic-pretrained"``: the ``"tiny"`` backbone (D=96, 3 blocks, patch 8) at 64x32,
trained by ``examples/pretrain_tiny.py`` on a rendered pool of 600 training identities that
shares no identity, seed or generator configuration with the evaluation datasets (pool,
objective, validation numbers and the exact command: ``docs/backbones.md``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BUNDLED_WEIGHTS", "BundledWeights", "bundled_weights_path"]

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


@dataclass(frozen=True)
class BundledWeights:
    """One shipped checkpoint: the backbone it fits, its file and its SHA-256."""

    backbone: str
    filename: str
    sha256: str
    img_size: tuple[int, int]


BUNDLED_WEIGHTS: dict[str, BundledWeights] = {
    "synthetic-pretrained": BundledWeights(
        backbone="tiny",
        filename="tiny-synthetic.safetensors",
        sha256="f4250e4310225e999074a00077982fec1c2b071e2ff1cc164d39cbb40ed9e131",
        img_size=(64, 32),
    ),
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundled_weights_path(name: str, backbone: str, directory: Path | None = None) -> Path:
    """The checked file of the bundled weights ``name`` for ``backbone``.

    Raises:
        ValueError: ``name`` belongs to another backbone, or the file's SHA-256 differs from
            the recorded one (a corrupt or replaced file).
        FileNotFoundError: the file is missing from the installation.
    """
    entry = BUNDLED_WEIGHTS[name]
    if backbone != entry.backbone:
        raise ValueError(f"weights: {name!r} are weights of the {entry.backbone!r} backbone, "
                         f"got backbone {backbone!r}")
    path = (directory or PRETRAINED_DIR) / entry.filename
    if not path.is_file():
        raise FileNotFoundError(
            f"weights: the bundled file of {name!r} is missing ({path}); reinstall xreid or "
            "rebuild it with examples/pretrain_tiny.py (docs/backbones.md)")
    found = sha256_of(path)
    if found != entry.sha256:
        raise ValueError(
            f"weights: the bundled file of {name!r} ({path}) is corrupt or was replaced: "
            f"expected SHA-256 {entry.sha256}, got {found}; reinstall xreid")
    return path

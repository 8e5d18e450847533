"""Tracklet embeddings of a trained model and their ``.safetensors`` file format.

File format (``format`` = ``xreid-embeddings-v1`` in the safetensors metadata):

* tensors ``embeddings`` float32 ``(N, E)`` (not normalised; search normalises), and int64
  ``(N,)`` ``pid``, ``camera`` (``-1`` = unknown) and ``modality`` (0 visible, 1 infrared);
* metadata (strings): ``names`` and ``sources`` (JSON lists: tracklet names and the
  absolute path of their frame folder / video file, used by ``xreid show``),
  ``sources_relative`` (the same paths relative to the folder holding the embeddings file),
  ``input_root`` (the absolute input folder of ``xreid embed``), ``checkpoint``,
  ``checkpoint_sha256`` and ``preprocessing`` (JSON).

Paths that move: :func:`load_embeddings` takes each source's absolute path when it exists,
else its path relative to the embeddings file (so a folder copied whole, embeddings and
footage together, still resolves from any working directory); :meth:`EmbeddingSet.relocate`
points every source into another root (``xreid show --root``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xreid._torch_utils import model_device
from xreid._validation import check_positive_int
from xreid.output_files import atomic_write

__all__ = ["EMBEDDINGS_FORMAT", "EmbeddingSet", "embed_tracklets", "load_embeddings",
           "save_embeddings"]

EMBEDDINGS_FORMAT = "xreid-embeddings-v1"


@dataclass
class EmbeddingSet:
    """Embeddings of N tracklets with their names and (possibly unknown) labels.

    Attributes:
        embeddings: float32 ``(N, E)``.
        names: N tracklet names.
        pids, cameras: int64 ``(N,)``, ``-1`` where unknown.
        modalities: int64 ``(N,)``.
        sources: N frame folders / video files (``""`` when unknown).
        meta: free-form metadata (``checkpoint``, ``preprocessing``).
    """

    embeddings: torch.Tensor
    names: list[str]
    pids: torch.Tensor
    cameras: torch.Tensor
    modalities: torch.Tensor
    sources: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.names)
        if self.embeddings.dim() != 2 or self.embeddings.shape[0] != n:
            raise ValueError(f"embeddings: expected ({n}, E) for {n} names, got "
                             f"{tuple(self.embeddings.shape)}")
        for name in ("pids", "cameras", "modalities"):
            value = getattr(self, name)
            if value.shape != (n,):
                raise ValueError(f"{name}: expected ({n},), got {tuple(value.shape)}")
        if not self.sources:
            self.sources = [""] * n
        if len(self.sources) != n:
            raise ValueError(f"sources: expected {n} entries, got {len(self.sources)}")

    def __len__(self) -> int:
        return len(self.names)

    def relocate(self, root: str | Path, base: str | Path | None = None) -> EmbeddingSet:
        """A copy whose sources lie under ``root``: each source's path relative to ``base``
        (default: the recorded ``input_root``, the folder ``xreid embed`` read) is joined to
        ``root``; a source outside ``base``, or with no ``base`` at all, keeps only its last
        component (``root/<tracklet folder or video>``)."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"root: {root} is not a folder")
        if base is None and self.meta.get("input_root"):
            base = str(self.meta["input_root"])
        base = Path(base) if base is not None else None
        moved = []
        for src in self.sources:
            if not src:
                moved.append(src)
                continue
            rel = Path(src).name
            if base is not None:
                with contextlib.suppress(ValueError):
                    rel = str(Path(src).relative_to(base))
            moved.append(str(root / rel))
        return EmbeddingSet(self.embeddings, list(self.names), self.pids, self.cameras,
                            self.modalities, moved, dict(self.meta))

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def labelled(self) -> bool:
        """True when every tracklet has a known pid."""
        return len(self) > 0 and bool((self.pids >= 0).all())

    @property
    def has_cameras(self) -> bool:
        return len(self) > 0 and bool((self.cameras >= 0).all())

    @classmethod
    def concatenate(cls, sets: list[EmbeddingSet]) -> EmbeddingSet:
        dims = {s.dim for s in sets}
        if len(dims) > 1:
            raise ValueError(f"embeddings: the files have different sizes {sorted(dims)}")
        return cls(torch.cat([s.embeddings for s in sets]), [n for s in sets for n in s.names],
                   torch.cat([s.pids for s in sets]), torch.cat([s.cameras for s in sets]),
                   torch.cat([s.modalities for s in sets]),
                   [x for s in sets for x in s.sources])


def save_embeddings(emb: EmbeddingSet, path: str | Path) -> Path:
    """Write ``emb`` to a ``.safetensors`` file (see the module docstring).

    The file is written whole or not at all (:func:`xreid.output_files.atomic_write`), with
    the usual permissions (``0o666`` minus the umask).
    """
    from safetensors.torch import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent.resolve()
    absolute = [str(Path(src).resolve()) if src else "" for src in emb.sources]
    relative = []
    for src in absolute:
        try:
            relative.append(Path(os.path.relpath(src, folder)).as_posix() if src else "")
        except ValueError:  # another drive (Windows): no relative path exists
            relative.append("")
    tensors = {"embeddings": emb.embeddings.float().contiguous(),
               "pid": emb.pids.long().contiguous(), "camera": emb.cameras.long().contiguous(),
               "modality": emb.modalities.long().contiguous()}
    metadata = {"format": EMBEDDINGS_FORMAT, "names": json.dumps(emb.names),
                "sources": json.dumps(absolute), "sources_relative": json.dumps(relative)}
    metadata.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in emb.meta.items()})
    data = save(tensors, metadata=metadata)
    return atomic_write(path, lambda fh: fh.write(data), what="--output")


def read_tagged_safetensors(
    path: Path, expected_format: str, what: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file whose metadata ``format`` is
    ``expected_format``; ``what`` names the file in the errors.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, or another format (the file is named).
    """
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"{what}: no such file {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:
        raise ValueError(f"{what}: cannot read {path} as safetensors: {exc}") from exc
    if metadata.get("format") != expected_format:
        raise ValueError(f"{what}: {path} is not an xreid {what} file (format "
                         f"{metadata.get('format')!r}, expected {expected_format!r})")
    return tensors, metadata


def load_embeddings(path: str | Path) -> EmbeddingSet:
    """Read a file written by :func:`save_embeddings` (or ``xreid embed``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an xreid embeddings file (the file is named).
    """
    path = Path(path)
    tensors, metadata = read_tagged_safetensors(path, EMBEDDINGS_FORMAT, "embeddings")
    try:
        names = json.loads(metadata["names"])
        sources = json.loads(metadata.get("sources", "[]"))
        relative = json.loads(metadata.get("sources_relative", "[]"))
        if sources and len(relative) == len(sources):
            here = path.parent
            sources = [src if not rel or Path(src).exists() or not (here / rel).exists()
                       else str((here / rel).resolve()) for src, rel in zip(sources, relative)]
        emb = EmbeddingSet(tensors["embeddings"].float(), names, tensors["pid"],
                           tensors["camera"], tensors["modality"], sources)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"embeddings: {path} is malformed: {exc}") from exc
    emb.meta = {k: v for k, v in metadata.items()
                if k not in ("format", "names", "sources", "sources_relative")}
    return emb


def embed_tracklets(
    loaded: Any,
    folder: Any,
    *,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
    use_cameras: bool = False,
    skip_bad: bool = False,
    num_workers: int = 0,
    progress: Callable[[int], None] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> EmbeddingSet:
    """Embed every tracklet of a :class:`xreid.data.TrackletFolder` with a loaded model.

    Each tracklet gives one clip of ``preprocessing.num_frames`` frames sampled with
    ``preprocessing.sampling`` (``"dense"``: every frame, clip embeddings averaged), prepared
    by ``preprocessing.transform()`` and embedded by ``model.embed``, in float32 on the CPU.

    Args:
        loaded: a :class:`xreid.inference.LoadedModel`.
        folder: a :class:`xreid.data.TrackletFolder`.
        batch_size: tracklets per forward pass.
        device: ``None``: the model's device.
        autocast_dtype: e.g. ``torch.bfloat16``.
        use_cameras: pass the tracklets' cameras to the camera embedding (every camera must
            be known and smaller than the model's ``num_cameras``); off by default, since
            cameras of new footage are not the training cameras.
        skip_bad: skip undecodable tracklets (reported through ``on_skip(name, message)``).
        progress: called with the number of tracklets finished in each batch.
    """
    from xreid.data.folder import TrackletClipDataset, collate_clips

    check_positive_int(batch_size, "batch_size")
    model, pre = loaded.model, loaded.preprocessing
    tracklets = list(folder.tracklets)
    if use_cameras:
        if loaded.num_cameras == 0:
            raise ValueError("use_cameras: the model has no camera embedding")
        bad = [t.name for t in tracklets if not 0 <= t.camera < loaded.num_cameras]
        if bad:
            raise ValueError(f"use_cameras: tracklet(s) {bad[:5]} have no camera in "
                             f"[0, {loaded.num_cameras}) in labels.csv")
    dataset = TrackletClipDataset(tracklets, num_frames=pre.num_frames, sampling=pre.sampling,
                                  transform=pre.transform(), skip_bad=skip_bad)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers, collate_fn=collate_clips)
    dev = torch.device(device) if device is not None else model_device(model)
    feats: list[torch.Tensor] = []
    kept: list[int] = []
    model.eval()
    autocast = (torch.autocast(device_type=dev.type, dtype=autocast_dtype)
                if autocast_dtype is not None else contextlib.nullcontext())
    with torch.inference_mode(), autocast:
        for batch in loader:
            for index, message in batch["errors"]:
                if on_skip is not None:
                    on_skip(tracklets[index].name, message)
            if "video" in batch:
                video = batch["video"].to(dev)
                cams = batch["camera"].to(dev) if use_cameras else None
                if video.dim() == 6:  # dense: (B, n_clips, T, ...) -> mean over clips
                    B, n = video.shape[:2]
                    flat_cams = cams.repeat_interleave(n) if cams is not None else None
                    out = model.embed(video.flatten(0, 1), flat_cams).view(B, n, -1).mean(1)
                else:
                    out = model.embed(video, cams)
                feats.append(out.float().cpu())
                kept.extend(int(i) for i in batch["index"])
            if progress is not None:
                progress(len(batch["errors"]) + (len(batch["index"]) if "index" in batch
                                                 else 0))
    if not kept:
        raise ValueError(f"input: no tracklet of {getattr(folder, 'root', 'the input')} could "
                         "be embedded")
    chosen = [tracklets[i] for i in kept]
    return EmbeddingSet(
        torch.cat(feats), [t.name for t in chosen],
        torch.tensor([t.pid for t in chosen], dtype=torch.int64),
        torch.tensor([t.camera for t in chosen], dtype=torch.int64),
        torch.tensor([t.modality for t in chosen], dtype=torch.int64),
        [t.source for t in chosen],
        {"checkpoint": str(Path(loaded.path).resolve()), "checkpoint_sha256": loaded.sha256,
         "preprocessing": pre.to_dict(),
         **({"input_root": str(Path(folder.root).resolve())} if hasattr(folder, "root")
            else {})},
    )

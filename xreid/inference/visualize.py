"""Pictures of retrieval results: the ranked-results grid and the t-SNE scatter.

:func:`draw_ranked_results` lays out one row per query: the query tracklet as a strip of a
few frames, then its top-k gallery tracklets (one frame each) framed green (same identity) or
red (different identity) when identities are known, grey otherwise, with the distance written
under each. :func:`plot_tsne` embeds features in 2-D with scikit-learn's t-SNE (the
``xreid[viz]`` extra), one colour per identity and one marker per modality.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xreid.output_files import atomic_write, png_metadata

__all__ = ["average_precisions", "draw_ranked_results", "plot_tsne", "tracklet_thumbnails"]

GREEN = (40, 170, 60)
RED = (210, 40, 40)
GREY = (150, 150, 150)


def tracklet_thumbnails(source: str, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """``count`` frames spread over a tracklet (frame folder or video), RGB ``size`` (h, w)."""
    from PIL import Image

    from xreid.data.folder import (
        IMAGE_EXTENSIONS,
        natural_key,
        read_video_frames,
    )
    from xreid.data.sampling import sample_frame_indices

    if not source:
        raise FileNotFoundError("source: the embeddings file records no frame folder or video "
                                "for this tracklet (needed for pictures)")
    path = Path(source)
    if path.is_dir():
        frames = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS),
                        key=lambda p: natural_key(p.name))
        idx = sample_frame_indices(len(frames), count, "uniform") if frames else []
        images = [np.asarray(Image.open(frames[i]).convert("RGB")) for i in idx]
    elif path.is_file():
        from xreid.data.folder import count_video_frames

        n = count_video_frames(path)
        images = read_video_frames(path, sample_frame_indices(n, count, "uniform"))
    else:
        raise FileNotFoundError(f"source: tracklet {source!r} not found (needed for pictures)")
    h, w = size
    return [np.asarray(Image.fromarray(a).resize((w, h), Image.Resampling.BILINEAR))
            for a in images]


def _frame_list(x: Any) -> list[np.ndarray]:
    if isinstance(x, (str, Path)):
        raise TypeError("expected arrays; use tracklet_thumbnails for paths")
    return [np.asarray(a, dtype=np.uint8) for a in x]


def draw_ranked_results(
    query_frames: Sequence[Sequence[np.ndarray]],
    gallery_frames: Sequence[np.ndarray],
    ranks: torch.Tensor | np.ndarray,
    distances: torch.Tensor | np.ndarray,
    path: str | Path,
    *,
    matches: torch.Tensor | np.ndarray | None = None,
    query_titles: Sequence[str] | None = None,
    border: int = 3,
) -> Path:
    """Write the ranked-results picture (PNG) and return its path.

    Args:
        query_frames: per query, a few RGB uint8 frames ``(h, w, 3)`` (all of one size).
        gallery_frames: per gallery tracklet, one RGB uint8 frame ``(h, w, 3)``.
        ranks: ``(Q, k)`` gallery indices, best first.
        distances: ``(Q, k)`` distances, written under each result.
        matches: ``(Q, k)`` bool, True where the result has the query's identity (green
            border) and False where not (red); ``None``: grey borders.
        query_titles: a caption per query (e.g. its name and AP).
    """
    from PIL import Image, ImageDraw, ImageFont

    ranks = np.asarray(ranks)
    distances = np.asarray(distances, dtype=np.float64)
    if ranks.ndim != 2 or ranks.shape != distances.shape:
        raise ValueError(f"ranks, distances: expected equal (Q, k) shapes, got {ranks.shape} "
                         f"and {distances.shape}")
    Q, k = ranks.shape
    if len(query_frames) != Q:
        raise ValueError(f"query_frames: expected {Q} queries, got {len(query_frames)}")
    if Q == 0:
        raise ValueError("ranks: expected at least one query, got none")
    first = _frame_list(query_frames[0])[0]
    h, w = first.shape[:2]
    strip = max(len(_frame_list(f)) for f in query_frames)
    font = ImageFont.load_default(size=max(10, h // 9))
    caption = max(14, h // 6)
    gap, cell_w = 12, w + 2 * border + 4
    row_h = caption + h + 2 * border + caption + 6
    sw = strip * (w + 2) - 2  # query strip width (2-pixel gaps between frames)
    width = sw + 2 * border + gap * 2 + k * cell_w + 4
    canvas = Image.new("RGB", (width, Q * row_h + 4), "white")
    draw = ImageDraw.Draw(canvas)
    for qi in range(Q):
        y0 = qi * row_h + 2
        title = query_titles[qi] if query_titles is not None else f"query {qi}"
        draw.text((2, y0), title, fill="black", font=font)
        y = y0 + caption
        draw.rectangle([0, y, sw + 2 * border - 1, y + h + 2 * border - 1],
                       fill=(30, 90, 200))
        for fi, frame in enumerate(_frame_list(query_frames[qi])):
            canvas.paste(Image.fromarray(frame).resize((w, h)),
                         (border + fi * (w + 2), y + border))
        x0 = sw + 2 * border + gap * 2
        draw.line([x0 - gap, y0, x0 - gap, y0 + row_h - 4], fill=(200, 200, 200), width=2)
        for r in range(k):
            g = int(ranks[qi, r])
            x = x0 + r * cell_w
            if g < 0:  # an approximate index returned fewer than k results
                continue
            color = GREY if matches is None else (GREEN if bool(matches[qi][r]) else RED)
            draw.rectangle([x, y, x + w + 2 * border - 1, y + h + 2 * border - 1], fill=color)
            canvas.paste(Image.fromarray(np.asarray(gallery_frames[g], dtype=np.uint8))
                         .resize((w, h)), (x + border, y + border))
            draw.text((x, y0), f"#{r + 1}", fill="black", font=font)
            draw.text((x, y + h + 2 * border + 2), f"{distances[qi, r]:.3f}", fill="black",
                      font=font)
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in png_metadata().items():
        info.add_text(key, value)
    return atomic_write(path, lambda fh: canvas.save(fh, format="PNG", pnginfo=info),
                        what="output")


def average_precisions(distmat: torch.Tensor, query_pids: torch.Tensor,
                       gallery_pids: torch.Tensor) -> torch.Tensor:
    """Per-query AP (float64 ``(Q,)``; NaN for a query without any match) from a full
    ``(Q, G)`` distance matrix, ranking stably by (distance, gallery index)."""
    order = torch.argsort(distmat, dim=1, stable=True)
    good = (gallery_pids[order] == query_pids[:, None]).double()
    hits = good.cumsum(1)
    positions = torch.arange(1, good.shape[1] + 1, dtype=torch.float64)
    n = good.sum(1)
    ap = (good * hits / positions).sum(1) / n
    ap[n == 0] = float("nan")
    return ap


def plot_tsne(embeddings: torch.Tensor | np.ndarray, pids: Sequence[int] | np.ndarray,
              modalities: Sequence[int] | np.ndarray, path: str | Path, *,
              title: str = "t-SNE", perplexity: float = 30.0, seed: int = 0) -> Path:
    """Write a t-SNE scatter (PNG): colour = identity (unknown ``-1`` in grey), marker =
    modality (circle visible, triangle infrared). Embeddings are L2-normalised first."""
    try:
        from sklearn.manifold import TSNE
    except ImportError as exc:
        raise ImportError("t-SNE needs scikit-learn: pip install 'xreid[viz]'") from exc
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"embeddings: expected (N >= 2, E), got {tuple(x.shape)}")
    x = torch.nn.functional.normalize(x, dim=1).numpy()
    pids_a, mods = np.asarray(pids), np.asarray(modalities)
    perplexity = min(perplexity, max(1.0, (len(x) - 1) / 3))
    tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=seed)
    if len(x) <= 5000:  # small problems: extra OpenMP threads only add spinning overhead
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            xy = tsne.fit_transform(x)
    else:
        xy = tsne.fit_transform(x)
    ids = sorted(set(pids_a.tolist()) - {-1})
    cmap = plt.get_cmap("tab20" if len(ids) <= 20 else "hsv", max(len(ids), 1))
    colors = {pid: cmap(i) for i, pid in enumerate(ids)}
    fig, ax = plt.subplots(figsize=(6.5, 6))
    for mod, marker, label in ((0, "o", "visible"), (1, "^", "infrared")):
        sel = mods == mod
        if sel.any():
            c = [colors.get(p, (0.6, 0.6, 0.6, 1.0)) for p in pids_a[sel]]
            ax.scatter(xy[sel, 0], xy[sel, 1], c=c, marker=marker, s=28, label=label,
                       edgecolors="black", linewidths=0.3)
    ax.set_title(f"{title} ({len(ids)} identities, {len(x)} tracklets)")
    ax.set_xticks([])
    ax.set_yticks([])
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker=m, linestyle="", color="0.55", markeredgecolor="black",
                      label=lab) for m, lab in (("o", "visible"), ("^", "infrared"))]
    ax.legend(handles=handles, loc="best", title="colour = identity")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda fh: fig.savefig(fh, dpi=110, format="png",
                                                         metadata=png_metadata()),
                            what="output")
    finally:
        plt.close(fig)

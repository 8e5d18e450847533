"""Pictures of retrieval results: the ranked-results grid and the t-SNE scatter.

:func:`draw_ranked_results` lays out one row per query: the query tracklet as a strip of a
few frames, then its top-k gallery tracklets (one frame each) framed green (same identity) or
red (different identity) when identities are known, grey otherwise, with the distance written
under each. :func:`plot_tsne` embeds features in 2-D with scikit-learn's t-SNE (the
``xreid[viz]`` extra), one colour per identity and one marker per modality.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xreid.output_files import atomic_write, png_metadata, save_figure_png

__all__ = ["RankedPicture", "average_precisions", "draw_ranked_results", "first_match_ranks",
           "gallery_caption", "identity_styles", "plot_tsne", "render_ranked_results",
           "tracklet_thumbnails", "tsne_figure"]

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


MODALITY_MARKS = {0: "V", 1: "IR"}
QUERY_BLUE = (30, 90, 200)


@dataclass
class RankedPicture:
    """What :func:`render_ranked_results` drew: the file, every text written on it (in
    drawing order) and the colour legend (``(label, RGB)`` pairs)."""

    path: Path
    texts: list[str]
    legend: list[tuple[str, tuple[int, int, int]]]


def gallery_caption(name: str, pid: int, camera: int) -> str:
    """Two caption lines under a gallery thumbnail: ``"id 7 cam 2"`` (``?`` when unknown)
    and the tracklet name."""
    ident = f"id {pid}" if pid >= 0 else "id ?"
    cam = f"cam {camera}" if camera >= 0 else "cam ?"
    return f"{ident} {cam}\n{name}"


def first_match_ranks(distances: torch.Tensor, query_pids: torch.Tensor,
                      gallery_pids: torch.Tensor) -> list[int | None]:
    """1-based rank of each query's first same-identity gallery entry in the stable
    (distance, gallery index) order of a ``(Q, G)`` distance matrix; ``None`` when the
    gallery holds none."""
    order = torch.argsort(torch.as_tensor(distances), dim=1, stable=True)
    good = torch.as_tensor(gallery_pids)[order] == torch.as_tensor(query_pids)[:, None]
    ranks: list[int | None] = []
    for row in good:
        hit = torch.nonzero(row).flatten()
        ranks.append(int(hit[0]) + 1 if hit.numel() else None)
    return ranks


def _fit(draw: Any, text: str, font: Any, width: int) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def draw_ranked_results(
    query_frames: Sequence[Sequence[np.ndarray]],
    gallery_frames: Sequence[np.ndarray],
    ranks: torch.Tensor | np.ndarray,
    distances: torch.Tensor | np.ndarray,
    path: str | Path,
    **options: Any,
) -> Path:
    """Write the ranked-results picture (PNG) and return its path; see
    :func:`render_ranked_results` for the arguments."""
    return render_ranked_results(query_frames, gallery_frames, ranks, distances, path,
                                 **options).path


def render_ranked_results(
    query_frames: Sequence[Sequence[np.ndarray]],
    gallery_frames: Sequence[np.ndarray],
    ranks: torch.Tensor | np.ndarray,
    distances: torch.Tensor | np.ndarray,
    path: str | Path,
    *,
    matches: torch.Tensor | np.ndarray | None = None,
    query_titles: Sequence[str] | None = None,
    gallery_captions: Sequence[str] | None = None,
    query_modalities: Sequence[int] | None = None,
    gallery_modalities: Sequence[int] | None = None,
    first_match: Sequence[int | None] | None = None,
    border: int = 3,
) -> RankedPicture:
    """Write the ranked-results picture (PNG) and return what was drawn.

    Layout: a legend line (border colours and modality marks), then one row per query: its
    title, a strip of its frames (blue border), then its top-k gallery tracklets, each with
    its rank above, and its distance and caption (e.g. id, camera, name) below. A corner mark
    gives each tracklet's modality (``V`` visible, ``IR`` infrared). When identities are
    known and none of the top-k matches, the row says at which rank the first correct match
    comes (or that the gallery holds none).

    Args:
        query_frames: per query, a few RGB uint8 frames ``(h, w, 3)`` (all of one size).
        gallery_frames: per gallery tracklet, one RGB uint8 frame ``(h, w, 3)``.
        ranks: ``(Q, k)`` gallery indices, best first (``-1``: no result).
        distances: ``(Q, k)`` distances, written under each result.
        matches: ``(Q, k)`` bool, True where the result has the query's identity (green
            border) and False where not (red); ``None``: grey borders.
        query_titles: a caption per query (e.g. its name and AP).
        gallery_captions: a caption per gallery tracklet (lines split on ``"\\n"``).
        query_modalities, gallery_modalities: 0 visible / 1 infrared per tracklet.
        first_match: per query, the 1-based rank of its first correct match (``None``: no
            match in the gallery); used when ``matches`` shows none in the top-k.
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
    for name, seq, n in (("query_titles", query_titles, Q), ("first_match", first_match, Q),
                         ("query_modalities", query_modalities, Q),
                         ("gallery_captions", gallery_captions, len(gallery_frames)),
                         ("gallery_modalities", gallery_modalities, len(gallery_frames))):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name}: expected {n} entries, got {len(seq)}")
    first = _frame_list(query_frames[0])[0]
    h, w = first.shape[:2]
    strip = max(len(_frame_list(f)) for f in query_frames)
    size = max(10, min(h // 9, 14))
    font = ImageFont.load_default(size=size)
    line = size + 4
    caption_lines = 1 + (max(len(c.split("\n")) for c in gallery_captions)
                         if gallery_captions else 0)
    gap = 12
    cell_w = max(w + 2 * border + 6, 7 * size)
    row_h = line + h + 2 * border + caption_lines * line + 8
    sw = strip * (w + 2) - 2  # query strip width (2-pixel gaps between frames)
    width = max(sw + 2 * border + gap * 2 + k * cell_w + 4, 40 * size)
    legend: list[tuple[str, tuple[int, int, int]]] = [("query", QUERY_BLUE)]
    if matches is None:
        legend.append(("identity unknown", GREY))
    else:
        legend += [("same identity", GREEN), ("different identity", RED)]
    has_marks = query_modalities is not None or gallery_modalities is not None
    top = 2 * line
    canvas = Image.new("RGB", (width, top + Q * row_h + 4), "white")
    draw = ImageDraw.Draw(canvas)
    texts: list[str] = []

    def text(xy: tuple[int, int], value: str, fill: Any = "black") -> None:
        texts.append(value)
        draw.text(xy, value, fill=fill, font=font)

    def mark(x: int, y: int, modality: int | None) -> None:
        if modality is None or int(modality) not in MODALITY_MARKS:
            return
        label = MODALITY_MARKS[int(modality)]
        tw = int(draw.textlength(label, font=font)) + 4
        dark = int(modality) == 1
        draw.rectangle([x, y, x + tw, y + line - 2], fill=(40, 40, 40) if dark else "white",
                       outline="black")
        texts.append(label)
        draw.text((x + 2, y), label, fill="white" if dark else "black", font=font)

    x = 2
    for label, color in legend:
        draw.rectangle([x, 4, x + size, 4 + size], fill=color, outline="black")
        text((x + size + 4, 3), label)
        x += size + 12 + int(draw.textlength(label, font=font))
    if has_marks:
        text((x, 3), "marks: V visible, IR infrared")
    for qi in range(Q):
        y0 = top + qi * row_h + 2
        title = query_titles[qi] if query_titles is not None else f"query {qi}"
        text((2, y0), _fit(draw, title, font, sw + 2 * border + gap))
        y = y0 + line
        draw.rectangle([0, y, sw + 2 * border - 1, y + h + 2 * border - 1], fill=QUERY_BLUE)
        for fi, frame in enumerate(_frame_list(query_frames[qi])):
            canvas.paste(Image.fromarray(frame).resize((w, h)),
                         (border + fi * (w + 2), y + border))
        if query_modalities is not None:
            mark(border, y + border, query_modalities[qi])
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
            if gallery_modalities is not None:
                mark(x + border, y + border, gallery_modalities[g])
            text((x, y0), f"#{r + 1}")
            yc = y + h + 2 * border + 2
            text((x, yc), f"d {distances[qi, r]:.3f}")
            if gallery_captions is not None:
                for li, part in enumerate(gallery_captions[g].split("\n")):
                    text((x, yc + (li + 1) * line), _fit(draw, part, font, cell_w - 4))
        valid = [r for r in range(k) if int(ranks[qi, r]) >= 0]
        if (matches is not None and first_match is not None and valid
                and not any(bool(matches[qi][r]) for r in valid)):
            fm = first_match[qi]
            note = (f"first correct match: rank {fm}" if fm is not None
                    else "no correct match in the gallery")
            text((2, y + h + 2 * border + 2), note, fill=RED)
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in png_metadata().items():
        info.add_text(key, value)
    path = atomic_write(path, lambda fh: canvas.save(fh, format="PNG", pnginfo=info),
                        what="output")
    return RankedPicture(path, texts, legend)


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


def identity_styles(n: int) -> list[tuple[tuple[float, float, float], bool]]:
    """``n`` distinct (RGB colour, filled) styles: the ten ``tab10`` colours filled, then the
    same ten hollow (up to 20 identities); beyond 20, hues evenly spaced around the colour
    circle, alternately filled and hollow."""
    import matplotlib

    if n <= 20:
        tab = matplotlib.colormaps["tab10"].colors
        return [(tuple(tab[i % 10]), i < 10) for i in range(n)]
    import colorsys

    return [(colorsys.hsv_to_rgb(i / n, 0.85, 0.8 if i % 3 else 0.55), i % 2 == 0)
            for i in range(n)]


def tsne_figure(xy: np.ndarray, pids: Sequence[int] | np.ndarray,
                modalities: Sequence[int] | np.ndarray, *, title: str = "t-SNE") -> Any:
    """The t-SNE scatter of 2-D points ``xy (N, 2)`` as a matplotlib ``Figure``.

    Colour (and fill) = identity, with :func:`identity_styles`; unlabelled points (pid
    ``-1``) in grey; marker = modality (circle visible, triangle infrared). The legend names
    the modality markers, the unlabelled points (with their count) and, up to 20 identities,
    each identity. The title counts tracklets, identities and unlabelled tracklets.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    xy = np.asarray(xy, dtype=np.float64)
    pids_a, mods = np.asarray(pids), np.asarray(modalities)
    ids = sorted(set(pids_a.tolist()) - {-1})
    styles = dict(zip(ids, identity_styles(len(ids))))
    grey = (0.6, 0.6, 0.6)
    unlabelled = int((pids_a == -1).sum())
    fig, ax = plt.subplots(figsize=(7.5, 6))
    for mod, marker in ((0, "o"), (1, "^")):
        for pid in [*ids, -1]:
            sel = (mods == mod) & (pids_a == pid)
            if not sel.any():
                continue
            color, filled = styles.get(pid, (grey, True))
            ax.scatter(xy[sel, 0], xy[sel, 1], marker=marker, s=30,
                       facecolors=color if filled else "none",
                       edgecolors="black" if filled else color,
                       linewidths=0.4 if filled else 1.4)
    counts = f"{len(xy)} tracklets, {len(ids)} identities"
    if unlabelled:
        counts += f", {unlabelled} unlabelled"
    ax.set_title(f"{title} ({counts})")
    ax.set_xticks([])
    ax.set_yticks([])
    handles = [Line2D([], [], marker=m, linestyle="", color="0.55", markeredgecolor="black",
                      label=lab) for m, lab in (("o", "visible"), ("^", "infrared"))]
    if unlabelled:
        handles.append(Line2D([], [], marker="s", linestyle="", color=grey,
                              markeredgecolor="black", label=f"unlabelled ({unlabelled})"))
    if len(ids) <= 20:
        for pid in ids:
            color, filled = styles[pid]
            handles.append(Line2D([], [], marker="s", linestyle="",
                                  markerfacecolor=color if filled else "none",
                                  markeredgecolor="black" if filled else color,
                                  markeredgewidth=0.4 if filled else 1.4, label=f"id {pid}"))
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8,
              title="marker = modality\ncolour = identity" if ids else "marker = modality",
              title_fontsize=8)
    fig.tight_layout()
    return fig


def plot_tsne(embeddings: torch.Tensor | np.ndarray, pids: Sequence[int] | np.ndarray,
              modalities: Sequence[int] | np.ndarray, path: str | Path, *,
              title: str = "t-SNE", perplexity: float = 30.0, seed: int = 0) -> Path:
    """Write a t-SNE scatter (PNG, :func:`tsne_figure`) of embeddings, L2-normalised first."""
    try:
        from sklearn.manifold import TSNE
    except ImportError as exc:
        raise ImportError("t-SNE needs scikit-learn: pip install 'xreid[viz]'") from exc
    import matplotlib.pyplot as plt

    x = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"embeddings: expected (N >= 2, E), got {tuple(x.shape)}")
    x = torch.nn.functional.normalize(x, dim=1).numpy()
    perplexity = min(perplexity, max(1.0, (len(x) - 1) / 3))
    tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=seed)
    if len(x) <= 5000:  # small problems: extra OpenMP threads only add spinning overhead
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            xy = tsne.fit_transform(x)
    else:
        xy = tsne.fit_transform(x)
    fig = tsne_figure(xy, pids, modalities, title=title)
    try:
        return save_figure_png(fig, path, dpi=110)
    finally:
        plt.close(fig)

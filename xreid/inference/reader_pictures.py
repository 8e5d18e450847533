"""Ranked-results and t-SNE pictures for a dataset reader's test split (training scripts).

:func:`save_ranked_results` embeds a direction's query and gallery tracklets with the
evaluation's preprocessing, and draws the ``num_queries`` queries with the lowest AP;
:func:`save_tsne` draws the t-SNE of the query and gallery embeddings (both modalities).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from xreid.inference.search import exact_search
from xreid.inference.visualize import (
    average_precisions,
    draw_ranked_results,
    first_match_ranks,
    gallery_caption,
    plot_tsne,
)

__all__ = ["reader_features", "save_ranked_results", "save_tsne"]


def reader_features(model: Any, reader: Any, cfg: Any, direction: str = "i2v",
                    *, device: str | torch.device | None = None
                    ) -> tuple[torch.Tensor, list[Any], torch.Tensor, list[Any]]:
    """``(query features, query tracklets, gallery features, gallery tracklets)`` of
    ``reader``'s ``direction``, embedded as the evaluation does (``cfg`` a ``TrainConfig``)."""
    from xreid.data import ClipTransform, VideoClipDataset
    from xreid.metrics import extract_features

    query, gallery = reader.query(direction), reader.gallery(direction)
    transform = ClipTransform(tuple(cfg.img_size), train=False, normalization=cfg.normalization)
    feats = []
    for tracklets in (query, gallery):
        ds = VideoClipDataset(tracklets, num_frames=cfg.num_frames, sampling=cfg.eval_sampling,
                              transform=transform)
        loader = torch.utils.data.DataLoader(ds, batch_size=cfg.eval_batch_size)
        feats.append(extract_features(model, loader, device=device,
                                      use_cameras=cfg.use_cameras).features)
    return feats[0], query, feats[1], gallery


def _thumb(path: str, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((size[1], size[0])))


def save_ranked_results(model: Any, reader: Any, cfg: Any, path: str | Path, *,
                        num_queries: int = 8, top_k: int = 5, direction: str = "i2v",
                        frames: int = 4, height: int = 128) -> Path:
    """The ranked-results picture of the ``num_queries`` lowest-AP queries of ``direction``."""
    from xreid.data.sampling import sample_frame_indices
    from xreid.metrics import compute_distance

    qf, query, gf, gallery = reader_features(model, reader, cfg, direction)
    q_pids = torch.tensor([t.pid for t in query])
    g_pids = torch.tensor([t.pid for t in gallery])
    dist = compute_distance(qf, gf)
    ap = average_precisions(dist, q_pids, g_pids)
    valid = torch.nonzero(~torch.isnan(ap)).flatten()
    chosen = valid[torch.argsort(ap[valid], stable=True)[:num_queries]].tolist()
    res = exact_search(qf[chosen], gf, top_k)
    size = (height, height // 2)
    q_frames = [[_thumb(query[i].frames[j], size)
                 for j in sample_frame_indices(len(query[i].frames), frames, "uniform")]
                for i in chosen]
    blank = np.zeros((*size, 3), dtype=np.uint8)
    needed = {int(i) for i in res.indices.flatten()}
    g_frames = [_thumb(t.frames[len(t.frames) // 2], size) if i in needed else blank
                for i, t in enumerate(gallery)]
    titles = [f"{direction.upper()} query id {query[i].pid} cam {query[i].camera}: "
              f"AP {100 * float(ap[i]):.1f}%" for i in chosen]
    matches = g_pids[res.indices] == q_pids[chosen][:, None]
    captions = [gallery_caption("/".join(Path(t.frames[0]).parent.parts[-3:]) if t.frames
                                else f"#{i}", t.pid, t.camera) for i, t in enumerate(gallery)]
    return draw_ranked_results(
        q_frames, g_frames, res.indices, res.distances, path, matches=matches,
        query_titles=titles, gallery_captions=captions,
        query_modalities=[query[i].modality for i in chosen],
        gallery_modalities=[t.modality for t in gallery],
        first_match=first_match_ranks(dist[chosen], q_pids[chosen], g_pids))


def save_tsne(model: Any, reader: Any, cfg: Any, path: str | Path, *, title: str = "t-SNE",
              max_identities: int = 20) -> Path:
    """t-SNE of the I2V query (infrared) and gallery (visible) embeddings of the first
    ``max_identities`` test identities."""
    qf, query, gf, gallery = reader_features(model, reader, cfg, "i2v")
    feats = torch.cat([qf, gf])
    tracklets = [*query, *gallery]
    keep_ids = set(sorted({t.pid for t in tracklets})[:max_identities])
    keep = [i for i, t in enumerate(tracklets) if t.pid in keep_ids]
    return plot_tsne(feats[keep], [tracklets[i].pid for i in keep],
                     [tracklets[i].modality for i in keep], path, title=title)

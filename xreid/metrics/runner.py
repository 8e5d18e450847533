"""Evaluate a model on a VVI-ReID dataset in both directions (I2V and V2I).

Protocols (``docs/datasets.md``, "Protocol" of each dataset):

* HITSZ-VCM: I2V = infrared ``query_IDX`` tracklets against the visible rest, V2I = the swap;
  same-pid-same-camera gallery entries are removed (MITML / X-ReID ``eval_func``).
* BUPTCampus: I2V = infrared query vs visible gallery, V2I = visible query vs infrared
  gallery; nothing is removed (the dataset authors' AuxNet ``evaluation.py``).

The reader decides: ``type(dataset).eval_remove_same_camera``; ``remove_same_camera=`` overrides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from xreid._torch_utils import model_device
from xreid._validation import check_positive_int
from xreid.constants import DIRECTIONS
from xreid.metrics.distance import compute_distance, resolve_metric
from xreid.metrics.extract import Progress, extract_features
from xreid.metrics.ranking import RankingResult, evaluate_ranking
from xreid.metrics.rerank import re_ranking

__all__ = ["DIRECTIONS", "REPORTED_RANKS", "DirectionMetrics", "EvaluationResult",
           "check_directions", "evaluate_model", "gather_splits", "rank_direction"]

REPORTED_RANKS: tuple[int, ...] = (1, 5, 10, 20)
_KEYS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")


@dataclass(frozen=True)
class DirectionMetrics:
    """Metrics of one retrieval direction; every rate is a fraction in [0, 1].

    Attributes:
        rank1, rank5, rank10, rank20: CMC at 1, 5, 10, 20 (NaN if the CMC is shorter).
        mAP: mean non-interpolated average precision.
        mINP: mean inverse negative penalty.
        cmc: the CMC curve, ``cmc[k - 1]`` = Rank-k.
        num_valid_queries: queries that had a match left (the averages' denominator).
        num_queries, num_gallery: sizes of the query and gallery sets.
    """

    rank1: float
    rank5: float
    rank10: float
    rank20: float
    mAP: float
    mINP: float
    cmc: list[float] = field(default_factory=list)
    num_valid_queries: int = 0
    num_queries: int = 0
    num_gallery: int = 0

    @classmethod
    def from_ranking(cls, result: RankingResult, *, num_queries: int = 0, num_gallery: int = 0,
                     max_rank: int | None = None) -> DirectionMetrics:
        """Build from :func:`evaluate_ranking`'s result; ``cmc`` is cut to ``max_rank``."""
        cmc = [float(c) for c in result.cmc]

        def at(k: int) -> float:
            return cmc[k - 1] if k <= len(cmc) else float("nan")

        return cls(
            rank1=at(1), rank5=at(5), rank10=at(10), rank20=at(20),
            mAP=float(result.mAP), mINP=float(result.mINP),
            cmc=cmc[:max_rank] if max_rank is not None else cmc,
            num_valid_queries=int(result.num_valid_queries),
            num_queries=int(num_queries), num_gallery=int(num_gallery),
        )

    def to_dict(self) -> dict[str, float]:
        """``{"rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}`` as plain floats."""
        return {k: float(getattr(self, k)) for k in _KEYS}


@dataclass(frozen=True)
class EvaluationResult:
    """Per-direction metrics of :func:`evaluate_model`.

    ``result["i2v"].rank1``; ``result.to_dict()`` is JSON-serialisable;
    ``print(result.format_table())``.

    Attributes:
        directions: ``{"i2v": DirectionMetrics, "v2i": DirectionMetrics}`` (those evaluated).
        protocol: the settings used (sampling, frames, metric, camera removal, re-ranking).
    """

    directions: dict[str, DirectionMetrics]
    protocol: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, direction: str) -> DirectionMetrics:
        try:
            return self.directions[direction]
        except KeyError:
            raise KeyError(f"direction {direction!r} was not evaluated; "
                           f"have {tuple(self.directions)}") from None

    def __contains__(self, direction: object) -> bool:
        return direction in self.directions

    def __iter__(self):
        return iter(self.directions)

    def to_dict(self, *, include_cmc: bool = False) -> dict[str, Any]:
        """``{"i2v": {rank1, rank5, rank10, rank20, mAP, mINP}, "v2i": {...}}``.

        With ``include_cmc`` a separate top-level ``"cmc"`` key holds
        ``{direction: [Rank-1, Rank-2, ...]}`` and ``"num_valid_queries"``
        ``{direction: int}``.
        """
        out: dict[str, Any] = {d: m.to_dict() for d, m in self.directions.items()}
        if include_cmc:
            out["cmc"] = {d: list(m.cmc) for d, m in self.directions.items()}
            out["num_valid_queries"] = {
                d: m.num_valid_queries for d, m in self.directions.items()
            }
        return out

    def format_table(self) -> str:
        """A fixed-width table in percent, one row per direction."""
        head = f"{'':<5}" + "".join(f"{h:>8}" for h in ("R1", "R5", "R10", "R20", "mAP", "mINP"))
        lines = [head + f"{'queries':>14}"]
        for d, m in self.directions.items():
            vals = "".join(f"{100 * getattr(m, k):>8.2f}" for k in _KEYS)
            lines.append(f"{d.upper():<5}{vals}"
                         f"{f'{m.num_valid_queries}/{m.num_queries}':>14}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format_table()


def check_directions(directions: Sequence[str] | str) -> tuple[str, ...]:
    """``directions`` as a tuple of distinct names from :data:`DIRECTIONS`; ValueError else."""
    if isinstance(directions, str):
        directions = (directions,)
    dirs = tuple(directions)
    if not dirs or any(d not in DIRECTIONS for d in dirs) or len(set(dirs)) != len(dirs):
        raise ValueError(f"directions: expected distinct values from {DIRECTIONS}, "
                         f"got {directions!r}")
    return dirs


def _rerank_params(rerank: bool | Mapping[str, Any]) -> dict[str, Any] | None:
    if rerank is False or rerank is None:
        return None
    if rerank is True:
        return {}
    if isinstance(rerank, Mapping):
        unknown = set(rerank) - {"k1", "k2", "lambda_value"}
        if unknown:
            raise ValueError(f"rerank: expected a bool or a dict with keys k1, k2, "
                             f"lambda_value, got unknown keys {sorted(unknown)}")
        return dict(rerank)
    raise ValueError(f"rerank: expected a bool or a dict of re_ranking keywords, got {rerank!r}")


def gather_splits(
    reader: Any, directions: Sequence[str], name: str = "dataset"
) -> tuple[dict[str, tuple[list[Any], list[Any]]], dict[Any, int]]:
    """The query and gallery tracklets of each direction, and one row per distinct tracklet.

    Returns ``(splits, row_of)``: ``splits[direction] = (query list, gallery list)`` from
    ``reader.query(direction)`` / ``reader.gallery(direction)``; ``row_of[tracklet]`` numbers
    the distinct tracklets of all splits in first-seen order, so that each one is embedded
    once even when it is in both directions. ``ValueError`` naming ``name`` if ``reader``
    lacks either method.
    """
    for attr in ("query", "gallery"):
        if not callable(getattr(reader, attr, None)):
            raise ValueError(f"{name}: expected a reader with query(direction) and "
                             f"gallery(direction), got {type(reader).__name__}")
    splits = {d: (list(reader.query(d)), list(reader.gallery(d))) for d in directions}
    row_of: dict[Any, int] = {}
    for q, g in splits.values():
        for t in (*q, *g):
            row_of.setdefault(t, len(row_of))
    return splits, row_of


def rank_direction(
    dist: torch.Tensor,
    query: Sequence[Any],
    gallery: Sequence[Any],
    *,
    remove_same_camera: bool,
    max_rank: int,
) -> DirectionMetrics:
    """:class:`DirectionMetrics` of a ``(Q, G)`` distance matrix between the ``query`` and
    ``gallery`` tracklets (their ``pid`` and ``camera`` attributes); the CMC is computed up
    to at least rank 20 so that every reported rank exists."""
    ranking = evaluate_ranking(
        dist,
        torch.tensor([t.pid for t in query], dtype=torch.long),
        torch.tensor([t.pid for t in gallery], dtype=torch.long),
        torch.tensor([t.camera for t in query], dtype=torch.long),
        torch.tensor([t.camera for t in gallery], dtype=torch.long),
        remove_same_camera=remove_same_camera,
        max_rank=max(max_rank, max(REPORTED_RANKS)),
    )
    return DirectionMetrics.from_ranking(
        ranking, num_queries=len(query), num_gallery=len(gallery), max_rank=max_rank
    )


def evaluate_model(
    model: nn.Module,
    dataset: Any,
    *,
    directions: Sequence[str] = DIRECTIONS,
    num_frames: int = 10,
    sampling: str = "chunk_first",
    img_size: tuple[int, int] = (288, 144),
    normalization: Any = "imagenet",
    batch_size: int = 16,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
    metric: str = "euclidean",
    normalize: bool = True,
    remove_same_camera: bool | None = None,
    rerank: bool | Mapping[str, Any] = False,
    max_rank: int = 20,
    use_cameras: bool = True,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Extract features for the test tracklets and rank them in each direction.

    Args:
        model: module with ``embed(video (B, T, 3, H, W), cameras=None) -> (B, E)``
            (:class:`xreid.XReID`); its train/eval modes are restored afterwards.
        dataset: a reader (:class:`xreid.data.HITSZVCM`, :class:`xreid.data.BUPTCampus`, or
            anything with ``query(direction)`` / ``gallery(direction)`` returning lists of
            :class:`xreid.data.Tracklet` and an ``eval_remove_same_camera`` attribute).
        directions: any of ``"i2v"`` (infrared query -> visible gallery), ``"v2i"``.
        num_frames, sampling: frame sampling of :class:`xreid.data.VideoClipDataset`
            (``"chunk_first"``: X-ReID's test sampling; ``"uniform"``: AuxNet's;
            ``"dense"``: every frame in clips of ``num_frames``, clip features averaged).
        img_size, normalization: the eval :class:`xreid.data.ClipTransform`.
        batch_size, num_workers: the DataLoader (batch size 1 for ``"dense"``).
        device: where clips go (None: the model's device); distances and ranking run there.
        autocast_dtype: optional autocast dtype for the forward passes.
        metric, normalize: see :func:`compute_distance` (all metrics rank alike on
            normalised features).
        remove_same_camera: None = the dataset's protocol (``eval_remove_same_camera``;
            True if the reader does not say).
        rerank: k-reciprocal re-ranking (:func:`re_ranking`): True for the defaults
            (k1=20, k2=6, lambda_value=0.3) or a dict of those keywords.
        max_rank: length of the reported CMC (Rank-20 is always computed).
        use_cameras: pass camera ids to ``embed`` (camera embedding / SIE).
        progress: ``callable(done, total)`` or tqdm-like, over all tracklets extracted.

    Each distinct tracklet is embedded once even when it appears in several lists (HITSZ-VCM:
    the I2V query set is the V2I gallery set and vice versa).

    Returns:
        :class:`EvaluationResult`.
    """
    from xreid.data import ClipTransform, VideoClipDataset  # import here: keeps metrics light

    dirs = check_directions(directions)
    metric = resolve_metric(metric)
    check_positive_int(max_rank, "max_rank")
    check_positive_int(batch_size, "batch_size")
    rr = _rerank_params(rerank)
    splits, row_of = gather_splits(dataset, dirs, "dataset")
    if remove_same_camera is None:
        remove_same_camera = bool(getattr(dataset, "eval_remove_same_camera", True))
    clips = VideoClipDataset(
        list(row_of), num_frames=num_frames, sampling=sampling,
        transform=ClipTransform(img_size, train=False, normalization=normalization),
    )
    dev = torch.device(device) if device is not None else None
    if dev is None:
        dev = model_device(model)
    loader = torch.utils.data.DataLoader(
        clips, batch_size=1 if sampling == "dense" else batch_size, shuffle=False,
        num_workers=num_workers, pin_memory=dev.type == "cuda",
    )
    feats = extract_features(model, loader, device=dev, autocast_dtype=autocast_dtype,
                             progress=progress, use_cameras=use_cameras).features

    results: dict[str, DirectionMetrics] = {}
    for d, (q, g) in splits.items():
        qf = feats[torch.tensor([row_of[t] for t in q], dtype=torch.long)].to(dev)
        gf = feats[torch.tensor([row_of[t] for t in g], dtype=torch.long)].to(dev)
        dist = compute_distance(qf, gf, metric, normalize=normalize)
        if rr is not None:
            dist = re_ranking(
                dist,
                compute_distance(qf, qf, metric, normalize=normalize),
                compute_distance(gf, gf, metric, normalize=normalize),
                **rr,
            )
        results[d] = rank_direction(dist, q, g, remove_same_camera=remove_same_camera,
                                    max_rank=max_rank)
    protocol = {
        "dataset": type(dataset).__name__, "num_frames": num_frames, "sampling": sampling,
        "img_size": list(img_size), "metric": metric, "normalize": normalize,
        "remove_same_camera": remove_same_camera, "rerank": rr is not None,
        "max_rank": max_rank,
    }
    return EvaluationResult(results, protocol)

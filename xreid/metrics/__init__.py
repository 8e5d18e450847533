"""Evaluation for video visible-infrared re-id (``xreid.metrics``).

* :func:`evaluate_ranking` -> :class:`RankingResult`: exact CMC / mAP / mINP from a distance
  matrix (stable ties, same-pid-same-camera junk removal, only the query identity's entries
  ranked against a value sort of the row, chunked, deterministic).
* :func:`compute_distance` (and :func:`euclidean_distance`, :func:`squared_euclidean_distance`,
  :func:`cosine_distance`): chunked distance matrices from embeddings.
* :func:`re_ranking`: k-reciprocal re-ranking (Zhong et al. 2017).
* :func:`extract_features`: tracklet embeddings of a model over a loader.
* :func:`evaluate_model` -> :class:`EvaluationResult`: the I2V / V2I runner over a reader.
* :func:`pixel_baseline`: the raw-pixel ranking every trained model should beat.
* :func:`plot_cmc`: a PNG of the CMC curves.

Importing this package loads neither matplotlib nor torchvision / timm / open_clip.
"""

from xreid.metrics.distance import (
    METRICS,
    compute_distance,
    cosine_distance,
    euclidean_distance,
    resolve_metric,
    squared_euclidean_distance,
)
from xreid.metrics.extract import ExtractedFeatures, Progress, extract_features, report_progress
from xreid.metrics.pixel_baseline import pixel_baseline, pixel_features
from xreid.metrics.plot import plot_cmc
from xreid.metrics.ranking import RankingResult, as_tensor, evaluate_ranking
from xreid.metrics.rerank import re_ranking
from xreid.metrics.runner import (
    DIRECTIONS,
    REPORTED_RANKS,
    DirectionMetrics,
    EvaluationResult,
    check_directions,
    evaluate_model,
    gather_splits,
    rank_direction,
)

__all__ = [
    "DIRECTIONS",
    "METRICS",
    "REPORTED_RANKS",
    "DirectionMetrics",
    "EvaluationResult",
    "ExtractedFeatures",
    "Progress",
    "RankingResult",
    "as_tensor",
    "check_directions",
    "compute_distance",
    "cosine_distance",
    "euclidean_distance",
    "evaluate_model",
    "evaluate_ranking",
    "extract_features",
    "gather_splits",
    "pixel_baseline",
    "pixel_features",
    "plot_cmc",
    "rank_direction",
    "re_ranking",
    "report_progress",
    "resolve_metric",
    "squared_euclidean_distance",
]

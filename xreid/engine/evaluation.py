"""Evaluation of a training run: I2V and V2I on a reader's test split, and the baselines.

:class:`ReaderEvaluator` is the trainer's ``evaluator``: called with the (unwrapped) model it
embeds the reader's query and gallery tracklets as the evaluation protocol reads them (T frames
by ``sampling``, the evaluation preprocessing) and returns the CMC/mAP/mINP of both directions
(:func:`xreid.metrics.evaluate_model`). :meth:`ReaderEvaluator.pixel_baseline` ranks the test
split by raw pixels, what training must beat.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from xreid.metrics.pixel_baseline import pixel_baseline
from xreid.metrics.runner import EvaluationResult, evaluate_model

__all__ = ["ReaderEvaluator", "collect_metrics"]


class ReaderEvaluator:
    """``evaluator(model, progress=None)`` → :class:`~xreid.metrics.EvaluationResult`.

    Args:
        reader: a dataset reader with ``query(direction)`` / ``gallery(direction)``.
        num_frames, sampling, img_size, normalization: how each test tracklet is read.
        batch_size, num_workers: the extraction's loader.
        device, autocast_dtype: where and in which precision the model runs.
        rerank: k-reciprocal re-ranking.
        use_cameras: feed the camera index (the model's camera embedding).
    """

    def __init__(self, reader: Any, *, num_frames: int, sampling: str,
                 img_size: tuple[int, int], normalization: str, batch_size: int = 16,
                 num_workers: int = 0, device: torch.device | str = "cpu",
                 autocast_dtype: torch.dtype | None = None, rerank: bool = False,
                 use_cameras: bool = True) -> None:
        self.reader = reader
        self.options = dict(num_frames=num_frames, sampling=sampling, img_size=tuple(img_size),
                            normalization=normalization, batch_size=batch_size,
                            num_workers=num_workers, device=torch.device(device),
                            autocast_dtype=autocast_dtype, rerank=rerank,
                            use_cameras=use_cameras)

    def __call__(self, model: nn.Module,
                 progress: Callable[[int, int], None] | None = None) -> EvaluationResult:
        return evaluate_model(model, self.reader, progress=progress, **self.options)

    def pixel_baseline(self) -> EvaluationResult:
        """The raw-pixel ranking of the test split (:func:`xreid.metrics.pixel_baseline`)."""
        return pixel_baseline(self.reader)


def collect_metrics(results: dict[str, dict[str, Any]], baselines: Iterable[str], *,
                    before_is_baseline: bool = True) -> dict[str, Any]:
    """metrics.json's ``before``/``after``/``eval``/``baselines`` of the test split and the
    same under ``"validation"`` (tags starting ``"val_"``), from ``{tag: result dict}``.

    ``baselines`` names the baseline results (``"val_"`` ones: the validation split's);
    ``"untrained"`` is ``"before"`` unless ``before_is_baseline`` is False (a model that starts
    from pre-trained weights has its own baseline)."""
    names = list(baselines)
    out: dict[str, Any] = {}
    for prefix in ("", "val_"):
        part = {tag: results[prefix + tag] for tag in ("before", "after", "eval")
                if prefix + tag in results}
        tags = {n.removeprefix(prefix): n for n in names if n.startswith("val_") == bool(prefix)}
        if before_is_baseline:
            tags["untrained"] = prefix + "before"
        if found := {n: results[tag] for n, tag in tags.items() if tag in results}:
            part["baselines"] = found
        if prefix and part:
            out["validation"] = part
        elif not prefix:
            out.update(part)
    return out

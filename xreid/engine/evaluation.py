"""Evaluation of a training run: I2V and V2I on a reader's test split, and the baselines.

:class:`ReaderEvaluator` is the trainer's ``evaluator``: called with the (unwrapped) model it
embeds the reader's query and gallery tracklets as the evaluation protocol reads them (T frames
by ``sampling``, the evaluation preprocessing) and returns the CMC/mAP/mINP of both directions
(:func:`xreid.metrics.evaluate_model`). :meth:`ReaderEvaluator.pixel_baseline` ranks the test
split by raw pixels, what training must beat.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from xreid.metrics.pixel_baseline import pixel_baseline
from xreid.metrics.runner import EvaluationResult, evaluate_model

__all__ = ["ReaderEvaluator"]


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

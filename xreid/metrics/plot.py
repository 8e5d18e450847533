"""CMC-curve plot of every evaluated direction (matplotlib, Agg, no global state touched)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from xreid.metrics.ranking import RankingResult
from xreid.metrics.runner import DirectionMetrics, EvaluationResult
from xreid.output_files import save_figure_png

__all__ = ["plot_cmc"]

_LABELS = {"i2v": "I2V (infrared → visible)", "v2i": "V2I (visible → infrared)"}


def _curves(results: Any) -> dict[str, tuple[np.ndarray, float | None]]:
    """-> {name: (cmc, mAP or None)} from any of the accepted result forms."""
    if isinstance(results, EvaluationResult):
        return {d: (np.asarray(m.cmc, float), m.mAP) for d, m in results.directions.items()}
    if not isinstance(results, Mapping):
        raise ValueError(
            "results: expected an EvaluationResult or a dict, got " + type(results).__name__
        )
    if "cmc" in results and isinstance(results["cmc"], Mapping):  # to_dict(include_cmc=True)
        return {
            d: (np.asarray(c, float), results.get(d, {}).get("mAP"))
            for d, c in results["cmc"].items()
        }
    out: dict[str, tuple[np.ndarray, float | None]] = {}
    for name, v in results.items():
        if isinstance(v, (DirectionMetrics, RankingResult)):
            out[name] = (np.asarray(v.cmc, float), float(v.mAP))
        elif isinstance(v, Mapping) and "cmc" in v:
            out[name] = (np.asarray(v["cmc"], float), v.get("mAP"))
        elif isinstance(v, (Sequence, np.ndarray)) and not isinstance(v, str):
            out[name] = (np.asarray(v, float), None)
        else:
            raise ValueError(
                f"results[{name!r}]: expected a CMC sequence, a DirectionMetrics / "
                f"RankingResult or a dict with a 'cmc' entry, got {type(v).__name__}"
            )
    return out


def plot_cmc(
    results: EvaluationResult | Mapping[str, Any],
    path: str | PathLike[str],
    *,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Write a PNG with the CMC curve (Rank-k in percent against k) of every direction.

    Args:
        results: an :class:`EvaluationResult`; or a dict: ``{direction: cmc sequence}``,
            ``{direction: DirectionMetrics | RankingResult | {"cmc": [...], "mAP": ...}}``,
            or ``EvaluationResult.to_dict(include_cmc=True)``.
        path: output file (parent folders are created).
        title: figure title (default "CMC").
        dpi: resolution.

    Returns:
        The path written. Uses matplotlib's Agg canvas directly: the global backend and
        pyplot state are left alone.
    """
    curves = _curves(results)
    if not curves:
        raise ValueError("results: expected at least one direction with a CMC, got none")
    for name, (cmc, _) in curves.items():
        if cmc.ndim != 1 or cmc.size == 0:
            raise ValueError(f"results[{name!r}]: expected a non-empty 1-D CMC, "
                             f"got shape {cmc.shape}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, (cmc, mAP) in curves.items():
        ranks = np.arange(1, cmc.size + 1)
        label = _LABELS.get(name, name)
        label += f": R1 {100 * cmc[0]:.1f}%"
        if mAP is not None:
            label += f", mAP {100 * float(mAP):.1f}%"
        ax.plot(ranks, 100 * cmc, marker="o", markersize=3, label=label)
    ax.set_xlabel("rank k")
    ax.set_ylabel("matching rate (%)")
    ax.set_ylim(0, 101)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(1, max(c.size for c, _ in curves.values()))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title if title is not None else "CMC")
    fig.tight_layout()
    return save_figure_png(fig, path, dpi=dpi)

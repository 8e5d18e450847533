"""The training-curve picture: per-iteration losses (smoothed) with the learning rate.

Input: the records of a run's ``log.jsonl`` (one JSON object a line); the ``"iteration"``
events carry ``iteration`` (global step), every loss term and ``lr``. Each loss is drawn
raw (thin, faint) and smoothed with an exponential moving average
``s_i = a s_{i-1} + (1 - a) x_i`` (bias-corrected: divided by ``1 - a^i``, as TensorBoard
does), on a log scale against the iteration; the learning rate goes on a second y axis.
When a log holds no iteration events (e.g. ``log_every`` larger than the run), the epoch
means are drawn against the iteration at each epoch's end instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from xreid.output_files import save_figure_png

__all__ = ["ema", "plot_training_curve", "read_log", "training_curve_figure"]

NOT_LOSSES = frozenset({"event", "epoch", "iteration", "lr", "time", "tag"})


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The JSON records of a ``log.jsonl`` (a torn last line is ignored)."""
    records = []
    for text in Path(path).read_text().splitlines():
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records


def ema(values: Iterable[float], alpha: float) -> np.ndarray:
    """Bias-corrected exponential moving average (``alpha`` in [0, 1); 0 = no smoothing)."""
    x = np.asarray(list(values), dtype=np.float64)
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha: expected a float in [0, 1), got {alpha!r}")
    out = np.empty_like(x)
    acc = 0.0
    for i, v in enumerate(x):
        acc = alpha * acc + (1.0 - alpha) * v
        out[i] = acc / (1.0 - alpha ** (i + 1))
    return out


def training_curve_figure(records: list[dict[str, Any]], *, smoothing: float = 0.9) -> Any:
    """The training-curve ``Figure`` (losses on the left log axis, ``lr`` on the right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r for r in records if r.get("event") == "iteration" and "iteration" in r]
    per_iteration = bool(steps)
    if not per_iteration:  # epoch means at the epoch's last iteration
        steps = [r for r in records if r.get("event") == "epoch"]
        per_epoch = max(1, int(steps[-1].get("iteration", 0)) // max(1, len(steps))) \
            if steps else 1
        steps = [{**r, "iteration": r.get("iteration", per_epoch * int(r["epoch"]))}
                 for r in steps]
    if not steps:
        raise ValueError("records: no iteration or epoch event to plot")
    x = np.asarray([float(r["iteration"]) for r in steps])
    keys = [k for k in steps[0] if k not in NOT_LOSSES
            and isinstance(steps[0][k], (int, float))]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = matplotlib.colormaps["tab10"].colors
    for i, key in enumerate(keys):
        y = np.asarray([float(r.get(key, np.nan)) for r in steps])
        color = colors[i % 10]
        if per_iteration and smoothing > 0:
            ax.plot(x, y, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(x, ema(y, smoothing), color=color, linewidth=1.6, label=key)
        else:
            ax.plot(x, y, color=color, marker="o", label=key)
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"loss (EMA {smoothing:g} over raw)" if per_iteration and smoothing > 0
                  else "loss (epoch mean)")
    if all(float(r.get(k, 1.0)) > 0 for r in steps for k in keys):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if any("lr" in r for r in steps):
        ax2 = ax.twinx()
        (lr_line,) = ax2.plot(x, [float(r.get("lr", np.nan)) for r in steps], color="black",
                              linestyle="--", linewidth=1.2, label="learning rate")
        ax2.set_ylabel("learning rate")
        ax2.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        handles.append(lr_line)
        labels.append("learning rate")
    ax.legend(handles, labels, fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def plot_training_curve(records: list[dict[str, Any]] | str | Path, path: str | Path, *,
                        smoothing: float = 0.9) -> Path:
    """Write the training-curve PNG from log records or a ``log.jsonl`` path."""
    import matplotlib.pyplot as plt

    if isinstance(records, (str, Path)):
        records = read_log(records)
    fig = training_curve_figure(records, smoothing=smoothing)
    try:
        return save_figure_png(fig, path, dpi=120)
    finally:
        plt.close(fig)

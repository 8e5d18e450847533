"""Loggers of a training run, as hooks: JSONL, plain text, CSV and TensorBoard.

Every logger receives the same records from :meth:`Trainer.log` (rank 0):

* ``{"event": "run", "world_size", "rank", "config"}`` when :meth:`Trainer.fit` starts;
* ``{"event": "evaluation", "tag", "epoch", "metrics"}`` for every evaluation (``before``,
  ``after``, ``eval``), ``metrics`` holding per direction (``i2v``, ``v2i``) R-1/5/10/20,
  mAP and mINP;
* ``{"event": "baseline", "tag", "epoch", "metrics"}`` for each baseline (``pixels``);
* ``{"event": "iteration", "epoch", "iteration", <loss terms>, "total", "lr"}`` every
  ``run.log_every`` iterations;
* ``{"event": "epoch", "epoch", <epoch means of the terms and the LR>}`` after every epoch;
* ``{"event": "prompt_stage1_epoch", ...}`` during the textual-prompt stage 1.

Where they go (``run.log``, :data:`~xreid.engine.sections.LOGGERS`):

* ``jsonl``: ``log.jsonl``, one JSON object per record with its ``time``; a resumed run first
  drops the records written after its checkpoint (:func:`truncate_log`).
* ``text``: ``train.log``, what the console shows without progress bars: the messages, one
  line per epoch, each evaluation's table, the world size and the configuration.
* ``csv``: ``csv/iterations.csv``, ``csv/epochs.csv`` and ``csv/evaluations.csv`` (one row
  per evaluation, tag and baseline, with ``<direction>_<metric>`` columns).
* ``tensorboard``: ``tensorboard/`` event files (``torch.utils.tensorboard``; needs the
  ``tensorboard`` package, ``pip install xreid[tensorboard]``): scalars ``iteration/<term>``,
  ``epoch/<term>``, ``eval/<tag>/<direction>/<metric>`` (at the epoch),
  ``baseline/<name>/<direction>/<metric>``, and the text ``config`` with the world size.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xreid.engine.hooks import Hook

__all__ = [
    "CsvLogger",
    "JsonlLogger",
    "TensorBoardLogger",
    "TextLogger",
    "build_loggers",
    "truncate_log",
]


def truncate_log(path: Path, *, epoch: int, iteration: int) -> None:
    """Drop the JSONL records written after a checkpoint (``epoch`` completed epochs,
    ``iteration`` steps) so a resumed run does not repeat iterations in its log."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        event = rec.get("event")
        if event == "iteration" and rec.get("iteration", 0) > iteration:
            continue
        if event in ("epoch", "evaluation") and rec.get("epoch", 0) > epoch:
            continue
        kept.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(k + "\n" for k in kept))
    os.replace(tmp, path)


class JsonlLogger(Hook):
    """Every record as one JSON line of ``path`` (appended), with its ``time``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_log(self, trainer: Any, record: dict[str, Any]) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"time": time.time(), **record}) + "\n")

    def on_resume(self, trainer: Any, state: dict[str, Any]) -> None:
        truncate_log(self.path, epoch=trainer.epoch, iteration=trainer.iteration)


def _metric_rows(metrics: dict[str, Any]) -> dict[str, float]:
    """``{"i2v_rank1": ..., "v2i_mAP": ...}`` of an evaluation's ``metrics``."""
    return {f"{d}_{k}": v for d, row in metrics.items() if isinstance(row, dict)
            for k, v in row.items() if isinstance(v, (int, float))}


class TextLogger(Hook):
    """``train.log``: messages, epoch lines and evaluation tables, as plain text."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _write(self, text: str) -> None:
        with open(self.path, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")

    def on_message(self, trainer: Any, text: str) -> None:
        self._write(text)

    def on_log(self, trainer: Any, record: dict[str, Any]) -> None:
        event = record.get("event")
        if event == "run":
            self._write(f"run: world size {record['world_size']}; configuration "
                        + json.dumps(record.get("config"), sort_keys=True))
        elif event == "epoch":
            terms = "  ".join(f"{k}={v:.4f}" for k, v in record.items()
                              if k not in ("event", "epoch", "lr"))
            self._write(f"epoch {record['epoch']}/{trainer.epochs}  {terms}  "
                        f"lr={record.get('lr', 0):.2e}")
        elif event in ("evaluation", "baseline"):
            rows = _metric_rows(record["metrics"])
            shown = "  ".join(f"{k}={100 * v:.2f}" for k, v in rows.items())
            self._write(f"{event} {record['tag']!r} after {record['epoch']} epoch(s): {shown}")


class CsvLogger(Hook):
    """``iterations.csv``, ``epochs.csv`` and ``evaluations.csv`` in ``folder``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def _append(self, name: str, row: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        new = not path.exists() or path.stat().st_size == 0
        fields = list(row) if new else next(csv.reader(open(path)))
        with open(path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def on_log(self, trainer: Any, record: dict[str, Any]) -> None:
        event = record.get("event")
        if event in ("iteration", "epoch"):
            self._append(f"{event}s.csv", {k: v for k, v in record.items() if k != "event"})
        elif event in ("evaluation", "baseline"):
            self._append("evaluations.csv", {"event": event, "tag": record["tag"],
                                             "epoch": record["epoch"],
                                             **_metric_rows(record["metrics"])})


class TensorBoardLogger(Hook):
    """TensorBoard event files in ``folder`` (``torch.utils.tensorboard``)."""

    def __init__(self, folder: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ImportError("run.log: tensorboard needs the tensorboard package "
                              "(pip install 'xreid[tensorboard]')") from exc
        self.writer = SummaryWriter(log_dir=str(folder))

    def on_log(self, trainer: Any, record: dict[str, Any]) -> None:
        event = record.get("event")
        w = self.writer
        if event == "run":
            w.add_text("config", f"world size {record['world_size']}\n\n    "
                       + json.dumps(record.get("config"), indent=2).replace("\n", "\n    "))
        elif event in ("iteration", "epoch"):
            step = record["iteration"] if event == "iteration" else record["epoch"]
            for k, v in record.items():
                if k not in ("event", "epoch", "iteration"):
                    w.add_scalar(f"{event}/{k}", v, step)
        elif event in ("evaluation", "baseline"):
            prefix = "eval" if event == "evaluation" else "baseline"
            for key, v in _metric_rows(record["metrics"]).items():
                direction, metric = key.split("_", 1)
                w.add_scalar(f"{prefix}/{record['tag']}/{direction}/{metric}", v,
                             record["epoch"])
        w.flush()

    def on_fit_end(self, trainer: Any, metrics: dict[str, Any]) -> None:
        self.writer.close()


def build_loggers(names: Sequence[str], output_dir: str | Path) -> list[Hook]:
    """The loggers named in ``names`` (``run.log``), writing into ``output_dir``."""
    out = Path(output_dir)
    makers = {"jsonl": lambda: JsonlLogger(out / "log.jsonl"),
              "text": lambda: TextLogger(out / "train.log"),
              "csv": lambda: CsvLogger(out / "csv"),
              "tensorboard": lambda: TensorBoardLogger(out / "tensorboard")}
    unknown = [n for n in names if n not in makers]
    if unknown:
        raise ValueError(f"run.log: expected names from {list(makers)}, got {unknown}")
    return [makers[n]() for n in dict.fromkeys(names)]

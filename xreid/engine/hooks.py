"""Hooks of :class:`~xreid.engine.Trainer`: the base class and the run-folder hook.

A hook receives the trainer and explicit values at each point of :meth:`Trainer.fit`; it may
read the trainer's public attributes (``epoch``, ``iteration``, ``epochs``, ``is_main``,
``results``, ``history``, ``config``) and call its public methods (``message``, ``log``,
``save_checkpoint``), never its private state. Order of the calls::

    on_fit_start → [evaluation "before"] → [baselines] → on_train_start
    → per epoch: on_epoch_start → on_iteration ... → on_epoch_end
    → [evaluation "after"] → on_fit_end

``on_evaluation_start`` / ``on_evaluation`` surround every evaluation; ``on_message`` and
``on_log`` carry the trainer's messages and log records; ``on_resume`` follows a checkpoint
load with ``resume=True``. A hook with ``main_process_only = True`` (the default) is called on
rank 0 only; hooks that take part in distributed work (the memory initialisation, the prompt
stages) set it to False. ``state_dict`` / ``load_state_dict`` put a hook's state into the
checkpoint (top-level keys).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["CheckpointHook", "Hook"]


class Hook:
    """Every method a no-op; override what you need."""

    #: called on rank 0 only (False: on every rank)
    main_process_only: bool = True

    def on_fit_start(self, trainer: Any) -> None: ...

    def on_train_start(self, trainer: Any) -> None: ...

    def on_epoch_start(self, trainer: Any, epoch: int, num_iterations: int) -> None: ...

    def on_iteration(self, trainer: Any, epoch: int, iteration: int,
                     logs: dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None: ...

    def on_evaluation_start(self, trainer: Any, tag: str) -> Any:
        """May return a progress callable ``(done, total)`` for the feature extraction."""
        return None

    def on_evaluation(self, trainer: Any, tag: str, result: Any) -> None: ...

    def on_fit_end(self, trainer: Any, metrics: dict[str, Any]) -> None: ...

    def on_message(self, trainer: Any, text: str) -> None: ...

    def on_log(self, trainer: Any, record: dict[str, Any]) -> None: ...

    def on_resume(self, trainer: Any, state: dict[str, Any]) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """Top-level checkpoint entries of this hook (none by default)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Read this hook's entries back from a loaded checkpoint ``state``."""


class CheckpointHook(Hook):
    """The run folder: ``config.json`` at the start, ``checkpoint.pt`` every ``save_every``
    epochs and after the last, ``metrics.json`` at the end. Called on every rank (saving a
    checkpoint waits for all of them); rank 0 writes."""

    main_process_only = False

    def __init__(self, output_dir: str | Path, *, save_every: int = 1) -> None:
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / "checkpoint.pt"
        self.save_every = int(save_every)

    def on_fit_start(self, trainer: Any) -> None:
        if trainer.is_main and trainer.config is not None:
            trainer.config.save(self.output_dir / "config.json")

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        if trainer.epoch % self.save_every == 0 or trainer.epoch == trainer.epochs:
            trainer.save_checkpoint(self.path)

    def on_fit_end(self, trainer: Any, metrics: dict[str, Any]) -> None:
        if trainer.is_main:
            (self.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

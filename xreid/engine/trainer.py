"""The training loop: a :class:`Trainer` that takes built parts and calls hooks.

``Trainer(model, loss, optimizer, scheduler, train_batches, evaluator, hooks, ...)`` trains any
``nn.Module``: each iteration runs ``loss(model, batch)`` (a :class:`StepLoss`, a scalar, or a
mapping with ``"total"``) through :func:`~xreid.engine.objective.optimization_step`, the
scheduler steps once per epoch, and everything else — memory initialisation, prompt stages,
checkpoints, logs, the console — is a hook (:mod:`xreid.engine.hooks`). The library never
prints. :func:`xreid.engine.build_trainer` assembles today's X-ReID run from a
:class:`~xreid.engine.TrainConfig`.

Distributed: with ``distributed=True`` the model is expected DDP-wrapped; rank 0 evaluates and
writes, every rank steps, and BatchNorm buffers are broadcast from rank 0 after each epoch.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xreid._torch_utils import unwrap_model
from xreid.engine.checkpoint import (
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
)
from xreid.engine.evaluation import collect_metrics
from xreid.engine.hooks import CheckpointHook, Hook
from xreid.engine.objective import NonFiniteLossError, optimization_step

__all__ = ["CHECKPOINT_FORMAT", "Trainer", "seed_everything"]

CHECKPOINT_FORMAT = "xreid-train-checkpoint-v1"
"""``"format"`` of every checkpoint :meth:`Trainer.state_dict` writes."""


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and torch's random generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party global users
    torch.manual_seed(seed)


class Trainer:
    """Trains ``model`` with ``loss`` for ``epochs`` epochs of ``train_batches``.

    Args:
        model: the module to train (DDP-wrapped when ``distributed``).
        loss: ``loss(model, batch)`` → :class:`StepLoss`, a scalar tensor, or a mapping of
            terms with ``"total"``.
        optimizer, scheduler: the scheduler (optional) is stepped once per epoch.
        train_batches: ``train_batches(epoch)`` or an iterable of batches; ``len()`` gives the
            iterations of an epoch when it has one.
        evaluator: ``evaluator(model, progress=None)`` → a result with ``to_dict()`` (run on
            rank 0 by :meth:`evaluate`); None: no evaluation.
        val_evaluator: the same on a validation split (tags starting ``"val_"``: ``val_before``,
            ``val_after``; metrics' ``"validation"`` block); None: no validation split.
        hooks: :class:`~xreid.engine.hooks.Hook` instances, called in order.
        epochs: total epochs of :meth:`fit`.
        device, amp, max_grad_norm: where the step runs, ``"none"``/``"bf16"``/``"fp16"``
            (fp16 uses a grad scaler), gradient clipping.
        eval_before: evaluate ``"before"`` when :meth:`fit` starts at epoch 0.
        baselines: ``{name: callable()}`` results computed once at the start of :meth:`fit`
            (rank 0), e.g. the raw-pixel ranking; names starting ``"val_"`` belong to the
            validation split.
        initial_baselines: the same, computed with ``"before"`` (only when :meth:`fit` starts at
            epoch 0), e.g. a pre-trained encoder's own features.
        before_is_baseline: report ``"before"`` as the ``"untrained"`` baseline (False when the
            model starts from pre-trained weights that have their own baseline).
        log_every: iterations between ``"iteration"`` log records.
        config: recorded in checkpoints and metrics (``to_dict()``; e.g. a ``TrainConfig``).
        metadata: extra top-level checkpoint entries (e.g. the model spec).
        resume_check: called with a checkpoint's contents before a resume (may raise).
        rank, world_size, distributed: this process in a DDP job.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Callable[[nn.Module, Any], Any],
        optimizer: torch.optim.Optimizer,
        scheduler: Any = None,
        train_batches: Callable[[int], Iterable[Any]] | Iterable[Any] = (),
        evaluator: Callable[..., Any] | None = None,
        hooks: Sequence[Hook] = (),
        *,
        val_evaluator: Callable[..., Any] | None = None,
        epochs: int = 1,
        device: torch.device | str = "cpu",
        amp: str = "none",
        max_grad_norm: float | None = None,
        eval_before: bool = False,
        baselines: Mapping[str, Callable[[], Any]] | None = None,
        initial_baselines: Mapping[str, Callable[[], Any]] | None = None,
        before_is_baseline: bool = True,
        log_every: int = 1,
        config: Any = None,
        metadata: Mapping[str, Any] | None = None,
        resume_check: Callable[[dict[str, Any]], None] | None = None,
        rank: int = 0,
        world_size: int = 1,
        distributed: bool = False,
    ) -> None:
        self.model, self.loss, self.optimizer, self.scheduler = model, loss, optimizer, scheduler
        self.train_batches, self.evaluator, self.hooks = train_batches, evaluator, list(hooks)
        self.epochs, self.device = int(epochs), torch.device(device)
        self.amp, self.max_grad_norm, self.eval_before = amp, max_grad_norm, eval_before
        self.val_evaluator, self.before_is_baseline = val_evaluator, before_is_baseline
        self.baselines = dict(baselines or {})
        self.initial_baselines = dict(initial_baselines or {})
        self.log_every, self.config, self.metadata = int(log_every), config, dict(metadata or {})
        self.resume_check, self.is_main = resume_check, rank == 0
        self.rank, self.world_size, self.distributed = rank, world_size, distributed
        self.scaler = torch.amp.GradScaler(self.device.type) if amp == "fp16" else None
        self.epoch, self.iteration = 0, 0  # completed epochs, iterations
        self.history: list[dict[str, Any]] = []
        self.results: dict[str, Any] = {}
        self.restored_results: dict[str, Any] = {}  # evaluations of a resumed run, as dicts

    # ----------------------------------------------------------------------------- parts
    @property
    def core(self) -> nn.Module:
        """The model without its DDP wrapper."""
        return unwrap_model(self.model)

    def find_hook(self, cls: type) -> Any:
        """The first hook that is an instance of ``cls`` (None if there is none)."""
        return next((h for h in self.hooks if isinstance(h, cls)), None)

    def _call(self, event: str, *args: Any) -> list[Any]:
        return [getattr(h, event)(self, *args) for h in self.hooks
                if self.is_main or not h.main_process_only]

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def message(self, text: str) -> None:
        """Pass ``text`` to the hooks (rank 0)."""
        if self.is_main:
            self._call("on_message", text)

    def log(self, record: dict[str, Any]) -> None:
        """Pass a log record to the hooks (rank 0); ``"epoch"`` records join ``history``."""
        if not self.is_main:
            return
        if record.get("event") == "epoch":
            self.history.append(record)
        self._call("on_log", record)

    def iterations_per_epoch(self) -> int | None:
        batches = self.train_batches
        return len(batches) if hasattr(batches, "__len__") else None  # type: ignore[arg-type]

    def epoch_batches(self, epoch: int) -> Iterable[Any]:
        """The batches of the 0-based ``epoch``."""
        batches = self.train_batches
        return batches(epoch) if callable(batches) else batches

    # ------------------------------------------------------------------------ evaluation
    def evaluate(self, tag: str = "eval") -> Any:
        """Run the evaluator (the validation one for a tag starting ``"val_"``; rank 0, other
        ranks return None) and record the result."""
        result = None
        evaluator = self.val_evaluator if tag.startswith("val_") else self.evaluator
        if tag.startswith("val_") and evaluator is None:
            raise ValueError(f"tag: {tag!r} needs a validation split, this trainer has none")
        if self.is_main and evaluator is not None:
            progress = next((p for p in self._call("on_evaluation_start", tag) if p), None)
            result = evaluator(self.core, progress=progress)
            self.results[tag] = result
            self._call("on_evaluation", tag, result)
            self.log({"event": "evaluation", "tag": tag, "epoch": self.epoch,
                      "metrics": result.to_dict()})
        self.barrier()
        return result

    def _baselines(self, baselines: Mapping[str, Callable[[], Any]]) -> None:
        for name, compute in baselines.items():
            if self.is_main and name not in self.results and name not in self.restored_results:
                result = compute()
                self.results[name] = result
                self._call("on_evaluation", name, result)
                self.log({"event": "baseline", "tag": name, "epoch": self.epoch,
                          "metrics": result.to_dict()})

    def metrics(self) -> dict[str, Any]:
        """``{"before", "after", "eval", "baselines", "validation", "config"}`` of the
        evaluations run; ``baselines`` holds ``untrained`` (= ``before``, unless
        ``before_is_baseline`` is False) and every baseline result; ``validation`` the same
        of the validation split (tags and baselines starting ``"val_"``), when any."""
        names = (*self.baselines, *self.initial_baselines)
        out = collect_metrics({**self.restored_results,
                               **{k: v.to_dict() for k, v in self.results.items()}},
                              names, before_is_baseline=self.before_is_baseline)
        out["config"] = self.config.to_dict() if self.config is not None else None
        return out

    # ----------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs: weights, optimiser, schedule, counters, RNG, hooks."""
        state: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "model": self.core.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch,
            "iteration": self.iteration,
            "history": self.history,
            "results": {**self.restored_results,
                        **{k: v.to_dict() for k, v in self.results.items()}},
            "config": self.config.to_dict() if self.config is not None else None,
            "rng": capture_rng_state(),
            "world_size": self.world_size,
            **self.metadata,
        }
        for hook in self.hooks:
            state.update(hook.state_dict())
        return state

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write :meth:`state_dict` atomically (rank 0; every rank waits); by default to the
        :class:`~xreid.engine.hooks.CheckpointHook`'s ``checkpoint.pt``."""
        if path is None:
            hook = self.find_hook(CheckpointHook)
            if hook is None:
                raise ValueError("path: expected a checkpoint path (this trainer has no "
                                 "CheckpointHook to name one)")
            path = hook.path
        path = Path(path)
        if self.is_main:
            atomic_save(self.state_dict(), path)
        self.barrier()
        return path

    def load_checkpoint(self, path: str | Path, *, resume: bool = True) -> dict[str, Any]:
        """Load the weights (and with ``resume`` the optimiser, schedule, counters and RNG)."""
        state = load_checkpoint(path, map_location=self.device)
        if resume and self.resume_check is not None:
            self.resume_check(state)
        model_state = self.core.state_dict()
        mismatched = [f"{k} {tuple(v.shape)} vs {tuple(model_state[k].shape)}"
                      for k, v in state["model"].items()
                      if isinstance(v, torch.Tensor) and k in model_state
                      and tuple(v.shape) != tuple(model_state[k].shape)]
        if mismatched:
            raise ValueError(
                f"checkpoint: {path} does not match this model (another architecture or size?); "
                f"shape of checkpoint vs model: {mismatched[:5]} (check the model section and "
                "data.img_size)")
        missing, unexpected = self.core.load_state_dict(state["model"], strict=False)
        if missing or unexpected:
            raise ValueError(
                f"checkpoint: {path} does not match this model; missing keys {missing[:10]}, "
                f"unexpected keys {unexpected[:10]} (check the model section and data.img_size)")
        for hook in self.hooks:
            hook.load_state_dict(state)
        if resume:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            if self.scaler is not None and state.get("scaler") is not None:
                self.scaler.load_state_dict(state["scaler"])
            self.epoch, self.iteration = int(state["epoch"]), int(state["iteration"])
            self.history = list(state.get("history", []))
            self.restored_results = dict(state.get("results", {}))
            restore_rng_state(state["rng"])
            self._call("on_resume", state)
        return state

    # ------------------------------------------------------------------------------ fit
    def fit(self) -> dict[str, Any]:
        """Train until ``epochs`` (from the current epoch on) and return :meth:`metrics`."""
        self._call("on_fit_start")
        self.log({"event": "run", "world_size": self.world_size,
                  "config": self.config.to_dict() if self.config is not None else None})
        if self.eval_before and self.epoch == 0 and "before" not in self.results:
            for tag in ("before", "val_before") if self.val_evaluator else ("before",):
                self.evaluate(tag)
            self._baselines(self.initial_baselines)
        self._baselines(self.baselines)
        self._call("on_train_start")
        while self.epoch < self.epochs:
            self._train_epoch(self.epoch)
        if self.val_evaluator is not None:
            self.evaluate("val_after")
        self.evaluate("after")
        metrics = self.metrics()
        self._call("on_fit_end", metrics)
        return metrics

    def _train_epoch(self, epoch: int) -> None:
        self._call("on_epoch_start", epoch, self.iterations_per_epoch() or 0)
        sums: dict[str, float] = {}
        count = 0
        for i, batch in enumerate(self.epoch_batches(epoch)):
            try:
                logs = optimization_step(self.model, self.loss, batch, self.optimizer,
                                         device=self.device, amp=self.amp, scaler=self.scaler,
                                         max_grad_norm=self.max_grad_norm)
            except NonFiniteLossError as exc:
                raise NonFiniteLossError(
                    f"non-finite loss at epoch {epoch + 1}, iteration {i + 1} (global iteration "
                    f"{self.iteration + 1}): {exc.terms}; nothing was updated in this step and "
                    "the last checkpoint is intact (lower the learning rate, set a gradient "
                    "norm limit or use bf16 instead of fp16)", exc.terms) from None
            self.iteration += 1
            count += 1
            logs["lr"] = self.optimizer.param_groups[0]["lr"]
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            if self.iteration % self.log_every == 0:
                self.log({"event": "iteration", "epoch": epoch + 1, "iteration": self.iteration,
                          **logs})
            if self.is_main:
                self._call("on_iteration", epoch, i, logs)
        if self.scheduler is not None:
            self.scheduler.step()
        self._sync_buffers()
        self.epoch += 1
        means = {k: v / max(1, count) for k, v in sums.items()}
        self.log({"event": "epoch", "epoch": self.epoch, **means})
        self._call("on_epoch_end", epoch, means)

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's BatchNorm running statistics (DDP broadcasts them only at
        the start of a forward). A memory with its own all-gather is left alone."""
        if not self.distributed:
            return
        memory = getattr(self.core, "memory", None)
        memory_buffers = {id(b) for b in memory.buffers()} if memory is not None else set()
        for buf in self.core.buffers():
            if id(buf) not in memory_buffers:
                torch.distributed.broadcast(buf, src=0)

    def close(self) -> None:
        """Leave the process group (DDP), releasing the DDP wrapper (its reducer) first."""
        if self.distributed and torch.distributed.is_initialized():
            self.model = self.core  # no reducer work may outlive the group: aborts at exit
            gc.collect()
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()

"""A training run's folder: one run at a time, resumed where its checkpoint is, pictures safe.

* :func:`acquire_run_lock` takes ``<folder>/.xreid-lock``, created with ``O_CREAT | O_EXCL``
  and holding ``{"pid", "host", "started"}``, for the whole run; a second run into the same
  folder is refused naming the folder and the holder. A lock whose process is gone (same
  host, no such pid) is *stale*: it is reported, and cleared when the caller passes
  ``break_stale=True`` (``--overwrite`` / ``--resume``). :meth:`RunLock.release` removes it.
* :func:`resume_output_dir`: a resumed run continues in ``--output-dir`` when given, else in
  the folder that holds the checkpoint — never in the folder recorded inside the checkpoint —
  and is refused when that folder holds another, newer ``checkpoint.pt``.
* :func:`check_run_pictures`: in a folder that holds no run, a picture the run would write
  (``cmc.png``, ...) that xreid did not draw is the user's: refused unless ``overwrite``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xreid.output_files import OutputRefused, is_xreid_png, pid_alive, same_file

__all__ = [
    "LOCK_NAME",
    "RUN_PICTURES",
    "RunLock",
    "RunLocked",
    "acquire_run_lock",
    "check_run_pictures",
    "resume_output_dir",
]

LOCK_NAME = ".xreid-lock"
#: pictures a training run writes into its folder
RUN_PICTURES = ("cmc.png", "training_curve.png", "tsne_before.png", "tsne_after.png",
                "ranked_i2v.png", "ranked_v2i.png")


class RunLocked(OutputRefused):
    """The run folder is in use by another process (or holds a stale lock)."""


@dataclass
class RunLock:
    """A held run-folder lock; :meth:`release` (or leaving the ``with`` block) removes it."""

    path: Path
    pid: int
    stale_cleared: dict[str, Any] | None = None

    def release(self) -> None:
        holder = _read_holder(self.path)
        if holder is not None and holder.get("pid") == self.pid and (
                holder.get("host") == socket.gethostname()):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    return f"process {holder.get('pid', '?')} on host {holder.get('host', '?')}"


def acquire_run_lock(folder: str | Path, *, break_stale: bool = False) -> RunLock:
    """Take the exclusive lock of run ``folder`` (created if needed) for this process.

    Raises:
        RunLocked: the folder is in use by a live process (or one on another host), or holds
            a stale lock and ``break_stale`` is false; the message names the folder and the
            holder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    cleared = None
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_holder(path)
            if holder is None:  # released in between: try again
                continue
            pid = holder.get("pid")
            stale = (holder.get("host") == me["host"] and isinstance(pid, int)
                     and not pid_alive(pid))
            if not stale:
                raise RunLocked(
                    f"--output-dir {folder} is in use by {_describe(holder)} (lock file "
                    f"{path}); wait for that run to finish or choose another --output-dir"
                ) from None
            if not break_stale:
                raise RunLocked(
                    f"--output-dir {folder} holds a stale lock of {_describe(holder)}, which "
                    f"is no longer running ({path}); pass --resume to continue that run or "
                    "--overwrite to replace it"
                ) from None
            path.unlink(missing_ok=True)
            cleared = holder
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(me) + "\n")
        return RunLock(path, me["pid"], cleared)
    raise RunLocked(f"--output-dir {folder}: could not take the lock {path}; try again")


def _progress(state: dict[str, Any]) -> tuple[int, int]:
    return int(state.get("epoch", 0) or 0), int(state.get("iteration", 0) or 0)


def resume_output_dir(checkpoint: str | Path, *, output_dir: str | Path | None = None,
                      overwrite: bool = False) -> Path:
    """The folder a run resumed from ``checkpoint`` continues in.

    ``output_dir`` when given, else the folder holding ``checkpoint``. Refused (``ValueError``
    naming both files) when that folder's ``checkpoint.pt`` is another file than
    ``checkpoint`` and further trained (epoch, iteration), unless ``overwrite``.
    """
    from xreid.engine.checkpoint import load_checkpoint

    checkpoint = Path(checkpoint)
    target = Path(output_dir) if output_dir is not None else checkpoint.parent
    existing = target / "checkpoint.pt"
    if existing.exists() and not same_file(existing, checkpoint) and not overwrite:
        theirs = _progress(load_checkpoint(existing))
        ours = _progress(load_checkpoint(checkpoint))
        if theirs > ours:
            raise OutputRefused(
                f"--resume {checkpoint}: {target} holds another run's newer checkpoint "
                f"({existing}, epoch {theirs[0]}, iteration {theirs[1]}; the given one is at "
                f"epoch {ours[0]}, iteration {ours[1]}); pass another --output-dir, or "
                "--overwrite to replace it"
            )
    return target


def check_run_pictures(folder: str | Path, *, run_files: Iterable[str],
                       overwrite: bool = False, names: Iterable[str] = RUN_PICTURES) -> None:
    """Refuse a run into ``folder`` (holding none of ``run_files``) when one of the pictures
    it would write exists and was not drawn by xreid, unless ``overwrite``."""
    folder = Path(folder)
    if overwrite or not folder.is_dir() or any((folder / n).exists() for n in run_files):
        return
    theirs = [n for n in names if (folder / n).exists() and not is_xreid_png(folder / n)]
    if theirs:
        raise OutputRefused(
            f"--output-dir {folder} holds {', '.join(theirs)}, not written by xreid; the run "
            "would replace them: pass --overwrite or another --output-dir"
        )

"""Where evaluation output goes, and exactly which files a command wrote.

* :func:`eval_output_dir`: a fresh folder for an evaluation of a finished run, so that it
  never replaces the run's own files: ``--output-dir`` when given and it holds no run (none
  of :data:`RUN_FILES`), else ``<that folder or the run folder>/eval-<YYYYmmdd-HHMMSS>/``
  (``-2``, ``-3``, ... appended when taken).
* :func:`snapshot_files` / :func:`written_files`: the files under a folder that a command
  created or changed (by size, modification time and inode), so that its closing
  ``wrote ...`` line lists exactly those and nothing it did not write.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

__all__ = ["RUN_FILES", "eval_output_dir", "format_written", "snapshot_files", "written_files"]

#: files that mark a folder as a training run's
RUN_FILES = ("checkpoint.pt", "config.json", "metrics.json", "log.jsonl")

Snapshot = dict[str, tuple[int, int, int]]


def eval_output_dir(run_dir: str | Path, output_dir: str | Path | None = None, *,
                    now: _dt.datetime | None = None) -> Path:
    """Create and return the folder an evaluation writes into (see the module)."""
    if output_dir is not None:
        out = Path(output_dir)
        if not any((out / name).exists() for name in RUN_FILES):
            out.mkdir(parents=True, exist_ok=True)
            return out
        run_dir = out
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = Path(run_dir) / f"eval-{stamp}"
    out, n = base, 1
    while True:
        try:
            out.mkdir(parents=True, exist_ok=False)
            return out
        except FileExistsError:
            n += 1
            out = base.with_name(f"{base.name}-{n}")


def snapshot_files(folder: str | Path) -> Snapshot:
    """``{relative path: (size, mtime_ns, inode)}`` of every file under ``folder`` (empty
    when it does not exist)."""
    folder = Path(folder)
    out: Snapshot = {}
    if not folder.is_dir():
        return out
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            p = Path(dirpath) / name
            try:
                st = p.stat()
            except OSError:
                continue
            out[p.relative_to(folder).as_posix()] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def written_files(folder: str | Path, before: Snapshot) -> list[Path]:
    """The files under ``folder`` created or changed since ``before``, sorted."""
    after = snapshot_files(folder)
    return [Path(folder) / rel for rel in sorted(after) if before.get(rel) != after[rel]]


def format_written(folder: str | Path, files: list[Path]) -> str:
    """``"wrote FOLDER/: a, b, c"`` (paths relative to ``folder``), or a line saying none."""
    if not files:
        return f"wrote nothing into {folder}"
    names = ", ".join(Path(f).relative_to(folder).as_posix() for f in files)
    return f"wrote {Path(folder)}/: {names}"

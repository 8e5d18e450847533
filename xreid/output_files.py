"""Output files: written whole or not at all, never over an input, never over a user's file.

Every command that writes a file goes through this module:

* :func:`check_output` refuses an output path that is one of the command's inputs (the same
  file by ``os.path.samefile``, or the same resolved path), and an existing file that the
  command did not write (``is_ours(path)`` says which are ours) unless ``overwrite=True``;
* :func:`atomic_write` writes through a temporary file ``.<name>.<pid>.<random>.tmp`` in the
  output's folder, fsyncs it, gives it the usual permissions (``0o666`` minus the umask) and
  renames it over the output: a crash leaves the old file or the new one, never half a file.
  Each write first deletes the temporaries of the same output left by a process that no
  longer runs (a killed write); :func:`remove_stale_temporaries` deletes every temporary of a
  folder (a run folder, under its lock);
* :func:`png_metadata` / :func:`is_xreid_png` mark and recognise the pictures xreid draws.
"""

from __future__ import annotations

import errno
import glob
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "PNG_SOFTWARE",
    "OutputRefused",
    "atomic_write",
    "check_output",
    "current_umask",
    "is_xreid_png",
    "pid_alive",
    "png_metadata",
    "remove_stale_temporaries",
    "same_file",
]

#: the PNG ``Software`` text of every picture xreid writes
PNG_SOFTWARE = "xreid"

#: torch's own wording for a failed write inside its zip writer (disk full, quota, I/O error)
_WRITE_FAILURES = ("PytorchStreamWriter", "file write failed", "inline_container")


class OutputRefused(ValueError):
    """An output path that would replace an input or a file the command did not write
    (command-line tools exit with status 2 for it, as for any bad command line)."""


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name the same file (hard links and symlinks included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: compare the resolved paths
        return Path(a).resolve() == Path(b).resolve()


def check_output(path: str | Path, *, inputs: Iterable[str | Path] = (),
                 overwrite: bool = False, is_ours: Callable[[Path], bool] | None = None,
                 what: str = "--output") -> Path:
    """Refuse an output that is one of ``inputs`` or an existing file we did not write.

    Raises:
        OutputRefused: (a ``ValueError``) one line naming ``what``, the file and the reason.
            Being one of the
            inputs is refused even with ``overwrite``; an existing file is replaced only when
            ``is_ours(path)`` is true or ``overwrite`` is set.
    """
    path = Path(path)
    for src in inputs:
        if same_file(path, src):
            raise OutputRefused(f"{what}: {path} is one of the inputs ({src}); "
                             "choose another output file")
    if path.is_dir():
        raise OutputRefused(f"{what}: {path} is a folder; expected a file name")
    if (path.exists() or path.is_symlink()) and not overwrite:
        if is_ours is None or not is_ours(path):
            raise OutputRefused(f"{what}: {path} already exists and was not written by this "
                             "command; pass --overwrite to replace it, or choose another file")
    return path


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_dead_temporaries(path: Path) -> None:
    """Delete ``.<name>.<pid>.*.tmp`` next to ``path`` whose process ``pid`` is gone."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and tmp.is_file() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def current_umask() -> int:
    """The process umask (read without changing it for longer than two system calls)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], *,
                 what: str = "checkpoint") -> Path:
    """Call ``write(fh)`` on a temporary file in ``path``'s folder, fsync, rename over ``path``.

    A crash at any point leaves either the old file or the new one, never a truncated file.
    The file gets the usual permissions (``0o666`` minus the umask). A failed write (disk full,
    read-only folder) raises ``OSError`` naming ``path`` (never the temporary) and saying
    whether a previous file is intact; ``what`` starts the message.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_temporaries(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                   dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, f"{what}: cannot write {path} ({exc.strerror or exc}); "
                      "nothing was changed") from exc
    recorder = _RecordingFile()
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as fh:
            recorder.fh = fh
            write(recorder)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        full = _disk_full(path)  # before the temporary is removed
        if os.path.exists(tmp):
            os.unlink(tmp)
        cause = recorder.error if recorder.error is not None else exc
        failed_write = isinstance(cause, OSError) or (
            isinstance(cause, RuntimeError) and any(w in str(cause) for w in _WRITE_FAILURES)
        )
        if failed_write:
            code = getattr(cause, "errno", None) or errno.EIO
            reason = getattr(cause, "strerror", None) or str(cause).splitlines()[0]
            if code == errno.ENOSPC or (not isinstance(cause, OSError) and full):
                code, reason = errno.ENOSPC, os.strerror(errno.ENOSPC)
            elif not isinstance(cause, OSError):  # torch's zip writer: no OS reason given
                reason = "the write failed"
            previous = (f"the previous {path.name} is intact" if path.exists()
                        else f"no previous {path.name} existed")
            raise OSError(code, f"{what}: could not write {path} ({reason}); "
                          f"{previous}") from exc
        raise
    return path


class _RecordingFile:
    """A binary file that remembers the ``OSError`` of a failed write (torch's zip writer
    replaces it by its own ``unexpected pos`` message)."""

    def __init__(self) -> None:
        self.fh: BinaryIO | None = None
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.fh.write(data)  # type: ignore[union-attr]
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name: str) -> object:
        return getattr(self.fh, name)


def _disk_full(path: Path) -> bool:
    """Whether the file system of ``path`` has (almost) no space left (torch's zip writer
    reports a full disk as ``unexpected pos``)."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete ``.<name>.*.tmp`` files left in ``folder`` by a killed :func:`atomic_write`."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def png_metadata() -> dict[str, str]:
    """The PNG text chunks that mark a picture as xreid's (matplotlib ``savefig(metadata=)``)."""
    return {"Software": PNG_SOFTWARE}


def save_figure_png(fig: Any, path: str | Path, *, dpi: int) -> Path:
    """Write a matplotlib figure as an xreid-marked PNG, atomically (the figure stays open)."""
    return atomic_write(path, lambda fh: fig.savefig(fh, dpi=dpi, format="png",
                                                     metadata=png_metadata()), what="output")


def is_xreid_png(path: str | Path) -> bool:
    """Whether ``path`` is a PNG that xreid wrote (its ``Software`` text is ``xreid``)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.format == "PNG" and getattr(im, "text", {}).get("Software") == PNG_SOFTWARE
    except Exception:
        return False

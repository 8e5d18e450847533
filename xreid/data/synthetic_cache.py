"""The trainer's synthetic dataset folder: made once per set of parameters, never deleted.

A synthetic dataset is generated into ``<root>.tmp-<pid>/`` and renamed to ``root`` only
when complete, with ``root/.xreid-complete`` holding its parameters and the generator
version (the *stamp*). Rules:

* without ``--root``, the folder name holds every parameter and the generator version
  (:func:`synthetic_folder_name`), so other parameters get their own folder;
* a ``root`` whose stamp differs from the one asked for is refused, naming both: another job
  may be reading it, and files in it may be the user's — nothing in it is deleted;
* a non-empty ``root`` without a stamp is refused (not a synthetic dataset of ours);
* two processes generating the same dataset at once: the first rename wins, the other
  discards its own temporary and uses the winner's folder;
* ``<root>.tmp-<pid>/`` folders of processes that no longer run are removed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from xreid.output_files import pid_alive

__all__ = [
    "MARKER",
    "prepare_synthetic_root",
    "remove_stale_dataset_temporaries",
    "synthetic_folder_name",
    "synthetic_stamp",
]

MARKER = ".xreid-complete"


def synthetic_stamp(params: dict[str, Any]) -> str:
    """The stamp of a dataset made with ``params`` by this generator version."""
    from xreid.data.synthetic import GENERATOR_VERSION

    return json.dumps({**params, "generator_version": GENERATOR_VERSION}, sort_keys=True)


def synthetic_folder_name(params: dict[str, Any]) -> str:
    """The default folder name of a dataset made with ``params``: one folder per set."""
    from xreid.data.synthetic import GENERATOR_VERSION

    name = f"synthetic-hitsz-vcm-seed{params.get('seed', 0)}"
    if "num_train_ids" in params or "num_test_ids" in params:
        name += f"-ids{params.get('num_train_ids')}-{params.get('num_test_ids')}"
    return name + f"-v{GENERATOR_VERSION}"


def remove_stale_dataset_temporaries(root: Path) -> list[Path]:
    """Delete ``<root>.tmp-<pid>/`` folders whose process is gone (a killed generation)."""
    removed = []
    if root.parent.is_dir():
        for tmp in root.parent.glob(root.name + ".tmp-*"):
            pid = tmp.name.rsplit(".tmp-", 1)[1]
            if pid.isdigit() and tmp.is_dir() and not pid_alive(int(pid)):
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp)
    return removed


def _recorded(root: Path) -> str | None:
    try:
        return (root / MARKER).read_text().strip()
    except OSError:
        return None


def prepare_synthetic_root(root: str | Path, params: dict[str, Any]) -> Path:
    """Make sure ``root`` holds the synthetic dataset of ``params`` (generate it if absent).

    Raises:
        ValueError: ``root`` holds a synthetic dataset of other parameters (or another
            generator version), or files that are not a synthetic dataset; the message names
            the folder and both parameter sets. Nothing is deleted.
    """
    from xreid.data.synthetic import make_synthetic_hitsz_vcm

    root = Path(root)
    stamp = synthetic_stamp(params)
    recorded = _recorded(root)
    if recorded == stamp:
        return root
    if recorded is not None:
        raise ValueError(
            f"root: {root} holds a synthetic dataset made with {recorded}, not the one asked "
            f"for ({stamp}); it is left as it is (another job may be using it): pass another "
            "--root, or leave --root out (each set of parameters then gets its own folder)"
        )
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(
            f"root: {root} exists and is not an xreid synthetic dataset (no {MARKER}); "
            "refusing to write into it — pass an empty or new folder"
        )
    remove_stale_dataset_temporaries(root)
    tmp = root.with_name(root.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # our own pid: a leftover of this process
    make_synthetic_hitsz_vcm(tmp, **params)
    (tmp / MARKER).write_text(stamp + "\n")
    try:
        os.replace(tmp, root)  # onto a missing or empty folder only
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if _recorded(root) != stamp:  # not the same dataset, made meanwhile by another job
            raise ValueError(f"root: could not put the generated dataset at {root} "
                             f"({exc.strerror or exc}); nothing in it was changed") from exc
    return root

"""Building the dataset reader of a training run (``DataConfig``), with the synthetic
dataset generated once into a keyed, cached folder.

The synthetic data is written into a temporary sibling ``<root>.tmp-<pid>/`` and renamed when
complete, with a ``.xreid-complete`` marker holding the generator's parameters; a folder that
holds other files is never overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import xreid.data.synthetic as synthetic
from xreid.data.bupt_campus import BUPTCampus
from xreid.data.config import DataConfig
from xreid.data.hitsz_vcm import HITSZVCM

__all__ = ["build_reader", "remove_stale_dataset_temporaries", "synthetic_root"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else (or cannot tell): leave it alone
    return True


def remove_stale_dataset_temporaries(root: Path) -> list[Path]:
    """Delete ``<root>.tmp-<pid>/`` folders whose process is gone (a killed generation)."""
    removed = []
    if root.parent.is_dir():
        for tmp in root.parent.glob(root.name + ".tmp-*"):
            pid = tmp.name.rsplit(".tmp-", 1)[1]
            if pid.isdigit() and tmp.is_dir() and not _pid_alive(int(pid)):
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp)
    return removed


def synthetic_root(cfg: DataConfig, output_dir: str | Path = ".") -> Path:
    """Where the synthetic dataset lives: ``cfg.root``, else
    ``<output_dir>/../data/synthetic-hitsz-vcm-seed<S>[-ids<train>-<test>]``."""
    name = f"synthetic-hitsz-vcm-seed{cfg.synthetic_seed}"
    if cfg.synthetic_train_ids is not None or cfg.synthetic_test_ids is not None:
        name += f"-ids{cfg.synthetic_train_ids}-{cfg.synthetic_test_ids}"
    return Path(cfg.root or Path(output_dir).parent / "data" / name)


def build_reader(cfg: DataConfig, output_dir: str | Path = ".") -> Any:
    """The dataset reader of ``cfg``; the synthetic dataset is generated once and cached
    (under ``cfg.root``, else ``<output_dir>/../data/<name>``)."""

    # min_len None: each reader's own default (HITSZ-VCM 12 as every published loader,
    # BUPTCampus 1 as the dataset authors' loader)
    lengths = {} if cfg.min_len is None else {"min_len": cfg.min_len}
    if cfg.dataset == "hitsz-vcm":
        return HITSZVCM(cfg.root, **lengths)
    if cfg.dataset == "bupt-campus":
        return BUPTCampus(cfg.root, **lengths)
    if cfg.dataset == "folder":
        from xreid.data.folder import FolderVVI

        return FolderVVI(cfg.root)
    root = synthetic_root(cfg, output_dir)
    sizes = {"num_train_ids": cfg.synthetic_train_ids, "num_test_ids": cfg.synthetic_test_ids}
    params = {"seed": cfg.synthetic_seed, **{k: v for k, v in sizes.items() if v is not None}}
    marker = root / ".xreid-complete"
    stamp = json.dumps({**params, "generator_version": synthetic.GENERATOR_VERSION}, sort_keys=True)
    if not marker.exists() or marker.read_text().strip() != stamp:
        if root.exists() and any(root.iterdir()) and not marker.exists():
            raise ValueError(
                f"root: {root} exists and is not an xreid synthetic dataset (no "
                f"{marker.name}); refusing to overwrite it — pass an empty or new folder"
            )
        # generate into a temporary sibling, then rename: a crash never leaves half a dataset
        remove_stale_dataset_temporaries(root)
        tmp = root.with_name(root.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        synthetic.make_synthetic_hitsz_vcm(tmp, **params)
        (tmp / ".xreid-complete").write_text(stamp + "\n")
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
    return HITSZVCM(root, **lengths)

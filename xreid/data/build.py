"""Building the dataset reader of a training run (``DataConfig``), with the synthetic
dataset generated once into a keyed, cached folder.

The synthetic data is generated once per set of parameters into a keyed folder
(:mod:`xreid.data.synthetic_cache`: a temporary sibling renamed when complete, a marker with
the parameters and the generator version; a folder of other parameters or other files is
refused, nothing in it deleted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xreid.data.bupt_campus import BUPTCampus
from xreid.data.config import SYNTHETIC_TRAIN_IDS, DataConfig, validation_ids
from xreid.data.hitsz_vcm import HITSZVCM
from xreid.data.synthetic_cache import prepare_synthetic_root, synthetic_folder_name

__all__ = ["build_reader", "build_readers", "synthetic_root", "validation_ids"]


def _synthetic_params(cfg: DataConfig) -> dict[str, Any]:
    """The generator's parameters; held-out validation identities come on top of the
    training ones."""
    train_ids = cfg.synthetic_train_ids
    val = validation_ids(cfg)
    if val:
        train_ids = (train_ids or SYNTHETIC_TRAIN_IDS) + val
    sizes = {"num_train_ids": train_ids, "num_test_ids": cfg.synthetic_test_ids}
    return {"seed": cfg.synthetic_seed, **{k: v for k, v in sizes.items() if v is not None}}


def synthetic_root(cfg: DataConfig, output_dir: str | Path = ".") -> Path:
    """Where the synthetic dataset lives: ``cfg.root``, else
    ``<output_dir>/../data/<synthetic_folder_name(...)>`` (one folder per set of parameters
    and generator version; the validation identities, :func:`validation_ids`, are generated on
    top of the training ones and so are part of the parameters)."""
    name = synthetic_folder_name(_synthetic_params(cfg))
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
    prepare_synthetic_root(root, _synthetic_params(cfg))  # other parameters: refused
    return HITSZVCM(root, **lengths)


def build_readers(cfg: DataConfig, output_dir: str | Path = ".") -> tuple[Any, Any | None]:
    """(training reader, validation reader or None): :func:`build_reader`, then
    :func:`xreid.data.validation.hold_out_identities` (split seed 0, the same for every
    training seed) when :func:`validation_ids` is positive. The training reader keeps the
    dataset's own test split."""
    reader = build_reader(cfg, output_dir)
    n = validation_ids(cfg)
    if not n:
        return reader, None
    from xreid.data.validation import hold_out_identities

    return hold_out_identities(reader, n, seed=0)

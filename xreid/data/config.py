"""The ``data`` section of a training configuration: dataset, clip shape, batch, augmentation.

:class:`DataConfig` is validated here against the data package's own constants
(:data:`DATASET_NAMES`, :data:`~xreid.data.NORMALIZATIONS`,
:data:`~xreid.data.SAMPLING_MODES`). Sizes are (height, width).
"""

from __future__ import annotations

from dataclasses import dataclass

from xreid._config import check_choice, check_field_types, check_range, option
from xreid.data.sampling import SAMPLING_MODES
from xreid.data.transforms import NORMALIZATIONS

__all__ = ["DATASET_NAMES", "SYNTHETIC_TRAIN_IDS", "SYNTHETIC_VAL_IDS", "DataConfig",
           "validation_ids"]

DATASET_NAMES: tuple[str, ...] = ("synthetic", "hitsz-vcm", "bupt-campus", "folder")
"""Dataset readers a training run can use (``folder``: own data, :class:`xreid.data.FolderVVI`)."""

SYNTHETIC_TRAIN_IDS = 64
"""``make_synthetic_hitsz_vcm``'s default number of training identities."""
SYNTHETIC_VAL_IDS = 24
"""The synthetic dataset's default number of held-out validation identities."""


@dataclass
class DataConfig:
    """Which dataset, how clips are cut, batched and augmented, and how the test split is read.

    Attributes:
        dataset: dataset reader: synthetic (generated offline), hitsz-vcm, bupt-campus or
            folder (own data).
        root: dataset folder (synthetic: where to generate/cache it; default: next to the
            output folder).
        synthetic_seed: seed of the synthetic dataset generator.
        synthetic_train_ids: synthetic training identities (default: the generator's).
        synthetic_test_ids: synthetic test identities (default: the generator's).
        val_ids: training identities held out as a validation split shaped like the test
            protocol (default: 24 for the synthetic dataset, generated in addition to its
            training identities; 0, i.e. none, for the others); choose options on it, not on
            test.
        min_len: drop tracklets shorter than this (default: the dataset's, HITSZ-VCM 12,
            BUPTCampus 1).
        img_size: input height and width.
        num_frames: frames per clip T.
        ids_per_batch: identities per batch P.
        clips_per_modality: clips per identity and modality K.
        normalization: input normalisation statistics: imagenet | clip.
        flip_p: probability of a horizontal flip of a training clip.
        pad: pixels of zero padding before the random crop (0: no crop).
        erasing_p: probability of random erasing of a training clip.
        num_workers: data loader worker processes.
        use_cameras: camera embedding (SIE) on the [CLS] token.
        eval_batch_size: tracklets per evaluation batch.
        eval_sampling: evaluation frames: chunk_first | uniform | dense | restricted_random.
    """

    dataset: str = "synthetic"
    root: str | None = option(None, resumable=True)
    synthetic_seed: int = 0
    synthetic_train_ids: int | None = None
    synthetic_test_ids: int | None = None
    val_ids: int | None = None
    min_len: int | None = None
    img_size: tuple[int, int] = (64, 32)
    num_frames: int = 4
    ids_per_batch: int = 8
    clips_per_modality: int = 2
    normalization: str = "imagenet"
    flip_p: float = 0.5
    pad: int = 4
    erasing_p: float = 0.5
    num_workers: int = option(0, resumable=True)
    use_cameras: bool = False
    eval_batch_size: int = option(16, resumable=True)
    eval_sampling: str = option("chunk_first", resumable=True)

    def validate(self) -> None:
        """``ValueError`` naming the first invalid option."""
        check_field_types(self)
        check_choice("dataset", self.dataset, DATASET_NAMES)
        check_choice("normalization", self.normalization, NORMALIZATIONS)
        check_choice("eval_sampling", self.eval_sampling, SAMPLING_MODES)
        if self.root is not None and not self.root:
            raise ValueError("root: expected a folder path or None, got ''")
        if self.dataset != "synthetic" and not self.root:
            raise ValueError(f"root: expected the dataset folder for dataset {self.dataset!r}, "
                             "got none")
        if min(self.img_size) < 1:
            raise ValueError(f"img_size: expected (height, width) >= 1, got {self.img_size}")
        for name in ("num_frames", "ids_per_batch", "clips_per_modality", "eval_batch_size"):
            check_range(name, getattr(self, name), 1)
        for name in ("synthetic_seed", "pad", "num_workers"):
            check_range(name, getattr(self, name), 0)
        for name in ("synthetic_train_ids", "synthetic_test_ids", "min_len"):
            check_range(name, getattr(self, name), 1, allow_none=True)
        check_range("val_ids", self.val_ids, 0, allow_none=True)  # None: the dataset's default
        for name in ("flip_p", "erasing_p"):
            check_range(name, getattr(self, name), 0.0, 1.0)


def validation_ids(cfg: DataConfig) -> int:
    """``cfg.val_ids``, or its default: 24 for the synthetic dataset, 0 for the others."""
    if cfg.val_ids is not None:
        return cfg.val_ids
    return SYNTHETIC_VAL_IDS if cfg.dataset == "synthetic" else 0

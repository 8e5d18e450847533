"""Data: dataset readers, synthetic datasets, frame sampling, clip transforms, samplers.

Readers of the real on-disk layouts (``docs/datasets.md``):
:class:`HITSZVCM` and :class:`BUPTCampus` give :class:`Tracklet` lists for training and for the
query/gallery of each direction (``"i2v"``, ``"v2i"``). :func:`make_synthetic_hitsz_vcm` and
:func:`make_synthetic_bupt_campus` write small learnable datasets in the same layouts.
:class:`VideoClipDataset` turns tracklets into clips (:func:`sample_frame_indices`,
:class:`ClipTransform`); :class:`CrossModalIdentitySampler` forms the P x (K visible + K
infrared) training batches. See ``docs/data.md``.

Errors: :class:`DataError` (a ``ValueError``) for malformed data, naming the file and line,
identity or image; :class:`DataFileNotFoundError` (also a ``FileNotFoundError``) for missing
paths, naming the path.

:class:`TrackletFolder` indexes your own footage (frame folders or video files with an
optional ``labels.csv``); :class:`FolderVVI` trains on it.

Importing this package needs torch, numpy and Pillow only (PyAV is imported when a video is
read).
"""

from __future__ import annotations

from xreid.data._base import DIRECTIONS
from xreid.data.batches import TrainBatches
from xreid.data.build import build_reader, build_readers, synthetic_root
from xreid.data.bupt_campus import BUPT_CAMERAS, BUPTCampus
from xreid.data.config import (
    DATASET_NAMES,
    SYNTHETIC_TRAIN_IDS,
    SYNTHETIC_VAL_IDS,
    DataConfig,
    validation_ids,
)
from xreid.data.dataset import VideoClipDataset, item_seed, load_frame
from xreid.data.folder import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    FolderTracklet,
    FolderVVI,
    TrackletClipDataset,
    TrackletFolder,
    collate_clips,
    count_video_frames,
    natural_key,
    parse_modality,
    read_video_frames,
)
from xreid.data.hitsz_vcm import HITSZVCM, decode_vcm_name
from xreid.data.mannequin import (
    MannequinRenderer,
    make_mannequin_bupt_campus,
    make_mannequin_hitsz_vcm,
)
from xreid.data.preprocessing import Preprocessing, evaluation_preprocessing
from xreid.data.sampler import CrossModalIdentitySampler
from xreid.data.sampling import SAMPLING_MODES, num_dense_clips, sample_frame_indices
from xreid.data.synthetic import (
    GENERATOR_VERSION,
    make_synthetic_bupt_campus,
    make_synthetic_hitsz_vcm,
)
from xreid.data.synthetic_cache import (
    MARKER,
    prepare_synthetic_root,
    remove_stale_dataset_temporaries,
    synthetic_folder_name,
    synthetic_stamp,
)
from xreid.data.tracklet import DataError, DataFileNotFoundError, Tracklet, modality_name
from xreid.data.transforms import NORMALIZATIONS, ClipTransform, resolve_normalization
from xreid.data.validation import HeldOutSplit, hold_out_identities

__all__ = [
    "BUPT_CAMERAS",
    "DATASET_NAMES",
    "DIRECTIONS",
    "GENERATOR_VERSION",
    "HITSZVCM",
    "IMAGE_EXTENSIONS",
    "MARKER",
    "NORMALIZATIONS",
    "SAMPLING_MODES",
    "SYNTHETIC_TRAIN_IDS",
    "SYNTHETIC_VAL_IDS",
    "VIDEO_EXTENSIONS",
    "BUPTCampus",
    "ClipTransform",
    "CrossModalIdentitySampler",
    "DataConfig",
    "DataError",
    "DataFileNotFoundError",
    "FolderTracklet",
    "FolderVVI",
    "HeldOutSplit",
    "MannequinRenderer",
    "Preprocessing",
    "Tracklet",
    "TrackletClipDataset",
    "TrackletFolder",
    "TrainBatches",
    "VideoClipDataset",
    "build_reader",
    "build_readers",
    "collate_clips",
    "count_video_frames",
    "decode_vcm_name",
    "evaluation_preprocessing",
    "hold_out_identities",
    "item_seed",
    "load_frame",
    "make_mannequin_bupt_campus",
    "make_mannequin_hitsz_vcm",
    "make_synthetic_bupt_campus",
    "make_synthetic_hitsz_vcm",
    "modality_name",
    "natural_key",
    "num_dense_clips",
    "parse_modality",
    "prepare_synthetic_root",
    "read_video_frames",
    "remove_stale_dataset_temporaries",
    "resolve_normalization",
    "sample_frame_indices",
    "synthetic_folder_name",
    "synthetic_root",
    "synthetic_stamp",
    "validation_ids",
]

"""Weights shipped in the package: loaded by name offline, hash-checked, clear errors."""

from __future__ import annotations

import shutil

import pytest
import torch

from xreid.backbones import build_backbone
from xreid.backbones.bundled import (
    BUNDLED_WEIGHTS,
    PRETRAINED_DIR,
    bundled_weights_path,
    sha256_of,
)

ENTRY = BUNDLED_WEIGHTS["synthetic-pretrained"]


def test_the_shipped_file_matches_its_recorded_hash():
    path = PRETRAINED_DIR / ENTRY.filename
    assert path.is_file()
    assert sha256_of(path) == ENTRY.sha256
    assert path.stat().st_size < 8 * 2**20  # a few MB of package data at most


def test_build_backbone_loads_the_named_weights_exactly():
    from safetensors.torch import load_file

    stored = load_file(str(PRETRAINED_DIR / ENTRY.filename))
    model = build_backbone("tiny", img_size=ENTRY.img_size, weights="synthetic-pretrained")
    state = model.canonical_state_dict()
    assert set(stored) <= set(state)
    for key, value in stored.items():
        assert torch.equal(state[key], value), key
    fresh = build_backbone("tiny", img_size=ENTRY.img_size)
    assert not torch.equal(fresh.canonical_state_dict()["pos_embed"], state["pos_embed"])


def test_other_sizes_resample_the_positional_embedding():
    model = build_backbone("tiny", img_size=(96, 48), weights="synthetic-pretrained")
    assert model.canonical_state_dict()["pos_embed"].shape[1] == 1 + 12 * 6


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="bundled file of 'synthetic-pretrained' is "
                                                "missing"):
        bundled_weights_path("synthetic-pretrained", "tiny", directory=tmp_path)


def test_corrupt_file_is_refused_by_its_hash(tmp_path):
    copy = tmp_path / ENTRY.filename
    shutil.copyfile(PRETRAINED_DIR / ENTRY.filename, copy)
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor
    copy.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"corrupt or was replaced: expected SHA-256 "
                                         + ENTRY.sha256):
        bundled_weights_path("synthetic-pretrained", "tiny", directory=tmp_path)
    assert bundled_weights_path("synthetic-pretrained", "tiny") == PRETRAINED_DIR / ENTRY.filename


def test_weights_of_another_backbone_are_refused():
    with pytest.raises(ValueError, match="weights of the 'tiny' backbone, got backbone "
                                         "'clip-vit-b16'"):
        build_backbone("clip-vit-b16", weights="synthetic-pretrained")

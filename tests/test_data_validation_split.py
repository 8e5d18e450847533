"""hold_out_identities: a validation split with the test protocol's shape."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xreid.constants import INFRARED, VISIBLE
from xreid.data import Tracklet
from xreid.data._base import VVIDataset
from xreid.data.tracklet import DataError
from xreid.data.validation import hold_out_identities


class _Reader(VVIDataset):
    def __init__(self, train, num_cameras=4):
        self._train = train
        self._query = {"i2v": ["q"], "v2i": ["q2"]}
        self._gallery = {"i2v": ["g"], "v2i": ["g2"]}
        self.num_cameras = num_cameras


def _reader(cams_per_pid):
    """cams_per_pid: {pid: ([infrared cameras], [visible cameras])}."""
    train = []
    for label, (pid, (ir, vis)) in enumerate(sorted(cams_per_pid.items())):
        for m, cams in ((INFRARED, ir), (VISIBLE, vis)):
            for k, c in enumerate(cams):
                train.append(Tracklet((f"{pid}-{m}-{k}.jpg",), pid, c, m, label))
    return _Reader(train)


cams = st.lists(st.integers(0, 3), min_size=1, max_size=3)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.integers(1, 500), st.tuples(cams, cams), min_size=4, max_size=12),
       st.integers(0, 2**31), st.data())
def test_split_is_disjoint_relabelled_and_shaped_like_the_test(per_pid, seed, data):
    reader = _reader(per_pid)
    eligible = [p for p, (ir, vis) in per_pid.items()
                if any(a != b for a in ir for b in vis)]
    limit = min(len(eligible), len(per_pid) - 2)
    if limit < 1:
        with pytest.raises(DataError, match="val_ids: expected at most"):
            hold_out_identities(reader, 1, seed)
        return
    n = data.draw(st.integers(1, limit))
    train, val = hold_out_identities(reader, n, seed)
    held = {t.pid for t in val.query("i2v")} | {t.pid for t in val.query("v2i")}
    assert len(held) == n and held <= set(eligible)
    kept = sorted({t.pid for t in train.train})
    assert not held & set(kept)
    assert len(kept) + n == len(per_pid)
    # labels 0..C'-1 in ascending pid order; nothing else changed
    for t in train.train:
        assert t.label == kept.index(t.pid)
    originals = {dataclasses.replace(t, label=0) for t in reader.train}
    assert {dataclasses.replace(t, label=0) for t in train.train} <= originals
    # query/gallery: infrared vs visible of the held-out identities, both directions
    assert {t.modality for t in val.query("i2v")} == {INFRARED}
    assert {t.modality for t in val.gallery("i2v")} == {VISIBLE}
    assert val.query("v2i") == val.gallery("i2v") and val.gallery("v2i") == val.query("i2v")
    assert all(t.label == -1 for t in val.query("i2v") + val.query("v2i"))
    assert val.eval_remove_same_camera
    # every held-out identity has a cross-camera match in each direction
    for pid in held:
        ir = {t.camera for t in val.query("i2v") if t.pid == pid}
        vis = {t.camera for t in val.gallery("i2v") if t.pid == pid}
        assert any(a != b for a in ir for b in vis)
    # the test split is the reader's, untouched; same split for the same seed
    assert train.query("i2v") == ["q"] and train.gallery("v2i") == ["g2"]
    again = hold_out_identities(reader, n, seed)[1]
    assert again.query("i2v") == val.query("i2v")


def test_bad_count_names_the_option():
    reader = _reader({p: ([0], [1]) for p in range(5)})
    with pytest.raises(ValueError, match="val_ids: expected an int >= 1, got 0"):
        hold_out_identities(reader, 0)
    with pytest.raises(DataError, match="val_ids: expected at most 3 .* got 4"):
        hold_out_identities(reader, 4)

"""Feature extraction, the I2V/V2I runner (fake readers and models), result objects, plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from xreid.constants import INFRARED, VISIBLE
from xreid.metrics import (
    DirectionMetrics,
    EvaluationResult,
    compute_distance,
    evaluate_model,
    evaluate_ranking,
    extract_features,
    plot_cmc,
)

data = pytest.importorskip("xreid.data")
Tracklet = data.Tracklet


# ------------------------------------------------------------------------------ fakes
class MeanColorModel(nn.Module):
    """embed(video) = per-channel mean colour, optionally through a fixed random projection.

    Records every call (clips seen, cameras) and asserts it runs in eval mode.
    """

    def __init__(self, num_cameras: int = 4, project: bool = False) -> None:
        super().__init__()
        self.num_cameras = num_cameras
        self.bn = nn.BatchNorm1d(3)
        g = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(3, 6, generator=g) if project else torch.eye(3))
        self.calls: list[tuple[int, torch.Tensor | None]] = []

    def embed(self, video: torch.Tensor, cameras: torch.Tensor | None = None) -> torch.Tensor:
        assert not self.training and not self.bn.training
        self.calls.append((video.shape[0], cameras))
        return video.mean(dim=(1, 3, 4)) @ self.proj

    @property
    def clips_seen(self) -> int:
        return sum(n for n, _ in self.calls)


def _colour(pid: int, jitter: int = 0) -> tuple[int, int, int]:
    return ((37 * pid + jitter) % 256, (91 * pid + 2 * jitter) % 256, (53 * pid + 128) % 256)


def _write_tracklet(root: Path, name: str, colour, n: int = 3, size=(8, 4)) -> tuple[str, ...]:
    paths = []
    for k in range(n):
        p = root / f"{name}_{k}.jpg"
        Image.new("RGB", (size[1], size[0]), colour).save(p, quality=95)
        paths.append(str(p))
    return tuple(paths)


class FakeReader:
    """HITSZ-VCM-like: I2V = infrared vs visible, V2I = the swap; new lists on every call."""

    eval_remove_same_camera = True

    def __init__(self, infrared: list[Tracklet], visible: list[Tracklet]) -> None:
        self._ir, self._vis = infrared, visible

    def query(self, direction: str) -> list[Tracklet]:
        return list(self._ir if direction == "i2v" else self._vis)

    def gallery(self, direction: str) -> list[Tracklet]:
        return list(self._vis if direction == "i2v" else self._ir)


class FakeReaderNoRemoval(FakeReader):
    eval_remove_same_camera = False


@pytest.fixture(scope="module")
def tracklets(tmp_path_factory) -> tuple[list[Tracklet], list[Tracklet]]:
    """5 identities; colours identify people (perfect features for MeanColorModel).

    pid 4 is seen by the infrared and the visible camera 0 only, so its I2V query and V2I
    query have no match left after same-pid-same-camera removal.
    """
    root = tmp_path_factory.mktemp("fake_vvi")
    ir, vis = [], []
    for pid in range(5):
        ir_cams = [0] if pid == 4 else [0, 1]
        vis_cams = [0] if pid == 4 else [1, 2]
        for c in ir_cams:
            frames = _write_tracklet(root, f"ir{pid}c{c}", _colour(pid, c))
            ir.append(Tracklet(frames, pid, c, INFRARED))
        for c in vis_cams:
            frames = _write_tracklet(root, f"vis{pid}c{c}", _colour(pid, 3 + c))
            vis.append(Tracklet(frames, pid, c, VISIBLE))
    return ir, vis


EVAL_KW = {"img_size": (8, 4), "num_frames": 2, "batch_size": 3}


# ------------------------------------------------------------------- extract_features
def test_extract_dense_averages_clips_and_restores_modes():
    model = MeanColorModel(num_cameras=0)
    model.train()
    model.bn.eval()  # a submodule with its own mode must keep it
    video = torch.zeros(2, 3, 2, 3, 4, 4)  # (B=2, n_clips=3, T, 3, H, W); clip c holds c
    for c in range(3):
        video[:, c] = c
    video[1] += 10
    batch = {"video": video, "pid": torch.tensor([5, 6]), "camera": torch.tensor([0, 1])}
    feats, pids, cams = extract_features(model, [batch], max_clips_per_forward=4)
    torch.testing.assert_close(feats, torch.tensor([[1.0] * 3, [11.0] * 3]))
    assert feats.dtype == torch.float32 and feats.device.type == "cpu"
    assert pids.tolist() == [5, 6] and cams.tolist() == [0, 1]
    assert [n for n, _ in model.calls] == [4, 2]  # 6 clips, at most 4 per forward
    assert model.calls[0][1] is None  # num_cameras == 0: no cameras passed
    assert model.training and not model.bn.training


def test_extract_progress_cameras_order_and_autocast():
    model = MeanColorModel(num_cameras=4, project=True)
    batches = [
        {"video": torch.full((2, 2, 3, 4, 4), float(i)) + torch.arange(2.0).view(2, 1, 1, 1, 1),
         "pid": [i, i + 10], "camera": torch.tensor([1, 2]), "index": torch.tensor(idx)}
        for i, idx in enumerate(([2, 3], [0, 1]))
    ]
    calls = []
    feats, pids, cams = extract_features(model, batches, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, None), (4, None)]
    assert pids.tolist() == [1, 11, 0, 10]  # rows follow batch["index"]
    assert cams.tolist() == [1, 2, 1, 2]
    assert torch.equal(model.calls[0][1], torch.tensor([1, 2]))

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    f_bf16, _, _ = extract_features(model, batches, progress=bar, use_cameras=False,
                                    autocast_dtype=torch.bfloat16)
    assert bar.n == 4 and model.calls[-1][1] is None
    assert f_bf16.dtype == torch.float32
    torch.testing.assert_close(f_bf16, feats, atol=0.05, rtol=0.02)


def test_extract_bad_inputs():
    model = MeanColorModel()
    with pytest.raises(ValueError, match="loader"):
        extract_features(model, [{"pid": torch.tensor([0])}])
    with pytest.raises(ValueError, match="video"):
        extract_features(model, [{"video": torch.zeros(2, 3, 4), "pid": [0, 1], "camera": [0, 0]}])

    class BadModel(nn.Module):
        def embed(self, video, cameras=None):
            return video.mean(dim=(2, 3, 4))[:, :, None]

    with pytest.raises(ValueError, match="model"):
        extract_features(BadModel(), [{"video": torch.zeros(1, 2, 3, 4, 4), "pid": [0],
                                       "camera": [0]}])


# ---------------------------------------------------------------------------- runner
def test_runner_perfect_features_and_protocol_default(tracklets):
    ir, vis = tracklets
    model = MeanColorModel()
    result = evaluate_model(model, FakeReader(ir, vis), **EVAL_KW)
    # every distinct tracklet embedded exactly once for both directions
    assert model.clips_seen == len(ir) + len(vis)
    assert set(result.directions) == {"i2v", "v2i"}
    for d in ("i2v", "v2i"):
        m = result[d]
        assert m.rank1 == 1.0 and m.mAP == 1.0 and m.mINP == 1.0
        assert len(m.cmc) == 20
    # HITSZ-like reader: pid 4's only cross-modal match shares its camera -> skipped
    assert result["i2v"].num_valid_queries == len(ir) - 1
    assert result["v2i"].num_valid_queries == len(vis) - 1
    assert result.protocol["remove_same_camera"] is True

    no_removal = evaluate_model(MeanColorModel(), FakeReaderNoRemoval(ir, vis), **EVAL_KW)
    assert no_removal["i2v"].num_valid_queries == len(ir)
    assert no_removal.protocol["remove_same_camera"] is False
    forced = evaluate_model(MeanColorModel(), FakeReaderNoRemoval(ir, vis),
                            remove_same_camera=True, directions=("v2i",), **EVAL_KW)
    assert set(forced.directions) == {"v2i"}
    assert forced["v2i"].num_valid_queries == len(vis) - 1


def test_runner_matches_manual_pipeline(tracklets):
    ir, vis = tracklets
    # colours by camera, not identity: an imperfect but deterministic ranking
    model = MeanColorModel(project=True)
    result = evaluate_model(model, FakeReaderNoRemoval(ir, vis), metric="cosine", max_rank=7,
                            **EVAL_KW)
    ds = data.VideoClipDataset(vis + ir, num_frames=2, sampling="chunk_first",
                               transform=data.ClipTransform((8, 4), train=False))
    feats, pids, cams = extract_features(
        model, torch.utils.data.DataLoader(ds, batch_size=4)
    )
    nv = len(vis)
    expected = evaluate_ranking(compute_distance(feats[nv:], feats[:nv], "cosine"),
                                pids[nv:], pids[:nv], cams[nv:], cams[:nv],
                                remove_same_camera=False, max_rank=20)
    m = result["i2v"]
    assert m.mAP == pytest.approx(expected.mAP, abs=1e-12)
    assert m.cmc == pytest.approx(expected.cmc[:7].tolist())
    assert m.rank20 == expected.cmc[19] and len(m.cmc) == 7


def test_runner_dense_and_rerank(tracklets):
    ir, vis = tracklets
    model = MeanColorModel()
    result = evaluate_model(model, FakeReader(ir, vis), sampling="dense",
                            rerank={"k1": 3, "k2": 2, "lambda_value": 0.3}, **EVAL_KW)
    # 3 frames in clips of 2 -> 2 clips per tracklet, one tracklet per batch
    assert {n for n, _ in model.calls} == {2}
    assert len(model.calls) == len(ir) + len(vis)
    assert result.protocol["rerank"] is True
    assert 0.0 <= result["i2v"].mAP <= 1.0


def test_runner_bad_arguments(tracklets):
    ir, vis = tracklets
    reader = FakeReader(ir, vis)
    for kw, name in [({"directions": ("i2v", "x")}, "directions"),
                     ({"metric": "l1"}, "metric"), ({"max_rank": 0}, "max_rank"),
                     ({"rerank": {"k3": 1}}, "rerank"), ({"batch_size": 0}, "batch_size")]:
        with pytest.raises(ValueError, match=name):
            evaluate_model(MeanColorModel(), reader, **{**EVAL_KW, **kw})
    with pytest.raises(ValueError, match="dataset"):
        evaluate_model(MeanColorModel(), object(), **EVAL_KW)


def test_runner_on_synthetic_hitsz_vcm(tmp_path):
    root = data.make_synthetic_hitsz_vcm(
        tmp_path / "vcm", num_train_ids=2, num_test_ids=4, tracklets_per_id=2,
        test_tracklets_per_id=2, frames=(12, 13), num_short=0, num_cameras=3,
        img_size=(16, 8),
    )
    reader = data.HITSZVCM(root)
    model = MeanColorModel(num_cameras=reader.num_cameras)
    result = evaluate_model(model, reader, img_size=(16, 8), num_frames=4, batch_size=8)
    assert model.clips_seen == len(reader.query("i2v")) + len(reader.gallery("i2v"))
    out = result.to_dict()
    assert set(out) == {"i2v", "v2i"}
    for d in ("i2v", "v2i"):
        assert set(out[d]) == {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}
        assert all(0.0 <= v <= 1.0 for v in out[d].values())
        assert result[d].num_valid_queries == len(reader.query(d))  # generator guarantees it


# ------------------------------------------------------------------ results and plot
def _result() -> EvaluationResult:
    cmc = [0.5 + 0.025 * k for k in range(20)]
    m = DirectionMetrics(rank1=cmc[0], rank5=cmc[4], rank10=cmc[9], rank20=cmc[19], mAP=0.4,
                         mINP=0.2, cmc=cmc, num_valid_queries=9, num_queries=10,
                         num_gallery=30)
    return EvaluationResult({"i2v": m, "v2i": m}, {"metric": "euclidean"})


def test_result_dict_json_and_table():
    r = _result()
    d = r.to_dict()
    assert list(d) == ["i2v", "v2i"]
    assert d["i2v"] == pytest.approx({"rank1": 0.5, "rank5": 0.6, "rank10": 0.725,
                                      "rank20": 0.975, "mAP": 0.4, "mINP": 0.2})
    assert all(type(v) is float for v in d["i2v"].values())
    json.loads(json.dumps(d))
    full = r.to_dict(include_cmc=True)
    assert len(full["cmc"]["v2i"]) == 20 and full["num_valid_queries"]["i2v"] == 9
    json.loads(json.dumps(full))
    table = r.format_table()
    assert "I2V" in table and "V2I" in table and "50.00" in table and "9/10" in table
    with pytest.raises(KeyError, match="x2y"):
        r["x2y"]


def test_plot_cmc_writes_png(tmp_path):
    r = _result()
    for i, results in enumerate([
        r, r.to_dict(include_cmc=True), {"i2v": [0.1, 0.5, 0.9]},
        {"v2i": {"cmc": np.linspace(0, 1, 5), "mAP": 0.3}},
    ]):
        path = plot_cmc(results, tmp_path / f"sub/cmc{i}.png", title="test")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] > 100
    with pytest.raises(ValueError, match="results"):
        plot_cmc({"i2v": "nope"}, tmp_path / "bad.png")


def test_import_is_light():
    code = ("import sys, xreid.metrics; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('matplotlib', 'torchvision', 'timm', 'open_clip')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)

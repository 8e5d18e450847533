"""One feature space for the CPC memory: initialisation, update and CPCL see the same feature."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xreid.engine import TrainConfig, Trainer


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("memspace") / "data")


def _trainer(tmp_path, root, **kw) -> Trainer:
    values = dict(root=root, synthetic_train_ids=8, synthetic_test_ids=4,
                  img_size=(32, 16), num_frames=3, ids_per_batch=4, clips_per_modality=1,
                  epochs=1, iters_per_epoch=1, eval_before=False, memory_batch_size=64,
                  output_dir=str(tmp_path / "run"))
    values.update(kw)
    return Trainer(TrainConfig.from_preset("demo", **values))


def test_same_clip_same_memory_feature_at_step_0(tmp_path, data_root):
    tr = _trainer(tmp_path, data_root)
    core = tr.core
    fresh_mean = core.bn_sequence.running_mean.clone()
    tr.initialize_memory()
    # the fresh BNNecks were calibrated on the training set's clip features
    assert not torch.equal(core.bn_sequence.running_mean, fresh_mean)
    batch = next(iter(tr._epoch_batches(0)))
    core.train()
    with torch.no_grad():
        out = core(batch["video"], batch["modality"], batch["camera"], batch["label"])
        core.eval()
        init_path = core.memory_features(batch["video"], batch["camera"])
    cos = F.cosine_similarity(init_path, out.memory_feature, dim=1)
    assert bool((cos > 0.999).all()), cos  # before: -0.1..0.1 (train vs eval BN)
    # prototypes of different identities are not all one direction (the un-centred failure)
    p = F.normalize(core.memory.visible, dim=1)
    off_diagonal = (p @ p.t() - torch.eye(len(p))).abs().sum() / (len(p) * (len(p) - 1))
    assert off_diagonal < 0.5, off_diagonal


def test_calibration_happens_once(tmp_path, data_root):
    tr = _trainer(tmp_path, data_root)
    tr.initialize_memory()
    calibrated = tr.core.bn_sequence.running_mean.clone()
    tr.core.bn_sequence.running_mean.add_(1.0)  # as if training had moved the statistics
    tr.core.bn_sequence.num_batches_tracked += 1
    tr.initialize_memory()  # a rebuild (memory_init="every_epoch") keeps the statistics
    assert torch.equal(tr.core.bn_sequence.running_mean, calibrated + 1.0)


def test_memory_norm_uses_running_statistics_in_both_modes(tmp_path, data_root):
    core = _trainer(tmp_path, data_root).core
    x = torch.randn(5, core.embed_dim + core.proj_dim)
    core.train()
    a = core.memory_norm(x)
    b = core.memory_norm(x[:2])  # batch-independent
    core.eval()
    torch.testing.assert_close(core.memory_norm(x), a)
    torch.testing.assert_close(b, a[:2])

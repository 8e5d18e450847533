"""One feature space for the CPC memory: initialisation, update and CPCL see the same feature."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from xreid.engine import TrainConfig, Trainer, build_trainer
from xreid.engine.memory_init import MemoryInitHook


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("memspace") / "data")


def _trainer(tmp_path, root, **kw) -> Trainer:
    values = dict(root=root, synthetic_train_ids=8, synthetic_test_ids=4,
                  img_size=(32, 16), num_frames=3, ids_per_batch=4, clips_per_modality=1,
                  epochs=1, iters_per_epoch=1, eval_before=False, memory_batch_size=64,
                  output_dir=str(tmp_path / "run"), use_cameras=True)  # SIE in both paths
    values.update(kw)
    return build_trainer(TrainConfig.from_preset("demo", **values))


def test_same_clip_same_memory_feature_at_step_0(tmp_path, data_root):
    tr = _trainer(tmp_path, data_root)
    core = tr.core
    running = copy.deepcopy(core.bn_sequence.state_dict())
    tr.find_hook(MemoryInitHook).initialize(tr.epoch)
    for k, v in core.bn_sequence.state_dict().items():  # running statistics untouched
        assert torch.equal(v, running[k]), k
    batch = next(iter(tr.epoch_batches(0)))
    core.train()
    with torch.no_grad():
        out = core(batch["video"], batch["modality"], batch["camera"], batch["label"])
        # the initialisation path: raw clip features, normalised with the training set's
        # statistics (what initialize_memory does)
        core.eval()
        raw_all = torch.cat([core.clip_features(b["video"], b["camera"])
                             for b in tr.epoch_batches(0)])
        raw = core.clip_features(batch["video"], batch["camera"])
        init_path = core.memory_norm(raw, raw_all.mean(0), raw_all.var(0, unbiased=False))
    cos = F.cosine_similarity(init_path, out.memory_feature, dim=1)
    # before: -0.1..0.1 (eval-mode BNNecks at initialisation vs batch statistics in training)
    assert bool((cos > 0.9).all()), cos
    # prototypes of different identities are not all one direction (the un-centred failure)
    p = F.normalize(core.memory.visible, dim=1)
    off_diagonal = (p @ p.t() - torch.eye(len(p))).abs().sum() / (len(p) * (len(p) - 1))
    assert off_diagonal < 0.5, off_diagonal


def test_memory_norm_default_is_the_training_batch_feature(tmp_path, data_root):
    core = _trainer(tmp_path, data_root).core
    x = torch.randn(6, core.embed_dim + core.proj_dim) * 3 + 1
    twin = copy.deepcopy(core).train()
    d = core.embed_dim
    ref = torch.cat([twin.bn_sequence(x[:, :d]), twin.bn_projected(x[:, d:])], 1)
    for mode in (True, False):
        core.train(mode)
        torch.testing.assert_close(core.memory_norm(x), ref)
    assert torch.equal(core.bn_sequence.running_mean, torch.zeros(d))  # not updated
    mean, var = x.mean(0), x.var(0, unbiased=False)
    torch.testing.assert_close(core.memory_norm(x[:2], mean, var), ref[:2])

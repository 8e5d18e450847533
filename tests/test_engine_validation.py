"""The trainer's validation split: evaluated beside the test split, never instead of it."""

from __future__ import annotations

from pathlib import Path

from xreid.data.build import build_reader, build_readers
from xreid.data.config import validation_ids
from xreid.engine import TrainConfig, build_trainer


def _config(tmp_path: Path, **kw) -> TrainConfig:
    values = dict(root=str(tmp_path / "data"), synthetic_train_ids=6, synthetic_test_ids=4,
                  val_ids=4, img_size=(32, 16), num_frames=3, ids_per_batch=2,
                  clips_per_modality=1, epochs=1, iters_per_epoch=1,
                  output_dir=str(tmp_path / "run"), eval_batch_size=32,
                  memory_batch_size=64)
    values.update(kw)
    return TrainConfig.from_preset("demo", **values)


def test_defaults_hold_out_only_on_synthetic_data():
    assert validation_ids(TrainConfig.from_preset("demo").data) == 24
    assert validation_ids(TrainConfig.from_preset("paper", root="/x").data) == 0
    assert validation_ids(TrainConfig.from_preset("demo", val_ids=0).data) == 0


def test_metrics_report_validation_and_test_side_by_side(tmp_path):
    from xreid.backbones import build_backbone
    from xreid.backbones.features import EncoderEmbedding
    from xreid.metrics import evaluate_model, pixel_baseline

    cfg = _config(tmp_path, weights="synthetic-pretrained")
    trainer = build_trainer(cfg)
    metrics = trainer.fit()
    trainer.close()
    # the synthetic generator made 6 + 4 training identities; 6 are trained on
    full = build_reader(cfg.data, cfg.run.output_dir)
    reader, val_reader = build_readers(cfg.data, cfg.run.output_dir)
    assert full.num_train_identities == 10
    assert reader.num_train_identities == 6
    assert val_reader is not None and trainer.val_evaluator is not None
    val = metrics["validation"]
    assert set(val) == {"before", "after", "baselines"}
    assert set(val["baselines"]) == {"pixels", "pretrained"}
    assert set(metrics["baselines"]) == {"pixels", "pretrained"}
    # "pretrained" is the encoder's own features (no heads), "before" the whole model
    assert val["baselines"]["pretrained"] != val["before"]
    encoder = EncoderEmbedding(build_backbone("tiny", img_size=(32, 16),
                                              weights="synthetic-pretrained")).eval()
    again = evaluate_model(encoder, val_reader, num_frames=3, img_size=(32, 16),
                           normalization=cfg.data.normalization, batch_size=32,
                           use_cameras=False).to_dict()
    assert again == val["baselines"]["pretrained"]
    assert val["baselines"]["pixels"] == pixel_baseline(val_reader).to_dict()
    # the test split is the dataset's own
    assert metrics["baselines"]["pixels"] == pixel_baseline(full).to_dict()
    assert val["baselines"]["pixels"] != metrics["baselines"]["pixels"]


def test_no_validation_block_without_held_out_identities(tmp_path):
    trainer = build_trainer(_config(tmp_path, val_ids=0, eval_before=False,
                                    pixel_baseline=False))
    metrics = trainer.fit()
    trainer.close()
    assert "validation" not in metrics and trainer.val_evaluator is None

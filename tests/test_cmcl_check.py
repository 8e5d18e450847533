"""examples/cmcl_check.py: the encoder/CII swap check of Eq. 9 on tiny finished runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xreid.engine import Hook, TrainConfig, build_trainer
from xreid.losses import CMCL

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def check():
    from xreid.experiments import cmcl_check

    return cmcl_check


def _run(tmp_path: Path, name: str, **kw) -> Path:
    cfg = TrainConfig.from_preset(
        "demo", root=str(tmp_path / "data"), synthetic_train_ids=6, synthetic_test_ids=4,
        img_size=(32, 16), num_frames=3, ids_per_batch=2, clips_per_modality=1, epochs=2,
        iters_per_epoch=3, eval_before=False, pixel_baseline=False,
        output_dir=str(tmp_path / name), memory_batch_size=64, threads=1, **kw)
    trainer = build_trainer(cfg, hooks=[Hook()])
    try:
        trainer.fit()
    finally:
        trainer.close()
    return tmp_path / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmcl-check")
    return {"paper": _run(tmp, "paper", use_cameras=True),
            "no-cmcl": _run(tmp, "no-cmcl", cmcl_weight=0.0),
            "no-cii": _run(tmp, "no-cii", use_cii=False)}


def test_initial_values_match_a_fresh_model(check, runs):
    """"initial encoder + initial CII" is Eq. 9 of the model the run started from."""
    values = check.check_run(runs["paper"], batches=2)
    cfg = TrainConfig.from_dict({**TrainConfig.load(runs["paper"] / "config.json").to_dict(),
                                 "output_dir": str(runs["paper"].parent / "fresh")})
    trainer = build_trainer(cfg, hooks=[Hook()])  # seeds, then builds the same initial model
    try:
        model = trainer.core.train()
        batches = [b for _, b in zip(range(2), trainer.epoch_batches(0))]
        with torch.no_grad():
            expected = sum(
                sum(float(CMCL()(a, b)) for a, b in out.cmcl_pairs) / len(out.cmcl_pairs)
                for out in (model(b["video"], b["modality"],
                                  b["camera"] if cfg.data.use_cameras else None, b["label"])
                            for b in batches)
            ) / 2
    finally:
        trainer.close()
    assert values["initial encoder + initial CII"] == pytest.approx(expected, rel=1e-5)
    # training moved both sides: every combination differs from the start
    others = [v for k, v in values.items() if k != "initial encoder + initial CII"]
    assert all(abs(v - expected) > 1e-6 for v in others)


def test_untrained_cii_gives_equal_columns(check, runs):
    """With cmcl_weight=0 CII gets no gradient, so its trained copy equals the initial one."""
    values = check.check_run(runs["no-cmcl"], batches=1)
    assert values["initial encoder + trained CII"] == pytest.approx(
        values["initial encoder + initial CII"], rel=1e-6)
    assert values["trained encoder + trained CII"] == pytest.approx(
        values["trained encoder + initial CII"], rel=1e-6)


def test_cli_table_and_errors(check, runs, tmp_path, capsys):
    out = tmp_path / "values.json"
    assert check.main([str(runs["paper"]), "--batches", "1", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| initial enc. + initial CII |" in table and str(runs["paper"]) in table
    assert out.exists()
    with pytest.raises(SystemExit, match="no CII"):
        check.main([str(runs["no-cii"])])
    with pytest.raises(SystemExit, match="config.json"):
        check.main([str(tmp_path)])
    with pytest.raises(SystemExit, match="--batches"):
        check.main([str(runs["paper"]), "--batches", "0"])

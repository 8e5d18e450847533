"""The textual-prompts variant's two stages in the training engine: the stage-1 schedule,
the stage-2 loss against a loop reference, what each stage trains, resume, and both stages
through the CLI on the tiny synthetic setup."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from xreid.engine import TrainConfig, build_trainer, load_checkpoint
from xreid.engine.prompt_stages import (
    STAGE1_DEFAULTS,
    PromptLoss,
    PromptStagesHook,
    stage1_lr,
)
from xreid.losses.xreid_loss import LossOutput

pytest.importorskip("open_clip")

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(tmp_path: Path, **kw) -> TrainConfig:
    values = dict(
        weights=None,  # smaller than the demo's pre-trained encoder: from scratch
        # its own folder: a shared root holding other parameters is refused (issue 20)
        root=str(tmp_path.parent / "synthetic-data-val0"),
        synthetic_train_ids=8,
        synthetic_test_ids=6,
        val_ids=0,  # the dataset these step counts were written for
        img_size=(32, 16),
        num_frames=3,
        ids_per_batch=2,
        clips_per_modality=1,
        epochs=1,
        iters_per_epoch=2,
        eval_before=False,
        output_dir=str(tmp_path / "run"),
        eval_batch_size=32,
        memory_batch_size=64,
        text_prompts=True,
        prompt_stage1_epochs=2,
        prompt_stage1_batch_size=16,
        use_cameras=True,
    )
    values.update(kw)
    return TrainConfig.from_preset("demo", **values)


# ------------------------------------------------------------------------------- config
def test_stage1_schedule_is_clip_reids():
    kw = dict(epochs=120, base_lr=3.5e-4)
    assert stage1_lr(1, **kw) == pytest.approx(1e-5 + (3.5e-4 - 1e-5) / 5)
    assert stage1_lr(4, **kw) == pytest.approx(1e-5 + 4 * (3.5e-4 - 1e-5) / 5)
    # from epoch 5 on: cosine over the whole 120 epochs (no warm-up prefix), to 1e-6
    assert stage1_lr(5, **kw) == pytest.approx(1e-6 + 0.5 * (3.5e-4 - 1e-6)
                                               * (1 + math.cos(math.pi * 5 / 120)))
    assert stage1_lr(60, **kw) == pytest.approx(1e-6 + 0.5 * (3.5e-4 - 1e-6))
    assert stage1_lr(120, **kw) == pytest.approx(1e-6)
    lrs = [stage1_lr(e, **kw) for e in range(5, 121)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_config_defaults_and_errors():
    cfg = TrainConfig()
    assert cfg.prompts.enabled is False
    assert (cfg.prompts.stage1_epochs, cfg.prompts.stage1_lr, cfg.prompts.stage1_batch_size) == (
        STAGE1_DEFAULTS["epochs"], STAGE1_DEFAULTS["lr"], STAGE1_DEFAULTS["batch_size"])
    assert (cfg.prompts.similarity, cfg.prompts.stage1_i2t, cfg.prompts.i2t_weight) == (
        "dot", "batch", 1.0)
    for key, value in [("similarity", "l2"), ("stage1_i2t", "some"),
                       ("stage1_epochs", -1), ("stage1_batch_size", 0),
                       ("stage1_lr", 0.0), ("i2t_weight", -1.0)]:
        with pytest.raises(ValueError, match=f"^prompts.{key}: expected"):
            TrainConfig.from_preset("demo", prompts={key: value})


def test_variant_overrides():
    from xreid.engine.variants import get_variant

    overrides = get_variant("tab4/textual-prompts").overrides
    assert overrides["prompts"]["enabled"] is True
    switches = ("use_memory", "use_sii", "use_lii", "use_cii")
    assert all(overrides["model"][k] is False for k in switches)
    cfg = TrainConfig.from_preset("demo", variant="tab4/textual-prompts")
    assert cfg.prompts.enabled and cfg.model.use_memory is False and cfg.model.use_sii is False
    # CLIP-ReID's stage-2 recipe (configs/person/vit_clipreid.yml, loss/make_loss.py)
    assert (cfg.loss.id, cfg.loss.triplet, cfg.prompts.i2t_weight) == (0.25, 1.0, 1.0)
    assert cfg.loss.label_smoothing == 0.1 and cfg.optim.classifier_lr_factor == 1.0
    assert cfg.prompts.template == "A {modality} video of a X X X X person."
    # the earlier reading is kept as a variant
    old = TrainConfig.from_preset("demo", variant="baselines/textual-prompts-xreid")
    assert old.prompts.enabled and old.prompts.template == "A photo of a X X X X person."
    assert (old.loss.id, old.loss.label_smoothing) == (1.0, 0.0)


# ---------------------------------------------------------------------------- stage 2 loss
class _Base(torch.nn.Module):
    label_smoothing = 0.1

    def forward(self, output, labels, memory=None, modality=None):
        total = output.projected.sum() * 0.0 + 2.0
        return LossOutput(total=total, terms={"id": torch.tensor(2.0)}, weights={"id": 1.0})


def test_prompt_loss_adds_the_modality_wise_i2t_cross_entropy():
    from types import SimpleNamespace

    torch.manual_seed(0)
    text = torch.randn(2, 4, 6)
    projected = torch.randn(5, 6, requires_grad=True)
    modality = torch.tensor([0, 1, 0, 1, 1])
    labels = torch.tensor([3, 3, 0, 2, 1])
    loss = PromptLoss(_Base(), weight=0.5)
    out = SimpleNamespace(projected=projected)
    with pytest.raises(RuntimeError, match="prompt features"):
        loss(out, labels, None, modality)
    loss.set_text_features(text)
    result = loss(out, labels, None, modality)
    ref = 0.0
    for b in range(5):  # label-smoothed CE of clip b over the 4 prompts of its modality
        s = [float(projected[b].detach() @ text[modality[b], c]) for c in range(4)]
        log_z = math.log(sum(math.exp(v) for v in s))
        logp = [v - log_z for v in s]
        ref += -(0.9 * logp[labels[b]] + 0.1 * sum(logp) / 4)
    ref /= 5
    assert float(result.terms["i2t"]) == pytest.approx(ref, rel=1e-5)
    assert float(result.total.detach()) == pytest.approx(2.0 + 0.5 * ref, rel=1e-5)
    assert result.weights == {"id": 1.0, "i2t": 0.5}
    result.total.backward()
    assert projected.grad is not None and projected.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="modality"):
        loss(SimpleNamespace(projected=projected), labels)


# ------------------------------------------------------------------------------ training
def test_stage1_trains_only_the_prompts_and_stage2_the_image_encoder(tmp_path):
    trainer = build_trainer(tiny_config(tmp_path, prompt_stage1_epochs=4, prompt_stage1_lr=0.5,
                                  prompt_stage1_batch_size=64))
    stages = trainer.find_hook(PromptStagesHook).stages
    assert stages is not None and isinstance(trainer.loss.loss_fn, PromptLoss)
    model_before = {k: v.clone() for k, v in trainer.core.state_dict().items()}
    text_before = {k: v.clone() for k, v in stages.text_tower.state_dict().items()}
    ctx_before = stages.learner.ctx.detach().clone()
    history = stages.run_stage1()
    assert len(history) == 4 and history[-1]["loss"] < history[0]["loss"]
    for k, v in trainer.core.state_dict().items():
        assert torch.equal(v, model_before[k]), k
    for k, v in stages.text_tower.state_dict().items():
        assert torch.equal(v, text_before[k]), k
    assert not torch.equal(stages.learner.ctx, ctx_before)
    assert not stages.learner.ctx.requires_grad
    # the frozen prompt features are those of the learned prompts
    feats = stages.text_features
    assert feats.shape == (2, trainer.core.num_identities, trainer.core.proj_dim)
    m, y = stages.learner.all_prompts()
    torch.testing.assert_close(feats.reshape(-1, feats.shape[-1]), stages.encode(m, y).detach())
    # stage 2: the image encoder moves, the prompts do not, the i2t term is logged
    trainer.fit()
    assert torch.equal(stages.text_features, feats)
    moved = [k for k, v in trainer.core.state_dict().items()
             if k.startswith("backbone.") and not torch.equal(v, model_before[k])]
    assert moved
    assert "i2t" in trainer.history[-1] and math.isfinite(trainer.history[-1]["i2t"])


def test_stage1_every_prompt_and_cosine_options(tmp_path):
    trainer = build_trainer(tiny_config(tmp_path, prompt_stage1_i2t="all",
                                        prompt_similarity="cosine", prompt_stage1_epochs=1))
    stages = trainer.find_hook(PromptStagesHook).stages
    assert stages.normalize and stages.scale == pytest.approx(1 / 0.07)
    history = stages.run_stage1()
    assert len(history) == 1 and math.isfinite(history[0]["loss"])


def test_text_tower_width_must_match_the_backbone(tmp_path):
    from xreid.prompts import TextTowerConfig, build_text_tower

    tower = build_text_tower(TextTowerConfig.tiny(embed_dim=16))
    path = tmp_path / "text16.pt"
    torch.save(tower.state_dict(), path)
    with pytest.raises(ValueError, match="text_weights: expected a text tower with 32-d"):
        build_trainer(tiny_config(tmp_path, text_weights=str(path)))


def _cli(tmp_path: Path):
    from xreid.cli import train_script as train_vvi
    cfg = tiny_config(tmp_path)
    args = ["--no-progress", "--root", cfg.data.root, "--output-dir", cfg.run.output_dir,
            "--synthetic-train-ids", "8", "--synthetic-test-ids", "6", "--val-ids", "0",
            "--img-size", "32", "16",
            "--num-frames", "3", "--ids-per-batch", "2", "--clips-per-modality", "1",
            "--iters-per-epoch", "2", "--no-eval-before", "--text-prompts",
            "--prompt-stage1-epochs", "2", "--prompt-stage1-batch-size", "16"]
    return train_vvi, args, Path(cfg.run.output_dir)


def test_cli_trains_both_stages_and_evaluates(tmp_path):
    train_vvi, args, out = _cli(tmp_path)
    assert train_vvi.main([*args, "--epochs", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for direction in ("i2v", "v2i"):
        assert 0.0 <= metrics["after"][direction]["mAP"] <= 1.0
    events = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in events if e["event"] == "prompt_stage1_epoch"] == [1, 2]
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1]
    assert all("i2t" in e for e in events if e["event"] == "iteration")


@pytest.mark.slow
def test_cli_resume_skips_stage1_and_eval_only(tmp_path):
    train_vvi, args, out = _cli(tmp_path)
    assert train_vvi.main([*args, "--epochs", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["prompts"]["enabled"] is True
    events = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    stage1 = [e for e in events if e["event"] == "prompt_stage1_epoch"]
    assert [e["epoch"] for e in stage1] == [1, 2]
    assert all("i2t" in e for e in events if e["event"] == "iteration")
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["prompts"]["stage1_done"] is True
    assert ck["prompts"]["ctx"].shape == (2, 8, 4, 64)
    assert ck["prompts"]["text_features"].shape == (2, 8, 32)
    # resuming continues stage 2 without repeating stage 1
    assert train_vvi.main([*args, "--epochs", "2", "--resume", str(out / "checkpoint.pt")]) == 0
    events = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert len([e for e in events if e["event"] == "prompt_stage1_epoch"]) == 2
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2]
    resumed = load_checkpoint(out / "checkpoint.pt")
    assert torch.equal(resumed["prompts"]["text_features"], ck["prompts"]["text_features"])
    # evaluation only
    assert train_vvi.main([*args, "--eval-only", "--checkpoint", str(out / "checkpoint.pt")]) == 0
    (eval_dir,) = out.glob("eval-*")  # a folder of its own inside the run
    evaluated = json.loads((eval_dir / "metrics_eval.json").read_text())
    after = json.loads((out / "metrics.json").read_text())["after"]
    assert evaluated["eval"] == after

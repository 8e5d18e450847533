"""Reference training loop: config, schedule, atomic checkpoints, resume, CLI, DDP."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
from distributed_teardown import leave_group_and_exit

from xreid.engine import TrainConfig, build_trainer, load_checkpoint
from xreid.engine.checkpoint import atomic_save
from xreid.engine.optim import lr_factor

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(tmp_path: Path, **kw) -> TrainConfig:
    values = dict(
        weights=None,  # smaller than the demo's pre-trained encoder: from scratch
        root=str(tmp_path.parent / "synthetic-data"),
        synthetic_train_ids=8,
        synthetic_test_ids=6,
        img_size=(32, 16),
        num_frames=3,
        ids_per_batch=2,
        clips_per_modality=1,
        epochs=2,
        iters_per_epoch=2,
        eval_before=False,
        output_dir=str(tmp_path / "run"),
        eval_batch_size=32,
        memory_batch_size=64,
    )
    values.update(kw)
    return TrainConfig.from_preset("demo", **values)


# ------------------------------------------------------------------------ config / schedule
def test_presets_and_round_trip(tmp_path):
    paper = TrainConfig.from_preset("paper", root="/data/vcm")
    assert paper.optim.lr == 5e-6 and paper.optim.epochs == 60
    assert paper.optim.milestones == (30, 50)
    assert paper.data.img_size == (288, 144) and paper.data.num_frames == 10
    assert (paper.data.ids_per_batch, paper.data.clips_per_modality) == (4, 2)
    official = TrainConfig.from_preset("official", root="/data/vcm")
    assert official.optim.iters_per_epoch == 300
    assert official.loss.memory_init == "every_epoch"
    path = tmp_path / "c.json"
    paper.save(path)
    assert TrainConfig.load(path) == paper


def test_config_errors_name_the_option():
    with pytest.raises(ValueError, match="unknown option"):
        TrainConfig.from_preset("demo", bogus=1)
    with pytest.raises(ValueError, match="root"):
        TrainConfig.from_preset("demo", dataset="hitsz-vcm")
    with pytest.raises(ValueError, match="amp"):
        TrainConfig.from_preset("demo", amp="fp8")
    with pytest.raises(ValueError, match="preset"):
        TrainConfig.from_preset("nope")


def test_paper_schedule():
    kw = dict(warmup_epochs=10, warmup_factor=0.1, milestones=(30, 50), gamma=0.1)
    lrs = [5e-6 * lr_factor(e, **kw) for e in range(60)]
    assert lrs[0] == pytest.approx(5e-7)  # epoch 1 at 5e-7
    assert lrs[5] == pytest.approx(5e-7 + 0.5 * (5e-6 - 5e-7))  # linear warm-up
    assert lrs[10] == pytest.approx(5e-6) and lrs[29] == pytest.approx(5e-6)
    assert lrs[30] == pytest.approx(5e-7) and lrs[49] == pytest.approx(5e-7)  # epochs 31-50
    assert lrs[50] == pytest.approx(5e-8)


# ------------------------------------------------------------------------------ checkpoints
def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "ck.pt"
    atomic_save({"model": {"w": torch.ones(2)}}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"model": Unpicklable()}, path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary left behind


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(bad)


# ----------------------------------------------------------------------------- training
def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    full = build_trainer(tiny_config(tmp_path / "a", eval_before=True))
    metrics_full = full.fit()
    state_full = full.core.state_dict()

    first = build_trainer(tiny_config(tmp_path / "b", epochs=1, eval_before=True))
    first.fit()
    ck = Path(first.config.run.output_dir) / "checkpoint.pt"
    assert ck.exists()
    resumed = build_trainer(tiny_config(tmp_path / "b", epochs=2, eval_before=True))
    resumed.load_checkpoint(ck)
    assert resumed.epoch == 1
    metrics_resumed = resumed.fit()
    for key, value in state_full.items():
        assert torch.equal(value, resumed.core.state_dict()[key]), key
    assert metrics_full["after"] == metrics_resumed["after"]
    assert metrics_resumed["before"] == metrics_full["before"]  # carried by the checkpoint


def test_cli_demo_writes_every_artifact(tmp_path):
    from xreid.cli import train_script as train_vvi
    cfg = tiny_config(tmp_path, epochs=1, eval_before=True)
    args = ["--no-progress", "--root", cfg.data.root, "--output-dir", cfg.run.output_dir,
            "--synthetic-train-ids", "8", "--synthetic-test-ids", "6", "--img-size", "32", "16",
            "--num-frames", "3", "--ids-per-batch", "2", "--clips-per-modality", "1",
            "--epochs", "1", "--iters-per-epoch", "2"]
    assert train_vvi.main(args) == 0
    out = Path(cfg.run.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    keys = {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}
    for tag in ("before", "after"):
        for direction in ("i2v", "v2i"):
            assert keys <= set(metrics[tag][direction])
            assert all(0.0 <= metrics[tag][direction][k] <= 1.0 for k in keys)
    assert metrics["config"]["optim"]["epochs"] == 1
    # the baselines training must beat, next to the results: the demo fine-tunes the shipped
    # pre-trained encoder, so the start is "pretrained" (its own features), not "untrained"
    assert metrics["config"]["model"]["weights"] == "synthetic-pretrained"
    assert set(metrics["baselines"]) == {"pixels", "pretrained"}
    assert metrics["baselines"]["pretrained"] != metrics["before"]  # encoder alone vs heads
    from xreid.data.build import build_reader
    from xreid.metrics import pixel_baseline

    pixels = pixel_baseline(build_reader(cfg.data, cfg.run.output_dir)).to_dict()
    assert metrics["baselines"]["pixels"] == pixels
    for name in ("cmc.png", "training_curve.png", "log.jsonl", "checkpoint.pt", "config.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "cmc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert any(x["event"] == "iteration" and "total" in x for x in lines)
    # --eval-only on the checkpoint reproduces the final metrics
    assert train_vvi.main(args + ["--eval-only", "--checkpoint", str(out / "checkpoint.pt")]) == 0
    (eval_dir,) = out.glob("eval-*")  # a folder of its own inside the run
    evaluated = json.loads((eval_dir / "metrics_eval.json").read_text())
    assert evaluated["eval"] == metrics["after"]


# ---------------------------------------------------------------------------------- DDP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg_dict: dict, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    trainer = build_trainer(TrainConfig.from_dict(cfg_dict))
    try:
        trainer.fit()
        torch.save(trainer.core.state_dict(), Path(out_dir) / f"rank{rank}.pt")
    finally:
        trainer.close()
    del trainer
    leave_group_and_exit()  # only on success (see tests/distributed_teardown.py)


@pytest.mark.distributed
def test_close_releases_the_ddp_wrapper_before_leaving_the_group(tmp_path):
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        trainer = build_trainer(tiny_config(tmp_path, device="cpu"))
        assert isinstance(trainer.model, torch.nn.parallel.DistributedDataParallel)
        trainer.close()
        assert trainer.model is trainer.core  # no reducer outlives the group
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.distributed
def test_ddp_two_processes_end_identical(tmp_path):
    import torch.multiprocessing as mp

    cfg = tiny_config(tmp_path, epochs=1, iters_per_epoch=2, device="cpu")
    # build the synthetic dataset once up front (both ranks then read it)
    from xreid.data.build import build_reader

    build_reader(cfg.data, cfg.run.output_dir)
    mp.spawn(_ddp_worker, args=(2, _free_port(), cfg.to_dict(), str(tmp_path)), nprocs=2)
    s0 = torch.load(tmp_path / "rank0.pt")
    s1 = torch.load(tmp_path / "rank1.pt")
    assert s0.keys() == s1.keys()
    for key in s0:
        assert torch.equal(s0[key], s1[key]), key
    assert not torch.equal(s0["memory.visible"], torch.zeros_like(s0["memory.visible"]))


def test_bf16_autocast_and_grad_checkpointing_train(tmp_path):
    trainer = build_trainer(tiny_config(tmp_path, epochs=1, iters_per_epoch=1, amp="bf16",
                                  grad_checkpointing=True))
    metrics = trainer.fit()
    assert trainer.core.backbone.grad_checkpointing
    assert trainer.core.memory.visible.dtype == torch.float32
    assert all(0.0 <= v <= 1.0 for v in metrics["after"]["i2v"].values())
    rows = [json.loads(x) for x in (Path(trainer.config.run.output_dir) / "log.jsonl").read_text()
            .splitlines()]
    assert all(r["total"] == r["total"] for r in rows if r["event"] == "iteration")  # no NaN


@pytest.mark.slow
def test_compiled_training_matches_eager_loss(tmp_path):
    eager = build_trainer(tiny_config(tmp_path / "e", epochs=1, iters_per_epoch=2))
    eager.fit()
    compiled = build_trainer(tiny_config(tmp_path / "c", epochs=1, iters_per_epoch=2, compile=True))
    compiled.fit()
    le = [h["total"] for h in eager.history]
    lc = [h["total"] for h in compiled.history]
    assert lc == pytest.approx(le, rel=1e-3)
    # compiling in place keeps the state-dict keys
    assert eager.core.state_dict().keys() == compiled.core.state_dict().keys()


def test_train_step_rejects_a_batch_without_the_required_keys():
    from xreid.engine import train_step

    with pytest.raises(ValueError, match=r"batch: .*missing \['modality', 'camera'\]"):
        train_step(torch.nn.Linear(1, 1), {"video": torch.zeros(1), "label": torch.zeros(1)},
                   None, None)


# ------------------------------------------------------------------ trip hazards (issue 11)
def test_clip_backbone_without_weights_is_refused(tmp_path):
    from xreid.engine.build import build_model

    cfg = TrainConfig.from_preset("paper", root=str(tmp_path))
    with pytest.raises(ValueError, match=r"model.weights: .*ViT-B-16\.pt.*--model.random_init"):
        build_model(cfg, 4, 2)
    cfg = TrainConfig.from_preset("paper", root=str(tmp_path), random_init=True,
                                  backbone="clip-vit-b16", depth=1)
    model = build_model(cfg, 4, 2)
    assert model.num_identities == 4


def test_min_len_reaches_both_readers(tmp_path):
    from xreid.data import make_synthetic_bupt_campus
    from xreid.data.build import build_reader

    root = tmp_path / "bupt"
    make_synthetic_bupt_campus(root, num_train_ids=4, num_aux_ids=0, num_test_ids=6,
                               frames=(2, 12), img_size=(16, 8))
    default = build_reader(TrainConfig.from_preset("demo", dataset="bupt-campus",
                                                   root=str(root)).data)
    longer = build_reader(TrainConfig.from_preset("demo", dataset="bupt-campus", root=str(root),
                                                  min_len=4).data)
    assert sum(default.num_dropped.values()) == 0
    assert sum(longer.num_dropped.values()) > 0
    assert all(len(t.frames) >= 4 for t in longer.train)

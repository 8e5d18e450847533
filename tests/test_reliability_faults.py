"""Faults and unsafe inputs of the training engine: CUDA device setup (CUDA branches run on the
CPU through a monkeypatched ``torch.cuda``), checkpoints that must not execute code, runs that
must not overwrite each other, resume with changed options, killed runs, divergence, disk full.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import stat
import sys
import warnings
from pathlib import Path

import pytest
import torch

from xreid.data.synthetic_cache import remove_stale_dataset_temporaries
from xreid.engine import TrainConfig, build_trainer, load_checkpoint
from xreid.engine.build import setup_distributed
from xreid.engine.checkpoint import (
    atomic_save,
    capture_rng_state,
    current_umask,
    remove_stale_temporaries,
    restore_rng_state,
)
from xreid.engine.device import resolve_device, setup_device
from xreid.engine.loggers import truncate_log
from xreid.engine.memory_init import MemoryInitHook
from xreid.engine.objective import NonFiniteLossError, autocast_context

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(tmp_path: Path, **kw) -> TrainConfig:
    values = dict(
        weights=None,  # smaller than the demo's pre-trained encoder: from scratch
        root=str(tmp_path.parent / "synthetic-data"), synthetic_train_ids=8,
        synthetic_test_ids=6, img_size=(32, 16), num_frames=3, ids_per_batch=2,
        clips_per_modality=1, epochs=1, iters_per_epoch=1, eval_before=False,
        output_dir=str(tmp_path / "run"), eval_batch_size=32, memory_batch_size=64,
    )
    values.update(kw)
    return TrainConfig.from_preset("demo", **values)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trainer after 1 epoch of 1 iteration, with its checkpoint.pt written."""
    tmp = tmp_path_factory.mktemp("trained")
    # the camera embedding too
    trainer = build_trainer(tiny_config(tmp, epochs=1, use_cameras=True))
    trainer.find_hook(MemoryInitHook).initialize(trainer.epoch)
    trainer.save_checkpoint()
    return trainer


def cli():
    from xreid.cli import train_script as train_vvi
    return train_vvi


def cli_args(cfg: TrainConfig, *extra: str) -> list[str]:
    return ["--no-progress", "--root", cfg.data.root, "--output-dir", cfg.run.output_dir,
            "--synthetic-train-ids", "8", "--synthetic-test-ids", "6", "--img-size", "32", "16",
            "--num-frames", "3", "--ids-per-batch", "2", "--clips-per-modality", "1",
            "--epochs", "1", "--iters-per-epoch", "1", "--no-eval-before", *extra]


# -------------------------------------------------------------------------- CUDA on the CPU
class FakeCuda:
    """Stands in for ``torch.cuda`` on a CPU-only machine; ``set_device`` behaves like torch's
    (a device without an index is rejected)."""

    def __init__(self, monkeypatch, count: int = 2, current: int = 0) -> None:
        self.count, self.current, self.set_calls = count, current, []
        self.rng = [torch.arange(16, dtype=torch.uint8) + i for i in range(count)]
        self.restored = None
        for name in ("is_available", "device_count", "current_device", "set_device",
                     "get_rng_state_all", "set_rng_state_all"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return self.count

    def current_device(self) -> int:
        return self.current

    def set_device(self, device) -> None:
        if isinstance(device, torch.device):
            if device.index is None:
                raise ValueError("Expected a cuda device with a specified index or an integer")
            device = device.index
        self.set_calls.append(int(device))

    def get_rng_state_all(self):
        return [s.clone() for s in self.rng]

    def set_rng_state_all(self, states) -> None:
        self.restored = states


@pytest.mark.parametrize(("spec", "current", "expected"), [
    ("cuda", 0, 0), ("cuda", 1, 1), ("auto", 1, 1), ("cuda:1", 0, 1), ("cpu", 0, None),
])
def test_device_cuda_resolves_to_an_index(monkeypatch, spec, current, expected):
    fake = FakeCuda(monkeypatch, count=2, current=current)
    device = setup_device(spec)
    if expected is None:
        assert device == torch.device("cpu") and fake.set_calls == []
    else:
        assert device == torch.device("cuda", expected)
        assert fake.set_calls == [expected]


def test_device_cuda_under_a_launcher_uses_local_rank(monkeypatch):
    fake = FakeCuda(monkeypatch, count=4)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert setup_device("cuda", distributed=True) == torch.device("cuda", 3)
    assert setup_device("auto", distributed=True) == torch.device("cuda", 3)
    assert fake.set_calls == [3, 3]


def test_trainer_device_setup_takes_the_cuda_branch(monkeypatch, tmp_path):
    """The bug of issue 14: ``--device cuda`` / ``auto`` crashed in ``set_device``."""
    fake = FakeCuda(monkeypatch, count=1)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for spec in ("cuda", "auto"):
        device, rank, world_size, distributed = setup_distributed(spec)
        assert device == torch.device("cuda", 0) and not distributed
        assert (rank, world_size) == (0, 1)
    assert fake.set_calls == [0, 0]


@pytest.mark.parametrize(("spec", "count", "match"), [
    ("cuda:2", 2, "cuda:2 does not exist"), ("foo", 2, "expected auto, cpu, cuda or cuda:N"),
    ("cuda:-1", 2, "expected auto"), ("gpu", 1, "got 'gpu'"),
])
def test_device_errors_are_clear(monkeypatch, spec, count, match):
    FakeCuda(monkeypatch, count=count)
    with pytest.raises(ValueError, match=match):
        resolve_device(spec)


def test_device_cuda_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA device is available"):
        resolve_device("cuda")


def test_cuda_rng_state_is_captured_as_tensors_and_restored(monkeypatch, tmp_path):
    fake = FakeCuda(monkeypatch, count=2)
    state = capture_rng_state()
    assert [torch.equal(a, b) for a, b in zip(state["cuda"], fake.rng, strict=True)] == [True] * 2
    atomic_save({"model": {}, "rng": state}, tmp_path / "ck.pt")
    loaded = load_checkpoint(tmp_path / "ck.pt")  # weights_only=True
    restore_rng_state(loaded["rng"])
    assert all(torch.equal(a, b) for a, b in zip(fake.restored, fake.rng, strict=True))


def test_autocast_context_on_cuda_uses_the_requested_dtype():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available ... disabling autocast"
        bf16 = autocast_context(torch.device("cuda", 0), "bf16")
        fp16 = autocast_context(torch.device("cuda", 0), "fp16")
    assert (bf16.device, bf16.fast_dtype) == ("cuda", torch.bfloat16)
    assert (fp16.device, fp16.fast_dtype) == ("cuda", torch.float16)
    assert autocast_context(torch.device("cpu"), "bf16").fast_dtype == torch.bfloat16


def test_cuda_trainer_loads_batches_into_pinned_memory(trained, monkeypatch):
    seen: dict = {}

    class RecordingLoader:
        def __init__(self, *args, **kwargs) -> None:
            seen.update(kwargs)

        def __iter__(self):
            return iter([{"video": torch.zeros(1)}])

    from xreid.data.batches import TrainBatches

    monkeypatch.setattr(torch.utils.data, "DataLoader", RecordingLoader)
    assert trained.train_batches.pin_memory is False  # a CPU run
    tracklets = trained.evaluator.reader.train
    next(TrainBatches(tracklets, trained.config.data, pin_memory=True)(0))
    assert seen["pin_memory"] is True
    next(trained.epoch_batches(0))
    assert seen["pin_memory"] is False


# --------------------------------------------------------------------------- checkpoints
def test_python_numpy_torch_rng_round_trip_through_weights_only(tmp_path):
    import random

    import numpy as np

    random.seed(3)
    np.random.seed(4)  # noqa: NPY002
    torch.manual_seed(5)
    random.gauss(0, 1)  # sets Python's cached gauss_next
    atomic_save({"model": {}, "rng": capture_rng_state()}, tmp_path / "ck.pt")
    expected = (random.random(), random.gauss(0, 1), np.random.rand(),  # noqa: NPY002
                torch.rand(1).item())
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002
    torch.manual_seed(0)
    restore_rng_state(load_checkpoint(tmp_path / "ck.pt")["rng"])
    assert (random.random(), random.gauss(0, 1), np.random.rand(),  # noqa: NPY002
            torch.rand(1).item()) == expected


def _payload(marker: str) -> None:
    Path(marker).write_text("the payload ran")


class Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_payload, (self.marker,))


def test_a_crafted_checkpoint_is_refused_and_its_payload_never_runs(tmp_path, trained):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.ones(1)}, "x": Payload(str(marker))}, evil)
    torch.load(evil, weights_only=False)  # sanity: the payload is live ...
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ValueError, match=r"refusing to load .*evil\.pt"):
        load_checkpoint(evil)  # --resume
    with pytest.raises(ValueError, match=r"refusing to load .*evil\.pt"):
        trained.load_checkpoint(evil, resume=False)  # --eval-only --checkpoint
    from xreid.backbones.weights import read_checkpoint
    from xreid.convert import convert_checkpoint

    with pytest.raises(ValueError, match="evil.pt"):
        read_checkpoint(evil)  # --weights
    with pytest.raises(ValueError, match="evil.pt"):
        convert_checkpoint(evil, tmp_path / "out.safetensors")
    assert not marker.exists()  # ... and never ran


def test_trainer_checkpoint_holds_only_plain_values(trained):
    path = Path(trained.config.run.output_dir) / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    assert state["format"] == "xreid-train-checkpoint-v1"
    assert state["config"] == trained.config.to_dict()
    assert state["num_identities"] == trained.evaluator.reader.num_train_identities == 8
    assert state["num_cameras"] == trained.evaluator.reader.num_cameras
    assert isinstance(state["num_identities"], int) and isinstance(state["num_cameras"], int)
    assert set(state["model"]) == set(trained.core.state_dict())


def test_trainer_checkpoint_is_loadable_as_weights_and_by_convert(tmp_path, trained):
    from xreid import build_backbone
    from xreid.convert import convert_checkpoint

    path = Path(trained.config.run.output_dir) / "checkpoint.pt"
    cams = trained.evaluator.reader.num_cameras
    bb = build_backbone("tiny", img_size=(32, 16), weights=str(path), num_cameras=cams)
    ref = {k.removeprefix("backbone."): v for k, v in trained.core.state_dict().items()
           if k.startswith("backbone.")}
    got = bb.state_dict()
    assert set(ref) == set(got)
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    out = tmp_path / "converted.safetensors"
    convert_checkpoint(path, out)
    bb2 = build_backbone("tiny", img_size=(32, 16), weights=str(out), num_cameras=cams)
    assert all(torch.equal(ref[k], v) for k, v in bb2.state_dict().items())


def test_checkpoint_of_another_architecture_names_the_shapes(tmp_path, trained):
    other = build_trainer(tiny_config(tmp_path, embed_dim=48, num_heads=3))
    path = Path(trained.config.run.output_dir) / "checkpoint.pt"
    with pytest.raises(ValueError, match=r"does not match this model .*shape"):
        other.load_checkpoint(path, resume=False)


def test_disk_full_names_the_file_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"model": {"w": torch.ones(2)}}, path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    for target, name in ((torch, "save"), (os, "replace")):
        with monkeypatch.context() as m:
            m.setattr(target, name, full)
            with pytest.raises(OSError, match=r"could not write .*checkpoint\.pt .*No space "
                               r"left.*previous checkpoint\.pt is intact") as info:
                atomic_save({"model": {"w": torch.zeros(2)}}, path)
        assert info.value.errno == errno.ENOSPC
        assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
        assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_torch_stream_writer_failure_is_reported_as_a_write_error(tmp_path, monkeypatch):
    def enforce_fail(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter "
                           "failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", enforce_fail)
    with pytest.raises(OSError, match=r"could not write .*ck\.pt.*no previous ck\.pt existed"):
        atomic_save({"model": {}}, tmp_path / "ck.pt")


def test_unwritable_checkpoint_folder(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", denied)
    with pytest.raises(OSError, match=r"cannot write .*ro/ck\.pt \(Permission denied\)"):
        atomic_save({"model": {}}, tmp_path / "ro" / "ck.pt")


def test_checkpoint_respects_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        atomic_save({"model": {}}, tmp_path / "a.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.pt").stat().st_mode) == 0o640


# ------------------------------------------------------------------ killed runs, logs, NaN
def test_stale_temporaries_are_removed_at_the_next_start(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".checkpoint.pt.abc123.tmp").write_bytes(b"half")
    (out / "keep.txt").write_text("x")
    assert [p.name for p in remove_stale_temporaries(out)] == [".checkpoint.pt.abc123.tmp"]
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    root = tmp_path / "data"
    dead = tmp_path / "data.tmp-999999999"  # no such pid
    alive = tmp_path / f"data.tmp-{os.getpid()}"
    for d in (dead, alive):
        d.mkdir()
    assert remove_stale_dataset_temporaries(root) == [dead]
    assert alive.exists() and not dead.exists()


def test_trainer_start_removes_stale_checkpoint_temporaries(tmp_path):
    cfg = tiny_config(tmp_path)
    Path(cfg.run.output_dir).mkdir(parents=True)
    stale = Path(cfg.run.output_dir) / ".checkpoint.pt.x1y2.tmp"
    stale.write_bytes(b"half")
    build_trainer(cfg)
    assert not stale.exists()


def test_resume_truncates_the_log_to_the_checkpoint(tmp_path):
    log = tmp_path / "log.jsonl"
    recs = [{"event": "iteration", "epoch": 1, "iteration": 1},
            {"event": "iteration", "epoch": 1, "iteration": 2},
            {"event": "epoch", "epoch": 1},
            {"event": "iteration", "epoch": 2, "iteration": 3},
            {"event": "epoch", "epoch": 2},
            {"event": "evaluation", "tag": "after", "epoch": 2}]
    log.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"event": "itera')
    truncate_log(log, epoch=1, iteration=2)
    assert [json.loads(x) for x in log.read_text().splitlines()] == recs[:3]


@pytest.mark.slow
def test_resumed_run_does_not_repeat_iterations_in_the_log(tmp_path):
    first = build_trainer(tiny_config(tmp_path, epochs=2, iters_per_epoch=2, save_every=1))
    first.fit()
    log = Path(first.config.run.output_dir) / "log.jsonl"
    before = [json.loads(x) for x in log.read_text().splitlines()]
    # simulate a run killed after its epoch-1 checkpoint: write that checkpoint
    ck = tmp_path / "epoch1.pt"
    redo = build_trainer(tiny_config(tmp_path / "redo", epochs=1, iters_per_epoch=2))
    redo.fit()
    redo.save_checkpoint(ck)
    resumed = build_trainer(tiny_config(tmp_path, epochs=2, iters_per_epoch=2, save_every=1))
    resumed.load_checkpoint(ck)
    kept = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["iteration"] for r in kept if r["event"] == "iteration"] == [1, 2]
    assert [r["epoch"] for r in kept if r["event"] == "epoch"] == [1]
    resumed.fit()
    final = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["iteration"] for r in final if r["event"] == "iteration"] == [1, 2, 3, 4]
    # the same records, plus one "run" record for the resumed fit
    assert [r["event"] for r in final].count("run") == 2
    assert len(before) + 1 == len(final)


def test_non_finite_loss_is_reported_before_the_memory_update(tmp_path, monkeypatch):
    trainer = build_trainer(tiny_config(tmp_path, epochs=1, iters_per_epoch=2))
    trainer.find_hook(MemoryInitHook).initialize(trainer.epoch)
    memory_before = {k: v.clone() for k, v in trainer.core.memory.state_dict().items()}
    weights_before = {k: v.clone() for k, v in trainer.core.named_parameters()}
    calls = []
    monkeypatch.setattr(type(trainer.core.memory), "update",
                        lambda *a, **k: calls.append(1))
    real_forward = type(trainer.loss.loss_fn).forward

    def nan_loss(self, *args, **kwargs):
        result = real_forward(self, *args, **kwargs)
        key = next(iter(result.terms))
        result.terms[key] = result.terms[key] * float("nan")
        return dataclasses.replace(result, total=result.total * float("nan"))

    monkeypatch.setattr(type(trainer.loss.loss_fn), "forward", nan_loss)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at epoch 1, iteration 1") \
            as info:
        trainer.fit()
    assert "total" in info.value.terms and any(v != v for v in info.value.terms.values())
    assert calls == []  # memory.update never ran
    for k, v in trainer.core.memory.state_dict().items():
        assert torch.equal(v, memory_before[k]), k
    for k, v in trainer.core.named_parameters():
        assert torch.equal(v, weights_before[k]), k


# ------------------------------------------------------------------ CLI: data loss, resume
def test_new_run_into_an_existing_run_is_refused(tmp_path, capsys):
    train_vvi = cli()
    cfg = tiny_config(tmp_path)
    out = Path(cfg.run.output_dir)
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")
    (out / "log.jsonl").write_text("old\n")
    assert train_vvi.main(cli_args(cfg)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("train_vvi.py: error: --output-dir") and str(out) in err
    assert "\n" not in err and "--overwrite" in err
    assert (out / "log.jsonl").read_text() == "old\n"  # untouched


def test_overwrite_replaces_and_resume_continues(tmp_path, capsys):
    train_vvi = cli()
    cfg = tiny_config(tmp_path)
    out = Path(cfg.run.output_dir)
    out.mkdir(parents=True)
    (out / "log.jsonl").write_text('{"event": "stale"}\n')
    assert train_vvi.main(cli_args(cfg, "--overwrite")) == 0
    log = (out / "log.jsonl").read_text()
    assert "stale" not in log
    ck = out / "checkpoint.pt"
    # --resume with the checkpoint's options (none repeated) and a longer schedule
    args = ["--no-progress", "--resume", str(ck), "--epochs", "2"]
    assert train_vvi.main(args) == 0
    assert json.loads((out / "config.json").read_text())["optim"]["epochs"] == 2
    assert torch.load(ck, weights_only=True)["epoch"] == 2


def test_resume_with_a_conflicting_option_is_refused(tmp_path, trained, capsys):
    train_vvi = cli()
    ck = Path(trained.config.run.output_dir) / "checkpoint.pt"
    assert train_vvi.main(["--no-progress", "--resume", str(ck), "--lr", "0.5",
                           "--gamma", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--optim.lr (checkpoint 0.0003, given 0.5)" in err and "--optim.gamma" in err
    # the library refuses too (a config that differs from the checkpoint's)
    other = build_trainer(tiny_config(Path(trained.config.run.output_dir).parent / "x", lr=0.5))
    with pytest.raises(ValueError, match=r"lr=0\.0003 \(now 0\.5\)"):
        other.load_checkpoint(ck)


def test_resumable_options_are_documented():
    from xreid.engine.config import RESUMABLE_OPTIONS

    doc = (ROOT / "docs" / "reliability.md").read_text()
    for name in RESUMABLE_OPTIONS:
        assert f"`{name}`" in doc, name


# ------------------------------------------------------------------------- gpu_check script
def load_gpu_check():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" /
                                                  "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_imports_and_helps_on_cpu(capsys, monkeypatch):
    import subprocess

    script = ROOT / "benchmarks" / "gpu_check.py"
    help_run = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                              text=True, check=False)
    assert help_run.returncode == 0 and "--output" in help_run.stdout
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load_gpu_check().main(["--output", "x.json"]) == 1
    assert capsys.readouterr().err.strip() == (
        "gpu_check.py: error: no CUDA device is available; this check needs one GPU "
        "(nothing was measured)")


def test_eval_only_uses_the_checkpoint_configuration(tmp_path, trained, capsys):
    ck = Path(trained.config.run.output_dir) / "checkpoint.pt"
    out = tmp_path / "eval"
    assert cli().main(["--no-progress", "--eval-only", "--checkpoint", str(ck),
                       "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics_eval.json").read_text())
    data = metrics["config"]["data"]
    assert data["img_size"] == [32, 16] and data["num_frames"] == 3
    assert set(metrics["eval"]) == {"i2v", "v2i"}


def test_gpu_check_smoke_run_on_cpu(tmp_path, capsys):
    """The measuring code runs end to end (tiny shapes on the CPU; numbers meaningless)."""
    gpu_check = load_gpu_check()
    out = tmp_path / "r.json"
    assert gpu_check.main(["--smoke", "--steps", "1", "--warmup", "0", "--identities", "8",
                           "--extract-batch", "4", "--output", str(out)]) == 0
    tp = json.loads(out.read_text())["throughput"]
    assert tp["train_step_full_s"] > 0 and tp["train_step_backbone_s"] > 0
    assert tp["train_full_over_backbone"] == pytest.approx(
        tp["train_step_full_s"] / tp["train_step_backbone_s"])
    assert "train step, full X-ReID" in capsys.readouterr().out

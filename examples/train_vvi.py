#!/usr/bin/env python
"""Train and evaluate X-ReID for video-based visible-infrared person re-identification.

With no arguments: generate (once) a small synthetic dataset in the HITSZ-VCM layout, train the
full X-ReID model (CPC + SII + LII + CII, every Eq. 10 loss) with the "tiny" backbone on CPU,
evaluate I2V and V2I before and after training, and write metrics.json, plots, a JSONL log and
the final checkpoint into --output-dir.

Real data:
    python examples/train_vvi.py --preset paper --dataset hitsz-vcm --root /data/HITSZ-VCM \\
        --weights ViT-B-16.safetensors --device cuda --amp bf16
Several GPUs:
    torchrun --nproc_per_node 4 examples/train_vvi.py --preset paper ...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from xreid.engine import Callbacks, TrainConfig, Trainer
from xreid.engine.config import PRESET_NAMES

HELP = {
    "dataset": "dataset reader: synthetic (generated offline), hitsz-vcm or bupt-campus",
    "root": "dataset folder (synthetic: where to generate/cache it)",
    "img_size": "input height and width",
    "num_frames": "frames per clip T",
    "ids_per_batch": "identities per batch P",
    "clips_per_modality": "clips per identity and modality K",
    "backbone": "tiny | clip-vit-b16 | clip-vit-b16-openclip",
    "weights": "local weights file (OpenAI ViT-B-16.pt, open_clip state dict or safetensors)",
    "random_init": "allow a CLIP backbone without --weights (random init; smoke tests only)",
    "min_len": "drop tracklets shorter than this (default: the dataset's, HITSZ-VCM 12, "
               "BUPTCampus 1)",
    "model_preset": "X-ReID heads: paper | official",
    "loss_preset": "Eq. 10 weights: paper | official",
    "memory_init": "CPC memory: once (paper) | every_epoch (authors' code)",
    "iters_per_epoch": "iterations per epoch (default: one pass of the identity sampler)",
    "milestones": "1-based epochs after which the LR is multiplied by gamma",
    "device": "auto | cpu | cuda | cuda:N",
    "amp": "mixed precision: none | bf16 | fp16",
    "compile": "torch.compile the backbone and MII",
    "output_dir": "where metrics.json, plots, log.jsonl and checkpoint.pt go",
    "pixel_baseline": "also rank the test split by raw pixels (metrics.json baselines.pixels)",
}


def _field_type(f: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(TrainConfig)
    return hints[f.name]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", choices=PRESET_NAMES, default="demo",
                   help="base configuration; every flag below overrides it (default: demo)")
    p.add_argument("--config", help="JSON config file (e.g. a run's config.json) to start from")
    p.add_argument("--resume", metavar="PATH", help="continue training from a checkpoint")
    p.add_argument("--eval-only", action="store_true", help="only evaluate --checkpoint")
    p.add_argument("--checkpoint", metavar="PATH", help="weights for --eval-only")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    group = p.add_argument_group("configuration (defaults come from the preset)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("preset", "extra"):
            continue
        flag = "--" + f.name.replace("_", "-")
        t = _field_type(f)
        args = typing.get_args(t)
        kw: dict[str, Any] = {"default": None, "help": HELP.get(f.name, "")}
        if t is bool or (args and bool in args):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif typing.get_origin(t) is tuple:
            n = "+" if Ellipsis in args else len(args)
            group.add_argument(flag, nargs=n, type=int, **kw)
        else:
            base = next((a for a in args if a is not type(None)), t) if args else t
            if isinstance(base, types.GenericAlias):
                base = str
            group.add_argument(flag, type=base, **kw)
    return p


def make_config(ns: argparse.Namespace) -> TrainConfig:
    overrides = {
        f.name: getattr(ns, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(ns, f.name, None) is not None
    }
    if ns.config:
        base = json.loads(Path(ns.config).read_text())
        base.update(overrides)
        return TrainConfig.from_dict(base)
    return TrainConfig.from_preset(ns.preset, **overrides)


class ConsoleCallbacks(Callbacks):
    """tqdm progress bars and messages on stdout."""

    def __init__(self, enabled: bool = True) -> None:
        from tqdm.auto import tqdm

        self.tqdm = tqdm
        self.enabled = enabled
        self.bar = None

    def on_message(self, trainer, text):
        self.tqdm.write(f"[xreid] {text}")

    def on_epoch_start(self, trainer, epoch, num_iterations):
        self.bar = self.tqdm(total=num_iterations, desc=f"epoch {epoch + 1}/{trainer.cfg.epochs}",
                             disable=not self.enabled, leave=False, dynamic_ncols=True)

    def on_iteration(self, trainer, epoch, iteration, logs):
        if self.bar is not None:
            shown = {k: f"{v:.3f}" for k, v in logs.items() if k != "lr"}
            shown["lr"] = f"{logs['lr']:.1e}"
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)

    def on_epoch_end(self, trainer, epoch, logs):
        if self.bar is not None:
            self.bar.close()
        terms = "  ".join(f"{k}={v:.4f}" for k, v in logs.items() if k != "lr")
        self.tqdm.write(f"[xreid] epoch {epoch + 1}/{trainer.cfg.epochs}  {terms}  "
                        f"lr={logs.get('lr', 0):.2e}")

    def on_evaluation_start(self, trainer, tag):
        bar = self.tqdm(desc=f"evaluating ({tag})", unit="clip", disable=not self.enabled,
                        leave=False, dynamic_ncols=True)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()
            if done >= total:
                bar.close()

        return progress

    def on_evaluation(self, trainer, tag, result):
        self.tqdm.write(f"[xreid] evaluation '{tag}' after {trainer.epoch} epoch(s):\n"
                        + result.format_table())


def print_summary(metrics: dict[str, Any]) -> None:
    keys = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
    print("\n" + f"{'':<14}" + "".join(f"{k:>9}" for k in keys))
    rows = {"pixels": metrics.get("baselines", {}).get("pixels", {}),
            **{tag: metrics.get(tag, {}) for tag in ("before", "after", "eval")}}
    for tag, values in rows.items():
        for direction in ("i2v", "v2i"):
            row = values.get(direction)
            if row:
                print(f"{tag + ' ' + direction.upper():<14}"
                      + "".join(f"{100 * row[k]:>8.2f}%" for k in keys))


def plot_training_curve(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    keys = [k for k in history[0] if k not in ("event", "epoch", "lr", "time")]
    fig, ax = plt.subplots(figsize=(7, 4))
    for k in keys:
        ax.plot(epochs, [h[k] for h in history], marker="o", label=k)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (epoch mean)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    cfg = make_config(ns)
    callbacks = ConsoleCallbacks(enabled=not ns.no_progress)
    trainer = Trainer(cfg, callbacks)
    try:
        out = Path(cfg.output_dir)
        if ns.eval_only:
            if not ns.checkpoint:
                print("error: --eval-only needs --checkpoint PATH", file=sys.stderr)
                return 2
            trainer.load_checkpoint(ns.checkpoint, resume=False)
            trainer.evaluate("eval")
            metrics = trainer.metrics()
            if trainer.is_main:
                (out / "metrics_eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
        else:
            if ns.resume:
                trainer.load_checkpoint(ns.resume, resume=True)
                callbacks.on_message(trainer, f"resumed from {ns.resume} at epoch {trainer.epoch}")
            metrics = trainer.fit()
        if trainer.is_main:
            from xreid.metrics import plot_cmc

            tag = "eval" if ns.eval_only else "after"
            plot_cmc(trainer.results[tag], out / "cmc.png", title=f"CMC ({tag})")
            if trainer.history:
                plot_training_curve(trainer.history, out / "training_curve.png")
            print_summary(metrics)
            print(f"\nwrote {out}/: metrics.json, cmc.png, training_curve.png, log.jsonl, "
                  "config.json, checkpoint.pt")
    finally:
        trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

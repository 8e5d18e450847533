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
import importlib.util
import json
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any

from xreid.engine import Callbacks, TrainConfig, Trainer
from xreid.engine.checkpoint import error_message
from xreid.engine.config import PRESET_NAMES


def _field_type(f: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(TrainConfig)
    return hints[f.name]


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump), exit code 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(
        prog="train_vvi.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", choices=PRESET_NAMES, default=None,
                   help="base configuration; every flag below overrides it (default: demo; "
                   "with --resume: the checkpoint's configuration)")
    p.add_argument("--config", help="JSON config file (e.g. a run's config.json) to start from")
    p.add_argument("--resume", metavar="PATH", help="continue training from a checkpoint")
    p.add_argument("--eval-only", action="store_true",
                   help="only evaluate --checkpoint; the output goes to --output-dir when "
                   "given, else to a new eval-<time>/ folder next to the checkpoint")
    p.add_argument("--checkpoint", metavar="PATH", help="weights for --eval-only")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--visualize", type=int, default=0, metavar="N",
                   help="after evaluation, write ranked-results pictures of the N lowest-AP "
                        "queries of each direction (ranked_i2v.png, ranked_v2i.png)")
    p.add_argument("--tsne", action=argparse.BooleanOptionalAction, default=None,
                   help="t-SNE of the test embeddings before and after training "
                        "(tsne_before.png, tsne_after.png; needs scikit-learn; default: on "
                        "for the synthetic dataset)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --output-dir (default: refuse)")
    p.add_argument("--debug", action="store_true",
                   help="show the full Python traceback of an error")
    group = p.add_argument_group("configuration (defaults come from the preset)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("preset", "extra"):
            continue
        flag = "--" + f.name.replace("_", "-")
        t = _field_type(f)
        args = typing.get_args(t)
        kw: dict[str, Any] = {"default": None, "help": f.metadata["help"]}
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


RUN_FILES = ("checkpoint.pt", "config.json", "metrics.json", "log.jsonl")
#: what --overwrite removes before the new run starts
REPLACED_FILES = (*RUN_FILES, "metrics_eval.json", "cmc.png", "training_curve.png")


class UsageError(ValueError):
    """A bad command line (exit code 2)."""


def read_config_file(path: str) -> dict[str, Any]:
    """The JSON object in ``path``; errors name the file."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"--config: no such file {path}") from None
    except OSError as exc:
        raise ValueError(f"--config: cannot read {path}: {exc.strerror or exc}") from None
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--config: {path} is not valid JSON ({exc.msg} at line {exc.lineno}, "
                         f"column {exc.colno})") from None
    if not isinstance(values, dict):
        raise ValueError(f"--config: expected a JSON object of options in {path}, got a "
                         f"{type(values).__name__}")
    return values


def saved_config(ns: argparse.Namespace) -> dict[str, Any] | None:
    """The configuration stored in the ``--resume`` (or ``--eval-only --checkpoint``)
    checkpoint, when neither ``--config`` nor ``--preset`` is given; else None."""
    path = ns.resume or (ns.checkpoint if ns.eval_only else None)
    if not path or ns.config or ns.preset is not None:
        return None
    from xreid.engine import load_checkpoint

    saved = load_checkpoint(path).get("config")
    return saved if isinstance(saved, dict) else None


def make_config(ns: argparse.Namespace, saved: dict[str, Any] | None = None) -> TrainConfig:
    """``--config`` file, else the checkpoint's ``saved`` configuration, else ``--preset``;
    then the explicit flags. On ``--resume`` a flag may not change an option the checkpoint
    fixes (see ``xreid.engine.trainer.RESUMABLE_OPTIONS``)."""
    overrides = {
        f.name: getattr(ns, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(ns, f.name, None) is not None
    }
    if ns.config:
        base = read_config_file(ns.config)
        if ns.variant:
            from xreid.engine.variants import get_variant

            base.update(get_variant(ns.variant).overrides)
        base.update(overrides)
        try:
            return TrainConfig.from_dict(base)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"--config {ns.config}: {exc}") from None
    if saved is not None:
        cfg = TrainConfig.from_dict({**saved, **overrides})
        if ns.resume:
            from xreid.engine.trainer import resume_conflicts

            conflicts = resume_conflicts(saved, cfg.to_dict())
            if conflicts:
                raise UsageError(
                    f"--resume {ns.resume}: cannot change "
                    + ", ".join(f"--{k.replace('_', '-')} (checkpoint {saved[k]!r}, "
                                f"given {v!r})" for k, v in conflicts.items())
                    + " when resuming; drop these flags or start a new run"
                )
        return cfg
    return TrainConfig.from_preset(ns.preset or "demo", **overrides)


def prepare_output_dir(out: Path, *, resume: bool, overwrite: bool, eval_only: bool) -> None:
    """Refuse to start a new run over an existing one unless ``overwrite`` (then remove its
    files) or ``resume``. Evaluation only writes ``metrics_eval.json`` and is always allowed."""
    if eval_only or resume or not out.is_dir():
        return
    found = [name for name in RUN_FILES if (out / name).exists()]
    if not found:
        return
    if not overwrite:
        resume = (f"pass --resume {out / 'checkpoint.pt'} to continue it, "
                  if (out / "checkpoint.pt").exists()
                  else "it wrote no checkpoint, so it cannot be resumed; pass ")
        raise UsageError(
            f"--output-dir {out} already holds a run ({', '.join(found)}); {resume}"
            "--overwrite to replace it, or another --output-dir"
        )
    for name in REPLACED_FILES:
        (out / name).unlink(missing_ok=True)


class ConsoleCallbacks(Callbacks):
    """tqdm progress bars and messages on stdout."""

    def __init__(self, enabled: bool = True) -> None:
        from tqdm.auto import tqdm

        self.tqdm = tqdm
        self.enabled = enabled
        # None: tqdm shows no bar when the stream is not a terminal (no \r frames in logs)
        self.disable: bool | None = None if enabled else True
        self.bar = None

    def on_message(self, trainer, text):
        self.tqdm.write(f"[xreid] {text}")

    def on_epoch_start(self, trainer, epoch, num_iterations):
        self.bar = self.tqdm(total=num_iterations, desc=f"epoch {epoch + 1}/{trainer.cfg.epochs}",
                             disable=self.disable, leave=False, dynamic_ncols=True)

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
        bar = self.tqdm(desc=f"evaluating ({tag})", unit="clip", disable=self.disable,
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
    """The test rows, then the validation rows (when the run has a validation split)."""
    keys = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
    start = "pretrained" if metrics.get("config", {}).get("weights") else "untrained"
    for title, part in (("test", metrics), ("validation", metrics.get("validation"))):
        if not part:
            continue
        print(f"\n{title:<22}" + "".join(f"{k:>9}" for k in keys))
        baselines = part.get("baselines", {})
        rows = {"pixels": baselines.get("pixels", {}), start: baselines.get(start, {}),
                "trained": part.get("after", {}), "eval": part.get("eval", {})}
        for tag, values in rows.items():
            for direction in ("i2v", "v2i"):
                row = values.get(direction)
                if row:
                    print(f"{tag + ' ' + direction.upper():<22}"
                          + "".join(f"{100 * row[k]:>8.2f}%" for k in keys))


PROG = "train_vvi.py"


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run; errors are one line on stderr (the traceback with --debug).

    Exit codes: 0 success, 2 bad command line, 1 any other error.
    """
    ns = build_parser().parse_args(argv)  # argparse itself exits with 2 and a one-line error
    from xreid.output_files import OutputRefused

    try:
        return run(ns)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if ns.debug:
            raise
        message = error_message(exc)
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2 if isinstance(exc, (UsageError, OutputRefused)) else 1
    finally:
        if getattr(ns, "run_lock", None) is not None:
            ns.run_lock.release()


def run(ns: argparse.Namespace) -> int:
    if ns.eval_only and not ns.checkpoint:
        raise UsageError("--eval-only needs --checkpoint PATH")
    if ns.resume and ns.eval_only:
        raise UsageError("--resume and --eval-only cannot be combined")
    if ns.checkpoint and not ns.eval_only:
        raise UsageError("--checkpoint is read only with --eval-only; pass --resume PATH to "
                         "continue training it, or --weights PATH to start from its weights")
    saved = saved_config(ns)  # a missing or unreadable checkpoint is not a usage error
    try:
        cfg = make_config(ns, saved)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise exc if isinstance(exc, UsageError) else UsageError(str(exc)) from exc
    from xreid.inference import eval_output_dir, format_written, snapshot_files, written_files

    if ns.eval_only:  # a folder of its own: the run's files are never replaced
        out = eval_output_dir(Path(ns.checkpoint).parent, ns.output_dir)
        if cfg.dataset == "synthetic" and not cfg.root:
            from xreid.engine.trainer import synthetic_root

            cfg = dataclasses.replace(cfg, root=str(synthetic_root(cfg)))
        cfg = dataclasses.replace(cfg, output_dir=str(out))
    from xreid.engine import run_folder
    from xreid.output_files import remove_stale_temporaries

    if ns.resume:  # continue where the checkpoint is (or in --output-dir), never elsewhere
        cfg = dataclasses.replace(cfg, output_dir=str(run_folder.resume_output_dir(
            ns.resume, output_dir=getattr(ns, "output_dir", None), overwrite=ns.overwrite)))
    if int(os.environ.get("RANK", "0")) == 0:  # one run per folder, for the whole run
        ns.run_lock = run_folder.acquire_run_lock(cfg.output_dir,
                                                  break_stale=ns.overwrite or bool(ns.resume))
        remove_stale_temporaries(cfg.output_dir)  # a killed write's, under the lock
    prepare_output_dir(Path(cfg.output_dir), resume=bool(ns.resume), overwrite=ns.overwrite,
                       eval_only=ns.eval_only)
    run_folder.check_run_pictures(cfg.output_dir, run_files=RUN_FILES, overwrite=ns.overwrite)
    out = Path(cfg.output_dir)
    before = snapshot_files(out)
    callbacks = ConsoleCallbacks(enabled=not ns.no_progress)
    trainer = Trainer(cfg, callbacks)
    want_tsne = ns.tsne if ns.tsne is not None else cfg.dataset == "synthetic"
    want_tsne = want_tsne and importlib.util.find_spec("sklearn") is not None
    if want_tsne or ns.visualize > 0:
        from xreid.inference import save_ranked_results, save_tsne
    try:
        if ns.eval_only:
            trainer.load_checkpoint(ns.checkpoint, resume=False)
            trainer.evaluate("eval")
            metrics = trainer.metrics()
            if trainer.is_main:
                (out / "metrics_eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
        else:
            if ns.resume:
                trainer.load_checkpoint(ns.resume, resume=True)
                callbacks.on_message(trainer, f"resumed from {ns.resume} at epoch {trainer.epoch}")
            if want_tsne and trainer.epoch == 0 and trainer.is_main:
                save_tsne(trainer.core, trainer.reader, cfg, out / "tsne_before.png",
                          title="t-SNE before training")
            metrics = trainer.fit()
        if trainer.is_main and want_tsne:
            save_tsne(trainer.core, trainer.reader, cfg, out / "tsne_after.png",
                      title="t-SNE after training" if not ns.eval_only else "t-SNE")
        if trainer.is_main and ns.visualize > 0:
            for direction in ("i2v", "v2i"):
                save_ranked_results(trainer.core, trainer.reader, cfg,
                                    out / f"ranked_{direction}.png",
                                    num_queries=ns.visualize, direction=direction)
        if trainer.is_main:
            from xreid.inference import plot_training_curve
            from xreid.metrics import plot_cmc

            tag = "eval" if ns.eval_only else "after"
            plot_cmc(trainer.results[tag], out / "cmc.png", title=f"CMC ({tag})")
            if not ns.eval_only and (out / "log.jsonl").is_file():
                plot_training_curve(out / "log.jsonl", out / "training_curve.png")
            print_summary(metrics)
            print("\n" + format_written(out, written_files(out, before)))
    finally:
        trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

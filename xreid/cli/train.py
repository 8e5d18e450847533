"""``xreid train``: train and evaluate X-ReID as a configuration says (the reference loop).

With no arguments: generate (once) a small synthetic dataset in the HITSZ-VCM layout, train the
full X-ReID model (CPC + SII + LII + CII, every Eq. 10 loss) with the "tiny" backbone on CPU,
evaluate I2V and V2I before and after training, and write metrics.json, plots, a JSONL log and
the final checkpoint into ``--run.output_dir``.

Configuration: preset → variant → ``--config`` file (YAML/JSON) → ``--section.option`` flags
(``xreid.cli.train_args``); ``--print-config`` prints the resolved configuration as YAML, which
``--config`` reads back. Exit codes: 0 success, 2 bad command line or configuration, 1 any
other error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from xreid.cli.train_args import (
    UsageError,
    apply_flags,
    build_config_parser,
    read_config_file,
    translate_argv,
)
from xreid.data.build import synthetic_root
from xreid.engine.build import build_trainer
from xreid.engine.checkpoint import error_message, load_checkpoint
from xreid.engine.config import TrainConfig, check_types, resolve_values, resume_conflicts
from xreid.engine.hooks import Hook
from xreid.presets import PRESET_NAMES

__all__ = ["build_train_parser", "make_config", "prepare_output_dir", "train_main"]

RUN_FILES = ("checkpoint.pt", "config.json", "metrics.json", "log.jsonl")
#: what --overwrite removes before the new run starts
REPLACED_FILES = (*RUN_FILES, "metrics_eval.json", "cmc.png", "training_curve.png")


class _OneLineArgs(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise UsageError(message)


def build_train_parser(prog: str = "xreid train") -> argparse.ArgumentParser:
    """The command's own flags; every other flag is a configuration option."""
    p = _OneLineArgs(prog=prog, description=__doc__, add_help=False, allow_abbrev=False,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    p.add_argument("--preset", choices=PRESET_NAMES, default=None,
                   help="base configuration (default: demo; with --resume: the checkpoint's)")
    p.add_argument("--variant", default=None,
                   help="a named ablation (e.g. tab5/3), applied on top of the preset")
    p.add_argument("--config", help="YAML or JSON configuration file (e.g. --print-config's "
                   "output or a run's config.json), applied over preset and variant")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration as YAML and exit")
    p.add_argument("--resume", metavar="PATH", help="continue training from a checkpoint")
    p.add_argument("--eval-only", action="store_true",
                   help="only evaluate --checkpoint; the output goes to --run.output_dir when "
                   "given, else to a new eval-<time>/ folder next to the checkpoint")
    p.add_argument("--checkpoint", metavar="PATH", help="weights for --eval-only")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--visualize", type=int, default=0, metavar="N",
                   help="after evaluation, write ranked-results pictures of the N lowest-AP "
                        "queries of each direction (ranked_i2v.png, ranked_v2i.png)")
    p.add_argument("--tsne", action=argparse.BooleanOptionalAction, default=None,
                   help="t-SNE of the test embeddings before and after training "
                        "(needs scikit-learn; default: on for the synthetic dataset)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in the output folder (default: refuse)")
    p.add_argument("--debug", action="store_true",
                   help="show the full Python traceback of an error")
    return p


def make_config(ns: argparse.Namespace, rest: list[str]) -> TrainConfig:
    """Preset → variant → ``--config`` file → flags; a resumed run (``--resume``, or
    ``--eval-only --checkpoint``) without ``--config`` starts from the checkpoint's
    configuration. On ``--resume`` an option not marked resumable may not change."""
    if ns.eval_only and not ns.checkpoint:
        raise UsageError("--eval-only needs --checkpoint PATH")
    if ns.resume and ns.eval_only:
        raise UsageError("--resume and --eval-only cannot be combined")
    if ns.checkpoint and not ns.eval_only:
        raise UsageError("--checkpoint is read only with --eval-only; pass --resume PATH to "
                         "continue training it, or --model.weights PATH to start from its "
                         "weights")
    argv = translate_argv(rest)
    source = ns.resume or (ns.checkpoint if ns.eval_only else None)
    saved = load_checkpoint(source).get("config") if source else None  # errors: exit 1
    try:
        if saved is not None and ns.resume:
            saved_cfg = TrainConfig.from_dict(saved)
            for flag, value, old in (("--preset", ns.preset, saved_cfg.preset),
                                     ("--variant", ns.variant, saved_cfg.variant)):
                if value is not None and value != old:
                    raise UsageError(
                        f"--resume {ns.resume}: cannot change {flag} (checkpoint {old!r}, "
                        f"given {value!r}) when resuming; drop {flag} or start a new run")
        if ns.config:
            base = resolve_values(ns.preset, ns.variant, read_config_file(ns.config))
            check_types(base)
        elif saved is not None and ns.preset is None:
            base = TrainConfig.from_dict(saved).to_dict()
        else:
            base = resolve_values(ns.preset, ns.variant)
        cfg = apply_flags(build_config_parser("xreid train"), base, argv)
    except UsageError:
        raise
    except (ValueError, TypeError) as exc:
        where = f"--config {ns.config}: " if ns.config else ""
        raise UsageError(where + " ".join(str(exc).split())) from None
    if ns.resume and saved is not None:
        conflicts = resume_conflicts(saved, cfg)
        if conflicts:
            raise UsageError(
                f"--resume {ns.resume}: cannot change "
                + ", ".join(f"--{k} (checkpoint {old!r}, given {new!r})"
                            for k, (old, new) in conflicts.items())
                + " when resuming; drop these options or start a new run"
            )
    return cfg


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


class ConsoleCallbacks(Hook):
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
        self.bar = self.tqdm(
            total=num_iterations,
            desc=f"epoch {epoch + 1}/{trainer.epochs}",
            disable=self.disable,
            leave=False,
            dynamic_ncols=True,
        )

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
        self.tqdm.write(
            f"[xreid] epoch {epoch + 1}/{trainer.epochs}  {terms}  "
            f"lr={logs.get('lr', 0):.2e}"
        )

    def on_evaluation_start(self, trainer, tag):
        bar = self.tqdm(
            desc=f"evaluating ({tag})",
            unit="clip",
            disable=self.disable,
            leave=False,
            dynamic_ncols=True,
        )

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()
            if done >= total:
                bar.close()

        return progress

    def on_evaluation(self, trainer, tag, result):
        self.tqdm.write(
            f"[xreid] evaluation '{tag}' after {trainer.epoch} epoch(s):\n" + result.format_table()
        )


def print_summary(metrics: dict[str, Any]) -> None:
    """The test rows, then the validation rows (when the run has a validation split)."""
    keys = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
    weights = ((metrics.get("config") or {}).get("model") or {}).get("weights")
    start = "pretrained" if weights else "untrained"
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


def _given_output_dir(rest: list[str]) -> str | None:
    """The output folder named on the command line (``--run.output_dir`` or its flat
    spelling ``--output-dir``), else None."""
    argv = translate_argv(rest)
    for i, arg in enumerate(argv):
        key, eq, value = arg.partition("=")
        if key == "--run.output_dir":
            return value if eq else (argv[i + 1] if i + 1 < len(argv) else None)
    return None


def run(ns: argparse.Namespace, rest: list[str]) -> int:
    cfg = make_config(ns, rest)
    if ns.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    from xreid.inference import eval_output_dir, format_written, snapshot_files, written_files

    if ns.eval_only:  # a folder of its own: the run's files are never replaced
        out = eval_output_dir(Path(ns.checkpoint).parent, _given_output_dir(rest))
        data: dict[str, Any] = {}
        if cfg.data.dataset == "synthetic" and not cfg.data.root:
            data["root"] = str(synthetic_root(cfg.data, cfg.run.output_dir))
        cfg = cfg.replace(data=data, run={"output_dir": str(out)})
    from xreid.engine import run_folder
    from xreid.output_files import remove_stale_temporaries

    if ns.resume:  # continue where the checkpoint is (or in the output folder given), only
        cfg = cfg.replace(run={"output_dir": str(run_folder.resume_output_dir(
            ns.resume, output_dir=_given_output_dir(rest), overwrite=ns.overwrite))})
    if int(os.environ.get("RANK", "0")) == 0:  # one run per folder, for the whole run
        ns.run_lock = run_folder.acquire_run_lock(cfg.run.output_dir,
                                                  break_stale=ns.overwrite or bool(ns.resume))
        remove_stale_temporaries(cfg.run.output_dir)  # a killed write's, under the lock
    prepare_output_dir(Path(cfg.run.output_dir), resume=bool(ns.resume), overwrite=ns.overwrite,
                       eval_only=ns.eval_only)
    run_folder.check_run_pictures(cfg.run.output_dir, run_files=RUN_FILES,
                                  overwrite=ns.overwrite)
    out = Path(cfg.run.output_dir)
    before = snapshot_files(out)
    callbacks = ConsoleCallbacks(enabled=not ns.no_progress)
    trainer = build_trainer(cfg, hooks=[callbacks])
    want_tsne = ns.tsne if ns.tsne is not None else cfg.data.dataset == "synthetic"
    want_tsne = want_tsne and importlib.util.find_spec("sklearn") is not None
    if want_tsne or ns.visualize > 0:
        from xreid.inference import save_ranked_results, save_tsne
    reader = trainer.evaluator.reader
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
                save_tsne(trainer.core, reader, cfg, out / "tsne_before.png",
                          title="t-SNE before training")
            metrics = trainer.fit()
        if trainer.is_main and want_tsne:
            save_tsne(trainer.core, reader, cfg, out / "tsne_after.png",
                      title="t-SNE after training" if not ns.eval_only else "t-SNE")
        if trainer.is_main and ns.visualize > 0:
            for direction in ("i2v", "v2i"):
                save_ranked_results(trainer.core, reader, cfg, out / f"ranked_{direction}.png",
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


def print_help(prog: str) -> None:
    build_train_parser(prog).print_help()
    print("\nconfiguration options (--section.option VALUE; defaults from the preset):")
    build_config_parser(prog).print_help()


def train_main(argv: list[str] | None = None, prog: str = "xreid train") -> int:
    """Parse ``argv`` and run; errors are one line on stderr (the traceback with --debug).

    Exit codes: 0 success, 2 bad command line or configuration, 1 any other error.
    """
    from xreid.output_files import OutputRefused

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    ns = None
    try:
        ns, rest = build_train_parser(prog).parse_known_args(argv)
        if ns.help:
            print_help(prog)
            return 0
        return run(ns, rest)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(f"{prog}: error: {error_message(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, (UsageError, OutputRefused)) else 1
    finally:
        if getattr(ns, "run_lock", None) is not None:
            ns.run_lock.release()

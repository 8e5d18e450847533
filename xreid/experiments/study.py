"""Run a whole ablation of the X-ReID paper (a table or a figure) and summarise it.

    python examples/study.py --list                       # every named variant
    python examples/study.py --study tab5                 # Table 5, demo preset, seed 0
    python examples/study.py --study tab4 --seeds 0 1 2 --output-dir runs/tab4
    python examples/study.py --study tab5/1 tab5/8        # an explicit list of variants
    python examples/study.py --study fig4 --preset paper --dataset hitsz-vcm \\
        --root /data/HITSZ-VCM --set model.weights=ViT-B-16.safetensors run.device=cuda \\
        run.amp=bf16

Each (variant, seed) run trains with ``xreid.engine.Trainer`` in this process, in
``OUTPUT/runs/<variant>/seed<k>/`` (the usual metrics.json, config.json, log.jsonl,
checkpoint.pt). The runs are in-process rather than subprocesses of train_vvi.py: torch and
the dataset reader are loaded once, failures surface as Python exceptions with their
traceback, metrics come back as dicts, and every run re-seeds all generators itself, so a
run's result does not depend on what ran before it in the same process.

Resumable: a run whose metrics.json exists (with the same configuration) is skipped; a run
interrupted after a checkpoint continues from it. After every run ``OUTPUT/study.json``
(every run's metrics and configuration plus mean/std summaries) and ``OUTPUT/study.md``
(the paper's table layout, mean ± std over seeds, "pixels" and "untrained" (or "pretrained",
when the runs start from weights) baseline rows, on the validation split first (choose on it)
and the test split beside it, and the paper's own numbers, each labelled with its dataset:
HITSZ-VCM for every table, also BUPTCampus for Table 3) are rewritten; figure studies (fig4,
fig5) also get ``OUTPUT/<study>.png`` (Rank-1 and mAP against the stride S).

Budget: ``--iterations N`` caps the training iterations of every run (the preset's epoch
count and schedule are kept; ``iters_per_epoch = N // epochs``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from xreid.cli.train_args import parse_sets
from xreid.engine import Hook, TrainConfig, Trainer, build_trainer
from xreid.engine.config import PRESET_NAMES, resolve_config
from xreid.engine.variants import STUDIES, Variant, get_variant, list_variants, study_variants

# config fields that do not change what a run computes (a finished run with other values for
# them is still the same run)
RUNTIME_FIELDS = {"run.output_dir", "data.root", "run.threads", "data.num_workers",
                  "run.save_every", "run.log_every"}
METRICS = (("i2v", "rank1"), ("i2v", "mAP"), ("v2i", "rank1"), ("v2i", "mAP"))
HEADERS = ("I2V R-1", "I2V mAP", "V2I R-1", "V2I mAP")
FIGURE_TITLES = {"fig4": "SII time stride S (paper Fig. 4)",
                 "fig5": "LII time stride S (paper Fig. 5)"}


# ---------------------------------------------------------------------------- arguments
def build_study_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", action="store_true", help="print every variant and exit")
    p.add_argument("--study", nargs="+", metavar="NAME",
                   help=f"studies ({', '.join(STUDIES)}) and/or variant names")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default: 0)")
    p.add_argument("--preset", choices=PRESET_NAMES, default="demo",
                   help="base configuration of every run (default: demo)")
    p.add_argument("--dataset", help="synthetic | hitsz-vcm | bupt-campus")
    p.add_argument("--root", help="dataset folder")
    p.add_argument("--output-dir", default="xreid_runs/study",
                   help="where runs/, study.json, study.md and plots go")
    p.add_argument("--iterations", type=int, metavar="N",
                   help="training iterations per run (default: the preset's schedule)")
    p.add_argument("--threads", type=int, help="torch CPU threads (e.g. 1 on a shared machine)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="any other option, e.g. data.num_frames=8 run.amp=bf16 "
                        "(JSON values; plain text is a string)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def resolve_variants(names: list[str]) -> tuple[list[Variant], list[str]]:
    """Variants to run (in order, without repeats) and the listed-but-unregistered names."""
    variants: list[Variant] = []
    missing: list[str] = []
    for name in names:
        if name in STUDIES:
            chosen = study_variants(name)
            registered = {v.name for v in chosen}
            missing += [n for n in STUDIES[name] if n not in registered]
        else:
            try:
                chosen = [get_variant(name)]
            except ValueError:
                valid = ", ".join(v.name for v in list_variants())
                raise ValueError(f"--study: unknown name {name!r}; expected a study "
                                 f"({', '.join(STUDIES)}) or a variant ({valid})") from None
        variants += [v for v in chosen if v not in variants]
    return variants, missing


def run_config(args: argparse.Namespace, variant: Variant, seed: int,
               run_dir: Path) -> TrainConfig:
    """Preset → variant → ``--set`` → this run's dataset, seed and folder."""
    sets = parse_sets(args.set)
    data = {k: getattr(args, k) for k in ("dataset", "root") if getattr(args, k) is not None}
    run = {k: getattr(args, k) for k in ("threads", "device") if getattr(args, k) is not None}
    if args.preset == "demo" and "root" not in {**sets.get("data", {}), **data}:
        data["root"] = str(Path(args.output_dir) / "data")  # one synthetic dataset for all
    run.update(seed=seed, output_dir=str(run_dir))
    cfg = resolve_config(args.preset, variant.name, sets, {"data": data, "run": run})
    if args.iterations is not None:
        if args.iterations < cfg.optim.epochs:
            raise ValueError(f"--iterations: expected at least one per epoch "
                             f"(>= {cfg.optim.epochs} with this preset), got {args.iterations}")
        cfg = cfg.replace(optim={"iters_per_epoch": args.iterations // cfg.optim.epochs})
    return cfg


def stride_notes(plans: list[tuple[Variant, int, TrainConfig]]) -> list[str]:
    """Warnings for strides that the clip length T makes degenerate (e.g. the demo's T=4)."""
    notes: dict[str, str] = {}
    for variant, _, cfg in plans:
        t = cfg.data.num_frames
        use_sii, use_lii = cfg.model.use_sii is not False, cfg.model.use_lii is not False
        if use_sii and cfg.model.sii_stride is not None and cfg.model.sii_stride >= t:
            notes[variant.name] = (
                f"`{variant.name}`: SII stride {cfg.model.sii_stride} >= T = {t} "
                "frames, so no frame has a neighbour: the shift copies "
                "every frame (no temporal exchange)."
            )
        lii = cfg.model.lii_stride
        if use_lii and lii is not None and lii != lii % t:
            notes[variant.name] = (
                f"`{variant.name}`: LII stride {lii} acts modulo T = {t} "
                f"frames, i.e. as S = {lii % t}."
            )
    return list(notes.values())


def same_run(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """Names of the options in which a saved run's config differs from ``cfg``."""
    before = TrainConfig.from_dict(saved).flat_items()
    now = cfg.flat_items()
    keys = (set(before) | set(now)) - RUNTIME_FIELDS
    return sorted(k for k in keys if before.get(k) != now.get(k))


def mean_std(values: list[float]) -> dict[str, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values)}


def _result(metrics: dict[str, Any], tag: str) -> dict[str, Any] | None:
    """``metrics[tag]``; a dotted tag reaches inside (``"baselines.pixels"``)."""
    node: Any = metrics
    for part in tag.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def summarise(runs: list[dict[str, Any]], tag: str) -> dict[str, dict[str, dict[str, float]]]:
    """{variant: {"i2v/rank1": {mean, std, n}, ...}} over the finished runs' ``tag``
    (``"after"``, ``"before"`` or ``"baselines.pixels"``)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in dict.fromkeys(r["variant"] for r in runs):
        done = [
            res
            for r in runs
            if r["variant"] == name and (res := _result(r.get("metrics", {}), tag)) is not None
        ]
        if not done:
            continue
        out[name] = {f"{d}/{k}": mean_std([res[d][k] for res in done]) for d, k in METRICS}
    return out


def fmt(stat: dict[str, float] | None) -> str:
    if stat is None:
        return "—"
    text = f"{100 * stat['mean']:.1f}"
    return text + (f" ± {100 * stat['std']:.1f}" if stat["n"] > 1 else "")


def _starts_from_weights(runs: list[dict[str, Any]]) -> bool:
    """Whether any run was configured with pre-trained weights (nested or flat config)."""
    for r in runs:
        config = r.get("config") or {}
        if (config.get("model") or {}).get("weights") or config.get("weights"):
            return True
    return False


def table_rows(variants: list[Variant], runs: list[dict[str, Any]], prefix: str,
               extra: list[str]) -> list[str]:
    """Markdown rows (pixels, model before training, each variant) of one split: ``prefix``
    ``"validation."`` or ``""`` (test)."""
    lines: list[str] = []
    after, before = summarise(runs, prefix + "after"), summarise(runs, prefix + "before")
    first = variants[0].name
    pixels = summarise(runs, prefix + "baselines.pixels")
    if pixels:  # the same split for every run: the first one that has it
        stats = next(iter(pixels.values()))
        cells = ["pixels", "raw-pixel ranking (`xreid.metrics.pixel_baseline`)",
                 *("" for _ in extra), *(fmt(stats.get(f"{d}/{k}")) for d, k in METRICS),
                 str(stats["i2v/rank1"]["n"])]
        lines.append("| " + " | ".join(cells) + " |")
    if first in before:
        stats = before[first]
        pretrained = _starts_from_weights(runs)
        name = "pretrained" if pretrained else "untrained"
        label = (f"encoder of `{first}` before fine-tuning" if pretrained
                 else f"initial model of `{first}`")
        cells = [name, label, *("" for _ in extra),
                 *(fmt(stats.get(f"{d}/{k}")) for d, k in METRICS),
                 str(stats["i2v/rank1"]["n"])]
        lines.append("| " + " | ".join(cells) + " |")
    for v in variants:
        stats = after.get(v.name, {})
        n = stats["i2v/rank1"]["n"] if stats else 0
        cells = [f"`{v.name}`", v.label, *(v.columns[k] for k in extra),
                 *(fmt(stats.get(f"{d}/{k}")) for d, k in METRICS), str(n)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(
    title: str,
    variants: list[Variant],
    runs: list[dict[str, Any]],
    settings: str,
    missing: list[str],
    notes: list[str] | None = None,
) -> str:
    extra = list(variants[0].columns) if all(v.columns for v in variants) else []
    head = ["Variant", "Row", *extra, *HEADERS, "seeds"]
    lines = [f"# {title}", "", settings]
    for heading, prefix in (("Validation (held-out training identities; choose on this)",
                             "validation."),
                            ("Test (each finished run evaluated once; never used to choose)",
                             "")):
        rows = table_rows(variants, runs, prefix, extra)
        if prefix and not any(_result(r.get("metrics", {}), "validation") for r in runs):
            continue
        lines += ["", f"## {heading}", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head), *rows]
    lines += ["", "Rank-1 and mAP in percent, mean ± sample standard deviation over seeds."]
    if notes:
        lines += ["", "Notes on the strides:", "", *(f"- {n}" for n in notes)]
    stored = [(v, dataset, numbers) for v in variants
              for dataset, numbers in (("HITSZ-VCM", v.paper), ("BUPTCampus", v.paper_bupt))
              if numbers]
    if stored:
        lines += ["", "The paper's numbers for the same rows (CLIP ViT-B/16, one run each; "
                  "each row names its dataset):", "",
                  "| Variant | Row | Dataset | " + " | ".join(HEADERS) + " |",
                  "|---|---|---|---|---|---|---|"]
        for v, dataset, numbers in stored:
            lines.append(f"| `{v.name}` | {v.label} | {dataset} | "
                         + " | ".join(f"{x:.1f}" for x in numbers) + " |")
    if missing:
        lines += [
            "",
            "Not run (not registered in this installation): "
            + ", ".join(f"`{m}`" for m in missing)
            + ".",
        ]
    return "\n".join(lines) + "\n"


def plot_figure(
    path: Path, title: str, variants: list[Variant], runs: list[dict[str, Any]]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    after = summarise(runs, "after")
    points = [v for v in variants if v.name in after]
    xs = [v.x for v in points]
    fig, ax = plt.subplots(figsize=(6, 4))
    styles = {"i2v": "-", "v2i": "--"}
    colors = {"rank1": "tab:blue", "mAP": "tab:orange"}
    for d, k in METRICS:
        means = [100 * after[v.name][f"{d}/{k}"]["mean"] for v in points]
        stds = [100 * after[v.name][f"{d}/{k}"]["std"] for v in points]
        label = f"{d.upper()} {'Rank-1' if k == 'rank1' else 'mAP'}"
        ax.errorbar(
            xs,
            means,
            yerr=stds,
            linestyle=styles[d],
            color=colors[k],
            marker="o",
            capsize=3,
            label=label,
        )
    ax.set_xlabel("time stride S")
    ax.set_ylabel("%")
    ax.set_xticks(xs)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- progress
class RunProgress(Hook):
    """One tqdm bar per run over its training iterations."""

    def __init__(self, tqdm: Any, desc: str, enabled: bool) -> None:
        self.tqdm, self.desc, self.enabled, self.bar = tqdm, desc, enabled, None

    def on_epoch_start(self, trainer: Trainer, epoch: int, num_iterations: int) -> None:
        if self.bar is None:
            total = trainer.epochs * num_iterations
            self.bar = self.tqdm(
                total=total,
                initial=trainer.iteration,
                desc=self.desc,
                leave=False,
                disable=not self.enabled,
                dynamic_ncols=True,
            )

    def on_iteration(
        self, trainer: Trainer, epoch: int, iteration: int, logs: dict[str, float]
    ) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{logs['total']:.3f}", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = build_study_parser().parse_args(argv)
    if args.list:
        for study, names in STUDIES.items():
            print(f"{study}:")
            for name in names:
                try:
                    print(f"  {name:<34} {get_variant(name).description}")
                except ValueError:
                    print(f"  {name:<34} (not registered in this installation)")
        others = [v for v in list_variants() if v.study not in STUDIES]
        for v in others:
            print(f"  {v.name:<34} {v.description}")
        return 0
    if not args.study:
        print("error: give --study NAME... (or --list)", file=sys.stderr)
        return 2
    try:
        variants, missing = resolve_variants(args.study)
        if not variants:
            raise ValueError(f"--study: nothing to run for {args.study}")
        out = Path(args.output_dir)
        plans = [
            (v, s, run_config(args, v, s, out / "runs" / v.name.replace("/", "-") / f"seed{s}"))
            for v in variants
            for s in args.seeds
        ]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    for name in missing:
        tqdm.write(f"[study] {name} is not registered in this installation: skipped")
    notes = stride_notes(plans)
    for note in notes:
        tqdm.write(f"[study] note: {note.replace('`', '')}")
    title = "Study: " + " ".join(args.study)
    cfg0 = plans[0][2]
    per_epoch = cfg0.optim.iters_per_epoch or "one sampler pass of"
    settings = (
        f"Preset `{args.preset}`, dataset `{cfg0.data.dataset}`, backbone "
        f"`{cfg0.model.backbone}`, T = {cfg0.data.num_frames} frames, {cfg0.optim.epochs} epochs x "
        f"{per_epoch} iterations, seeds {' '.join(map(str, args.seeds))}."
    )
    runs: list[dict[str, Any]] = []
    outer = tqdm(plans, desc="study", unit="run", disable=args.no_progress, dynamic_ncols=True)
    for variant, seed, cfg in outer:
        run_dir = Path(cfg.run.output_dir)
        record: dict[str, Any] = {"variant": variant.name, "seed": seed, "output_dir": str(run_dir)}
        metrics_path = run_dir / "metrics.json"
        if metrics_path.exists():
            saved = json.loads(metrics_path.read_text())
            diff = same_run(saved.get("config", {}), cfg)
            if diff:
                print(
                    f"error: {run_dir} holds a finished run with a different configuration "
                    f"(options {diff}); use another --output-dir",
                    file=sys.stderr,
                )
                return 2
            record.update(
                status="skipped (finished before)", metrics=saved, config=saved.get("config")
            )
            runs.append(record)
            continue
        checkpoint, saved_config = run_dir / "checkpoint.pt", run_dir / "config.json"
        if checkpoint.exists() and saved_config.exists():
            diff = same_run(json.loads(saved_config.read_text()), cfg)
            if diff:
                print(
                    f"error: {run_dir} holds an interrupted run with a different "
                    f"configuration (options {diff}); use another --output-dir",
                    file=sys.stderr,
                )
                return 2
        outer.set_postfix_str(f"{variant.name} seed {seed}")
        progress = RunProgress(tqdm, f"{variant.name} s{seed}", not args.no_progress)
        start = time.perf_counter()
        trainer = build_trainer(cfg, hooks=[progress])
        try:
            if checkpoint.exists():
                trainer.load_checkpoint(checkpoint, resume=True)
                tqdm.write(f"[study] {variant.name} seed {seed}: resumed at epoch {trainer.epoch}")
            metrics = trainer.fit()
        finally:
            progress.close()
            trainer.close()
        seconds = time.perf_counter() - start
        record.update(status="trained", seconds=seconds, metrics=metrics, config=cfg.to_dict())
        runs.append(record)
        after = metrics["after"]
        tqdm.write(
            f"[study] {variant.name} seed {seed}: I2V R-1 "
            f"{100 * after['i2v']['rank1']:.1f} mAP {100 * after['i2v']['mAP']:.1f}, "
            f"V2I R-1 {100 * after['v2i']['rank1']:.1f} mAP "
            f"{100 * after['v2i']['mAP']:.1f} ({seconds / 60:.1f} min)"
        )
        write_outputs(out, title, settings, variants, runs, missing, notes, args)
    outer.close()
    write_outputs(out, title, settings, variants, runs, missing, notes, args)
    print((out / "study.md").read_text())
    print(
        f"wrote {out}/: study.json, study.md"
        + "".join(f", {s}.png" for s in figure_studies(variants))
    )
    return 0


def figure_studies(variants: list[Variant]) -> list[str]:
    """The figure studies (fig4, fig5) that some of ``variants`` belong to."""
    return [s for s in FIGURE_TITLES if any(v.study == s and v.x is not None for v in variants)]


def write_outputs(
    out: Path,
    title: str,
    settings: str,
    variants: list[Variant],
    runs: list[dict[str, Any]],
    missing: list[str],
    notes: list[str],
    args: argparse.Namespace,
) -> None:
    data = {
        "study": args.study,
        "preset": args.preset,
        "seeds": args.seeds,
        "iterations": args.iterations,
        "variants": [{"name": v.name, "description": v.description, "label": v.label,
                      "overrides": dict(v.overrides), "paper": v.paper,
                      "paper_bupt": v.paper_bupt, "x": v.x}
                     for v in variants],
        "not_registered": missing,
        "notes": notes,
        "runs": runs,
        "summary": {
            "after": summarise(runs, "after"),
            "before": summarise(runs, "before"),
            "pixels": summarise(runs, "baselines.pixels"),
            "validation": {"after": summarise(runs, "validation.after"),
                           "before": summarise(runs, "validation.before"),
                           "pixels": summarise(runs, "validation.baselines.pixels")},
        },
    }
    write_json(out / "study.json", data)
    (out / "study.md").write_text(render_markdown(title, variants, runs, settings, missing, notes))
    for study in figure_studies(variants):
        points = [v for v in variants if v.study == study]
        if any(v.name in data["summary"]["after"] for v in points):
            plot_figure(out / f"{study}.png", FIGURE_TITLES[study], points, runs)


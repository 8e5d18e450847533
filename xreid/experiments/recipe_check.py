"""Check a training recipe across differently configured synthetic datasets.

Generates (once, cached under --data-dir) several synthetic datasets that differ in seed,
number of identities, cameras, frame size, difficulty and on-disk layout (HITSZ-VCM and
BUPTCampus), trains the given configuration (the `demo` preset plus --set overrides) on each,
and reports for every dataset the trained model next to the two baselines it must beat (raw
pixels, and the model before training: "pretrained" when it starts from weights, else
"untrained"), on the validation split (training identities held out with the test
protocol's shape; choices are made on it) and on the test split (reported beside it, never
used to choose), then the mean and spread over datasets. The datasets of the second,
independently designed generator (``xreid.data.mannequin``) are a separate group: the
transfer check.

    python examples/recipe_check.py --output-dir xreid_runs/recipe
    python examples/recipe_check.py --set data.use_cameras=false \
        --output-dir xreid_runs/recipe-nocam

Writes recipe.json (every run's metrics) and recipe.md (the table). Finished runs are not
rerun (their metrics.json is reused), so an interrupted check resumes where it stopped; a
finished run trained with other options (another --set, or a default that changed since) is
refused rather than reported under this configuration.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from xreid.cli.train_args import parse_sets
from xreid.data import make_synthetic_bupt_campus, make_synthetic_hitsz_vcm
from xreid.engine import Hook, TrainConfig, build_trainer
from xreid.engine.config import resolve_config
from xreid.engine.sections import FLAT_OPTIONS, SECTIONS

# name -> (layout, generator, generator keywords, validation identities). They differ in
# seed, identities (16-64 trained on), cameras (3-6), frame size, difficulty and layout; the
# validation identities are generated on top of the training ones (num_train_ids counts
# both). "mannequin" datasets come from the independently designed generator
# (xreid.data.mannequin) and are reported separately, as the transfer check.
DATASETS: dict[str, tuple[str, str, dict[str, Any], int]] = {
    # the README demo's own data (python examples/train_vvi.py): seed 0, the generator's
    # defaults, 64 training + 24 validation identities
    "demo-data": ("hitsz-vcm", "procedural", {"seed": 0, "num_train_ids": 64 + 24}, 24),
    "vcm-16ids-3cams": ("hitsz-vcm", "procedural",
                        {"seed": 11, "num_train_ids": 16 + 12, "num_test_ids": 12,
                         "num_cameras": 3, "difficulty": 0.5}, 12),
    "vcm-64ids-6cams-48x24": ("hitsz-vcm", "procedural",
                              {"seed": 12, "num_train_ids": 64 + 20, "num_test_ids": 20,
                               "num_cameras": 6, "img_size": (48, 24), "difficulty": 0.7}, 20),
    "vcm-32ids-4cams-hard-96x48": ("hitsz-vcm", "procedural",
                                   {"seed": 13, "num_train_ids": 32 + 16, "num_test_ids": 16,
                                    "num_cameras": 4, "img_size": (96, 48),
                                    "difficulty": 0.85}, 16),
    "bupt-40ids": ("bupt-campus", "procedural",
                   {"seed": 14, "num_train_ids": 40 + 16, "num_aux_ids": 0, "num_test_ids": 16,
                    "difficulty": 0.6}, 16),
    "mannequin-vcm-48ids": ("hitsz-vcm", "mannequin",
                            {"seed": 21, "num_train_ids": 48 + 16, "num_test_ids": 16,
                             "num_cameras": 5, "difficulty": 0.6}, 16),
    "mannequin-bupt-40ids": ("bupt-campus", "mannequin",
                             {"seed": 22, "num_train_ids": 40 + 16, "num_aux_ids": 0,
                              "num_test_ids": 16, "difficulty": 0.6}, 16),
}
KEYS = ("rank1", "mAP")


def make_dataset(name: str, data_dir: Path) -> tuple[str, Path]:
    layout, generator, kw, _ = DATASETS[name]
    root = data_dir / name
    marker = root / ".xreid-recipe-complete"
    stamp = json.dumps({"generator": generator, **kw}, sort_keys=True)
    if not marker.exists() or marker.read_text().strip() != stamp:
        if generator == "mannequin":
            from xreid.data.mannequin import make_mannequin_bupt_campus as bupt
            from xreid.data.mannequin import make_mannequin_hitsz_vcm as vcm
        else:
            bupt, vcm = make_synthetic_bupt_campus, make_synthetic_hitsz_vcm
        (vcm if layout == "hitsz-vcm" else bupt)(root, overwrite=True, **kw)
        marker.write_text(stamp + "\n")
    return layout, root


# Options that change how a run executes, not what it learns: a finished run is reused
# whatever they were.
EXECUTION_ONLY = frozenset({"data.root", "run.output_dir", "run.threads", "data.num_workers",
                            "run.device", "run.log_every", "run.save_every"})


def stale_options(done: Path, cfg: TrainConfig) -> list[str]:
    """Options whose value in a finished run (``done``, its metrics.json) differs from ``cfg``.

    Options the finished run does not record (added later) are not compared; the flat
    configuration of earlier versions is read through ``FLAT_OPTIONS``.
    """
    try:
        record = json.loads(done.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SystemExit(f"recipe_check.py: error: {done}: expected a finished run's metrics "
                         f"(JSON), got an unreadable file ({exc}); delete it to rerun") from None
    old = record.get("config") if isinstance(record, dict) else None
    if not isinstance(old, dict):
        raise SystemExit(f"recipe_check.py: error: {done}: expected a finished run's metrics "
                         "with its \"config\"; got none, so its options cannot be checked; "
                         "delete it to rerun")
    if any(k in SECTIONS for k in old):  # this version's nested configuration
        before = {f"{s}.{k}": v for s in SECTIONS if isinstance(old.get(s), dict)
                  for k, v in old[s].items()}
    else:  # the flat configuration of earlier versions
        before = {FLAT_OPTIONS[k]: v for k, v in old.items() if k in FLAT_OPTIONS}
    new = cfg.flat_items()
    return [f"{k}={before[k]!r} (this check: {new[k]!r})" for k in sorted(set(before) & set(new))
            if k not in EXECUTION_ONLY and before[k] != new[k]]


def recipe_config(name: str, args: argparse.Namespace, overrides: dict[str, Any],
               seed: int) -> TrainConfig:
    """The demo preset with ``overrides`` (``--set``) on dataset ``name`` (generated once)."""
    layout, root = make_dataset(name, Path(args.data_dir))
    out = Path(args.output_dir) / name / f"seed{seed}"
    return resolve_config("demo", None, overrides, {
        "data": {"dataset": layout, "root": str(root), "val_ids": DATASETS[name][3]},
        "run": {"output_dir": str(out), "seed": seed, "threads": args.threads}})


def run_recipe(cfg: TrainConfig) -> dict:
    done = Path(cfg.run.output_dir) / "metrics.json"
    if done.exists():
        stale = stale_options(done, cfg)
        if stale:  # reusing it would report another configuration under this one's name
            raise SystemExit(f"recipe_check.py: error: {done} was trained with other options: "
                             f"{', '.join(stale)}; use another --output-dir or delete it")
        return json.loads(done.read_text())  # read once more: stale_options checked it
    trainer = build_trainer(cfg, hooks=[Hook()])
    try:
        return trainer.fit()
    finally:
        trainer.close()


def format_mean_std(values: list[float]) -> str:
    m = statistics.fmean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * m:.1f} ± {100 * s:.1f}"


def start_row(metrics: dict) -> str:
    """The baseline name of the model before training: "pretrained" or "untrained"."""
    return "pretrained" if "pretrained" in metrics.get("baselines", {}) else "untrained"


def part_of(metrics: dict, split: str) -> dict:
    """The validation or the test part of a run's metrics."""
    return metrics.get("validation", {}) if split == "validation" else metrics


def table(results: dict[str, list[dict]], split: str = "validation") -> str:
    """Rows pixels / untrained-or-pretrained / trained per dataset on ``split``, mean ± std
    over seeds, then the mean over datasets of each group (the procedural generator's and
    the mannequin transfer check, separately)."""
    head = ("| dataset | model | I2V R1 | I2V mAP | V2I R1 | V2I mAP |\n"
            "|---|---|---|---|---|---|")
    lines = [head]
    groups: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name, runs in results.items():
        group = ("transfer (mannequin)" if DATASETS.get(name, ("", ""))[1] == "mannequin"
                 else "procedural")
        start = start_row(runs[0])
        for row, get in (("pixels", lambda m: part_of(m, split)["baselines"]["pixels"]),
                         (start, lambda m, s=start: part_of(m, split)["baselines"][s]),
                         ("trained", lambda m: part_of(m, split)["after"])):
            cells = []
            for d in ("i2v", "v2i"):
                for k in KEYS:
                    vals = [get(m)[d][k] for m in runs]
                    groups.setdefault(group, {}).setdefault(row, {}).setdefault(
                        f"{d}-{k}", []).append(statistics.fmean(vals))
                    cells.append(format_mean_std(vals))
            lines.append(f"| {name} | {row} | " + " | ".join(cells) + " |")
    for group, per_row in groups.items():
        for row, cols in per_row.items():
            cells = [format_mean_std(cols[f"{d}-{k}"]) for d in ("i2v", "v2i") for k in KEYS]
            lines.append(f"| **mean, {group}** | {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(results: dict[str, list[dict]]) -> str:
    """The validation table (what choices are made on), then the test table."""
    return ("## Validation (held-out training identities; choose on this)\n\n"
            + table(results, "validation")
            + "\n\n## Test (each finished run evaluated once; never used to choose)\n\n"
            + table(results, "test"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=list(DATASETS),
                   help="which synthetic datasets (default: all)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="options over the demo preset, e.g. optim.lr=5e-4 (JSON values)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--data-dir", default="xreid_runs/recipe-data",
                   help="where the datasets are generated (cached)")
    p.add_argument("--output-dir", default="xreid_runs/recipe", help="runs, recipe.json/.md")
    args = p.parse_args(argv)
    jobs = [(n, s) for n in args.datasets for s in args.seeds]
    try:  # every configuration is checked before the first run starts
        overrides = parse_sets(args.set)  # the study runner's --set, one home
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads: expected a positive integer, got {args.threads}")
        configs = [(n, recipe_config(n, args, overrides, s)) for n, s in jobs]
    except ValueError as exc:
        print(f"recipe_check.py: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    from tqdm.auto import tqdm

    results: dict[str, list[dict]] = {}
    for name, cfg in tqdm(configs, desc="recipe check"):
        results.setdefault(name, []).append(run_recipe(cfg))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(json.dumps(
        {"overrides": overrides, "seeds": args.seeds, "results": results}, indent=2) + "\n")
    text = report(results)
    (out / "recipe.md").write_text(text + "\n")
    print(text)
    return 0


"""Which side satisfied CMCL (Eq. 9)? The encoder/CII swap check of a trained run.

Eq. 9 compares a sequence feature Ō with CII's output O_CMII. With the paper's block, CII can
make the loss small by shrinking its own update, without the encoder learning anything. This
script takes finished runs (folders with ``config.json`` and ``checkpoint.pt``, as written by
``train_vvi.py`` or ``study.py``), rebuilds each run's model at initialisation (the same seed
gives the same initial weights) and evaluates Eq. 9, averaged over the CII pairs and the first
``--batches`` training batches, for the four combinations of encoder (everything but CII) and
CII, each either at initialisation or trained:

    python examples/cmcl_check.py xreid_runs/demo
    python examples/cmcl_check.py runs/tab5/runs/tab5-8/seed0 runs/tab5/runs/tab5-7/seed0

Reading: ``trained encoder + initial CII`` far below ``initial + initial`` means the encoder
itself moved towards features CII leaves unchanged (the constraint reached the backbone);
``initial encoder + trained CII`` far below it means CII shrank its own update. Compare with
a run trained with ``cmcl_weight=0`` (CII built but not trained), which shows how far the other
losses alone move the encoder. Prints a Markdown table; ``--json FILE`` also writes the values.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import torch

from xreid.engine import Hook, TrainConfig, build_trainer
from xreid.losses import CMCL

COMBINATIONS = (("initial", "initial"), ("trained", "initial"), ("initial", "trained"),
                ("trained", "trained"))


def check_run(run_dir: Path, batches: int = 4) -> dict[str, float]:
    """Eq. 9 for every (encoder, CII) combination of one finished run."""
    for name in ("config.json", "checkpoint.pt"):
        if not (run_dir / name).is_file():
            raise ValueError(f"{run_dir}: expected a finished run folder with {name}, "
                             f"found no such file")
    cfg = TrainConfig.load(run_dir / "config.json")
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    with tempfile.TemporaryDirectory() as tmp:
        values = {**cfg.to_dict(), "output_dir": tmp, "device": "cpu"}
        trainer = build_trainer(TrainConfig.from_dict(values), hooks=[Hook()])
        try:
            models = {"initial": copy.deepcopy(trainer.core), "trained": trainer.core}
            if models["initial"].cii is None:
                raise ValueError(f"{run_dir}: the run has no CII (use_cii is off), so no Eq. 9")
            models["trained"].load_state_dict(state["model"])
            data = [b for _, b in zip(range(batches), trainer.epoch_batches(0))]
        finally:
            trainer.close()
    result = {}
    for encoder, cii in COMBINATIONS:
        model = copy.deepcopy(models[encoder])
        model.cii.load_state_dict(models[cii].cii.state_dict())
        model.train()  # the training forward: BNNecks on batch statistics, CII pairs built
        total = 0.0
        with torch.no_grad():
            for batch in data:
                cameras = batch["camera"] if cfg.data.use_cameras else None
                out = model(batch["video"], batch["modality"], cameras, batch["label"])
                total += sum(float(CMCL()(a, b)) for a, b in out.cmcl_pairs) / len(out.cmcl_pairs)
        result[f"{encoder} encoder + {cii} CII"] = total / len(data)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="finished run folders")
    p.add_argument("--batches", type=int, default=4, help="training batches to average over")
    p.add_argument("--json", type=Path, default=None, help="also write the values here")
    args = p.parse_args(argv)
    if args.batches < 1:
        raise SystemExit(f"cmcl_check.py: error: --batches: expected >= 1, got {args.batches}")
    results = {}
    for run in args.runs:
        try:
            results[str(run)] = check_run(run, args.batches)
        except ValueError as exc:
            raise SystemExit(f"cmcl_check.py: error: {exc}") from None
    heads = [f"{e} enc. + {c} CII" for e, c in COMBINATIONS]
    print("| run | " + " | ".join(heads) + " |")
    print("|---|" + "---|" * len(heads))
    for run, values in results.items():
        print(f"| {run} | " + " | ".join(f"{v:.4g}" for v in values.values()) + " |")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


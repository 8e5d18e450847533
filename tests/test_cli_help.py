"""Every flag of ``examples/train_vvi.py`` has help, generated from the TrainConfig fields."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

from xreid.engine import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _train_vvi():
    spec = importlib.util.spec_from_file_location("train_vvi_cli", ROOT / "examples" /
                                                  "train_vvi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_config_field_has_help_metadata():
    missing = [f.name for f in dataclasses.fields(TrainConfig)
               if not str(f.metadata.get("help", "")).strip()]
    assert missing == []


def test_every_flag_has_help_and_it_is_the_fields():
    parser = _train_vvi().build_parser()
    actions = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert len(actions) > 60
    no_help = [a.option_strings[0] for a in actions if not (a.help or "").strip()]
    assert no_help == []
    by_dest = {a.dest: a.help for a in actions}
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("preset", "extra"):
            continue  # --preset is the parser's own flag; extra is not a flag
        assert by_dest[f.name] == f.metadata["help"], f.name
    text = parser.format_help()
    assert "--label-smoothing" in text and "label smoothing of the identity" in text

"""examples/recipe_check.py: --set validation and the cross-dataset table (fake metrics)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def recipe():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import recipe_check
    finally:
        sys.path.pop(0)
    return recipe_check


def _metrics(r1: float, ap: float) -> dict:
    one = {"rank1": r1, "mAP": ap}
    return {"i2v": one, "v2i": one}


def test_bad_set_is_one_line(recipe):
    with pytest.raises(SystemExit, match=r"recipe_check.py: error: --set: .*'bogus=1'"):
        recipe.main(["--set", "bogus=1"])


def test_table_means_over_seeds_then_datasets(recipe):
    def run(after):
        return {"after": _metrics(*after), "baselines": {"pixels": _metrics(0.1, 0.2),
                                                          "untrained": _metrics(0.0, 0.05)}}

    results = {"a": [run((0.5, 0.6)), run((0.3, 0.4))], "b": [run((0.2, 0.2))]}
    text = recipe.table(results)
    assert "| a | trained | 40.0 ± 14.1 | 50.0 ± 14.1 |" in text
    # mean over datasets of the per-dataset means: (0.4 + 0.2) / 2 and (0.5 + 0.2) / 2
    assert "| **mean over datasets** | trained | 30.0 ± 14.1 | 35.0 ± 21.2 |" in text
    assert "| **mean over datasets** | pixels | 10.0 ± 0.0 | 20.0 ± 0.0 |" in text

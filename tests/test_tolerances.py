"""The tolerance rule of the test suite (tests/tolerance.py) and a guard against tuned literals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from tolerance import rounding_tol

TESTS = Path(__file__).parent


@given(n=st.integers(1, 4096), seed=st.integers(0, 2**16))
def test_two_summation_orders_stay_within_the_bound(n, seed):
    """Summing n float32 terms in two orders differs by at most 2 gamma_n sum |x| (Higham)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=torch.float64).float()
    forward = torch.zeros((), dtype=torch.float32)
    for v in x:  # one rounding per addition, left to right
        forward = forward + v
    backward = x.flip(0).cumsum(0)[-1]
    tol = rounding_tol(torch.float32, n, scale=float(x.double().abs().sum()))
    assert abs(float(forward) - float(backward)) <= tol["atol"]


def test_rounding_tol_values_and_errors():
    tol = rounding_tol(torch.float32, 100)
    u = torch.finfo(torch.float32).eps / 2
    assert tol["rtol"] == pytest.approx(2 * 100 * u / (1 - 100 * u))
    assert rounding_tol(torch.float64, 100)["rtol"] < 1e-13
    with pytest.raises(ValueError, match="n: expected >= 1"):
        rounding_tol(torch.float32, 0)
    with pytest.raises(ValueError, match="compare in float64"):
        rounding_tol(torch.bfloat16, 1000)


def test_no_test_uses_a_tuned_float_tolerance():
    """Literal tolerances above 1e-9 (float64 comparisons) are refused, except in bf16/fp16
    comparisons, whose roundings happen per operation and have no useful worst-case bound."""
    literal = re.compile(r"\b(atol|rtol)=([0-9][0-9.e-]*)")
    bad = []
    for path in sorted(TESTS.glob("*.py")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            for _, value in literal.findall(line):
                if float(value) <= 1e-9:
                    continue
                window = " ".join(lines[max(0, i - 6): i + 1])
                if not re.search(r"bfloat16|bf16|float16|half", window):
                    bad.append(f"{path.name}:{i + 1}: {line.strip()}")
    assert not bad, "use tolerance.rounding_tol or compare in float64:\n" + "\n".join(bad)

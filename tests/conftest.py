"""Shared pytest configuration: deterministic seeds and a hypothesis profile for 2-core CI."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "xreid",
    deadline=None,
    max_examples=int(os.environ.get("XREID_HYPOTHESIS_EXAMPLES", "25")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.load_profile("xreid")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)

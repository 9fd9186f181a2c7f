"""Shared test setup: fixed seeds per test, a modest hypothesis profile.

Every fixture here is function-scoped: nothing stateful is shared between tests.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "spikeflow",
    max_examples=25,
    deadline=None,
    database=None,  # no example database written into the source tree
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("spikeflow")


@pytest.fixture(autouse=True)
def _fixed_seeds():
    """Every test starts from the same random state, whatever ran before it."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield



@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures ``spikeflow.plot`` saves during the test, in order."""
    from spikeflow import plot

    saved = []
    original = plot._save

    def keep(fig, path):
        saved.append(fig)
        return original(fig, path)

    monkeypatch.setattr(plot, "_save", keep)
    return saved

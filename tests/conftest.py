"""Fixtures shared by the test modules (helpers: support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import TINY

from tripletlib.synthetic import generate_synthetic_market


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory) -> Path:
    """8 training and 6 test people of the synthetic generator (seed 0), the default image size."""
    root = tmp_path_factory.mktemp("data") / "tiny"
    generate_synthetic_market(root, train_ids=8, test_ids=6, seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_market_64x32(tmp_path_factory) -> Path:
    """6 training and 4 test people drawn at 64x32 (`support.TINY`); tests copy it before changing it."""
    root = tmp_path_factory.mktemp("tiny64x32") / "tiny"
    generate_synthetic_market(root, progress=False, **TINY)
    return root

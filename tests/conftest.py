"""Shared test fixtures: small, deterministic, offline."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

#: The real data sets (ISBI 2012, DSB2018 subset) beside the repository, never copied into it.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

os.environ.setdefault("NAPARI_UNET_DATA_DIR", str(SHARED_DATA))


def pytest_configure(config: pytest.Config) -> None:
    """Keep torch to one thread per test process: CI machines have two cores."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return
    torch.set_num_threads(1)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator."""
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when the data sets are not beside the checkout."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present beside the checkout")
    return SHARED_DATA

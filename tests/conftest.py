"""Shared test fixtures: small, deterministic, offline."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

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


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load_benchmark(name: str) -> ModuleType:
    if str(BENCHMARKS) not in sys.path:  # the benchmarks import their _bench_common
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def load_benchmark():
    """``load_benchmark("bench_train")``: import a script of benchmarks/ as a module."""
    return _load_benchmark

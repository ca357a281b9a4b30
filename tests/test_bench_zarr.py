"""Smoke test of benchmarks/bench_zarr.py: a tiny volume through both paths, fresh processes."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("zarr")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_smoke_run_predicts_both_paths_identically(tmp_path: Path) -> None:
    bench = _load("bench_zarr")
    out = tmp_path / "bench.json"
    assert bench.main(["--depth", "2", "--side", "96", "--json", str(out)]) == 0
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["volume"] == [2, 96, 96] and results["labels_identical"] is True
    for key in ("peak_rss_mb_zarr", "peak_rss_mb_tiff", "seconds_zarr", "seconds_tiff"):
        assert math.isfinite(results[key]) and results[key] > 0

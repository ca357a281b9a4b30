"""Smoke test of benchmarks/bench_zarr.py: a tiny volume through both paths, fresh processes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("zarr")


def test_smoke_run_predicts_both_paths_identically(load_benchmark, tmp_path: Path) -> None:
    bench = load_benchmark("bench_zarr")
    out = tmp_path / "bench.json"
    assert bench.main(["--depth", "2", "--side", "96", "--json", str(out)]) == 0
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["volume"] == [2, 96, 96] and results["labels_identical"] is True
    for key in ("peak_rss_mb_zarr", "peak_rss_mb_tiff", "seconds_zarr", "seconds_tiff"):
        assert math.isfinite(results[key]) and results[key] > 0


def test_smoke_run_3d_model_streams_the_zarr_volume_identically(load_benchmark, tmp_path):
    bench = load_benchmark("bench_zarr")
    out = tmp_path / "bench3d.json"
    argv = ["--model3d", "--depth", "4", "--side", "80", "--json", str(out)]
    assert bench.main(argv) == 0
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["volume"] == [4, 80, 80] and results["labels_identical"] is True
    assert results["model"].startswith("unet3d")

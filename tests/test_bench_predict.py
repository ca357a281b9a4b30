"""Smoke test of benchmarks/bench_predict.py: the smallest path, in-process, tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

#: The keys issue 2 asks the JSON for (numbers), plus the extras this script promises.
REQUIRED_NUMBERS = (
    "mpix_per_s",
    "ratio_vs_monai",
    "ratio_vs_monai_same_precision",
    "ratio_vs_plain",
    "fraction_of_peak",
    "gflops_useful",
    "gflops_tiles",
    "matmul_peak_gflops",
    "peak_rss_mb_8192",
    "peak_rss_mb_8192_instances",
)
REQUIRED_OTHER = (
    "machine",
    "date",
    "quick",
    "memory_side",
    "overlap",
    "seconds_512_builtin",
    "seconds_512_builtin_tta_flips",
    "seconds_512_builtin_tta_dihedral",
    "tta_dihedral_cost_ratio",
)


def test_smoke_run_writes_finite_flat_json(
    load_benchmark, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("monai")
    pytest.importorskip("napari_unet.core.inference.prediction")
    bench = load_benchmark("bench_predict")
    out = tmp_path / "bench.json"
    assert bench.main(["--smoke", "--json", str(out)]) == 0

    results = json.loads(out.read_text(encoding="utf-8"))
    for key in REQUIRED_NUMBERS:
        value = results[key]
        assert isinstance(value, (int, float)) and math.isfinite(value), (key, value)
    for key in REQUIRED_OTHER:
        assert key in results, key
    assert results["quick"] is True and results["mode"] == "smoke"
    assert not any(isinstance(v, dict) for v in results.values()), "the JSON must stay flat"
    assert results["mpix_per_s"] > 0 and results["matmul_peak_gflops"] > 0
    # the tiles overlap, so more conv work is done than the image alone needs
    assert results["tile_work_factor"] >= 1.0
    assert results["gflops_tiles"] >= results["gflops_useful"]
    assert results["peak_rss_mb_8192"] >= 0 and results["peak_rss_mb_8192_instances"] >= 0
    if results["bf16_speedup"] is not None:
        assert 0 <= results["bf16_max_abs_diff"] < 0.5
    table = capsys.readouterr().out
    assert "| metric | value | target | pass |" in table and "ratio vs MONAI" in table


def test_flop_counter_counts_convolutions_by_hand(load_benchmark) -> None:
    common = load_benchmark("_bench_common")
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ConvTranspose2d(4, 2, 2, stride=2))
    with torch.inference_mode(), common.FlopCounter(model) as counter:
        model(torch.zeros(2, 1, 8, 8))
    conv = 2 * 4 * 8 * 8 * (1 * 3 * 3)  # outputs x MACs each
    transposed = 2 * 4 * 8 * 8 * (2 * 2 * 2)  # inputs x (out_channels * k * k)
    assert counter.calls == 2
    assert counter.flops == 2 * (conv + transposed)
    # hooks are removed on exit
    with torch.inference_mode():
        model(torch.zeros(1, 1, 8, 8))
    assert counter.calls == 2


def test_table_marks_pass_and_fail(load_benchmark) -> None:
    common = load_benchmark("_bench_common")
    rows = [
        common.Row("a", 1.5, ">= 1.2", common.check(1.5, at_least=1.2)),
        common.Row("b", 2000.0, "<= 1500", common.check(2000.0, at_most=1500)),
        common.Row("c", None, "", common.check(None, at_least=1)),
    ]
    lines = common.format_table(rows).splitlines()
    assert lines[2].endswith("| yes |") and lines[3].endswith("| NO |") and "n/a" in lines[4]


def test_builtin_timing_uses_a_shipped_checkpoint(
    load_benchmark, tmp_path: Path, monkeypatch
) -> None:
    checkpoint = pytest.importorskip("napari_unet.core.checkpoint.format")
    pytest.importorskip("napari_unet.core.inference.prediction")
    bench = load_benchmark("bench_predict")
    model = bench.build(bench.MODES["smoke"], out_channels=2)
    path = checkpoint.save_checkpoint(tmp_path / "em-membranes.pt", model, task="semantic")
    setup = SimpleNamespace(mode=bench.MODES["smoke"], device=torch.device("cpu"))

    monkeypatch.setattr(checkpoint, "builtin_checkpoints", lambda: {})
    assert bench.builtin_seconds(setup, repeats=1, side=64)[0] is None

    monkeypatch.setattr(checkpoint, "builtin_checkpoints", lambda: {"em-membranes": path})
    seconds, note = bench.builtin_seconds(setup, repeats=3, side=64)
    assert note is None and len(seconds) == 3
    median, low, high = seconds
    assert 0 < low <= median <= high

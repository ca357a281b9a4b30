"""Restoration models restore real data (issue 18, point 5): a small U-Net trained briefly on
noisy copies of a shared ISBI EM crop raises the PSNR of a held-out noisy copy of another image;
``benchmarks/bench_restore.py`` writes the figures as flat JSON."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from napari_unet.core.evaluation.restoration import noisy_copy, psnr

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def test_psnr_matches_its_definition_and_refuses_bad_input() -> None:
    clean = np.zeros((4, 4))
    noisy = clean + 0.1
    assert psnr(clean, noisy) == pytest.approx(20.0)
    assert psnr(clean, clean) == math.inf
    assert psnr(clean * 255, noisy * 255, data_range=255) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="shapes"):
        psnr(clean, np.zeros((4, 5)))
    clean = np.zeros((64, 64))
    copy = noisy_copy(clean, 0.2, seed=3)
    assert copy.dtype == np.float32 and np.array_equal(copy, noisy_copy(clean, 0.2, seed=3))
    assert psnr(clean, copy) == pytest.approx(20 * math.log10(1 / 0.2), abs=1.5)


@pytest.mark.skipif(not (DATA / "isbi2012" / "images").is_dir(), reason="no shared ISBI data")
def test_brief_training_denoises_a_held_out_real_image(load_benchmark, tmp_path: Path) -> None:
    bench = load_benchmark("bench_restore")
    out = tmp_path / "restore.json"
    assert bench.main(["--quick", "--steps", "120", "--json", str(out)]) == 0
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["mode"] == "quick" and record["data"] == "isbi"
    assert math.isclose(
        record["gain_db"], record["psnr_restored_db"] - record["psnr_noisy_db"], abs_tol=0.01
    )
    assert record["psnr_noisy_db"] < 16 and record["gain_db"] > 3.0, record
    assert not any(isinstance(v, dict) for v in record.values()), "the JSON must stay flat"


def test_the_held_out_image_is_not_a_training_image(load_benchmark) -> None:
    bench = load_benchmark("bench_restore")
    setup = dataclasses.replace(bench.RestoreSetup(), crop=64)
    if not (DATA / "isbi2012" / "images").is_dir():
        pytest.skip("no shared ISBI data")
    train, held = bench.clean_images(setup)
    assert train.shape == held.shape == (64, 64) and not np.allclose(train, held)
    assert float(train.min()) >= 0.0 and float(train.max()) <= 1.0

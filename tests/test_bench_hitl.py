"""Smoke test of benchmarks/bench_hitl.py: synthetic EM folder, depth-2 net, a few steps/round.

Goes the real way: session folder -> spawned ``run_trainer`` -> published version -> model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def _em_folder(root: Path, n: int) -> None:
    """``root/isbi2012/{images,labels}``: synthetic EM, labels 0 = membrane, 255 = interior."""
    from napari_unet.core.io.images import write_tiff
    from napari_unet.core.synthetic import synthetic_em

    for sub in ("images", "labels"):
        (root / "isbi2012" / sub).mkdir(parents=True)
    for i in range(n):
        image, membranes, _ = synthetic_em((64, 64), n_cells=8, seed=i)
        write_tiff(root / "isbi2012" / "images" / f"{i:02d}.tif", image, axes="YX")
        labels = np.where(membranes > 0, 0, 255).astype(np.uint8)
        write_tiff(root / "isbi2012" / "labels" / f"{i:02d}.tif", labels, axes="YX")


def test_smoke_rounds_go_through_session_and_trainer(load_benchmark, tmp_path: Path) -> None:
    from napari_unet.session import Session

    bench = load_benchmark("bench_hitl")
    _em_folder(tmp_path / "data", 4)
    out, sessions = tmp_path / "hitl.json", tmp_path / "sessions"
    argv = ["--smoke", "--dataset", "isbi2012", "--data-root", str(tmp_path / "data")]
    argv += ["--json", str(out), "--session-dir", str(sessions), "--threads", "1"]
    argv += ["--plot", str(tmp_path / "hitl.png")]
    assert bench.main(argv) == 0
    results = json.loads(out.read_text(encoding="utf-8"))
    assert (tmp_path / "hitl.png").stat().st_size > 1000

    for key in (
        "rounds",
        "per_round",
        "minutes_per_round",
        "isbi2012_final_iou",
        "isbi2012_initial_iou",
        "isbi2012_final_rand_error",
        "machine",
        "date",
    ):
        assert key in results, key
    assert results["rounds"] == 2 and results["per_round"] == 1
    assert not any(isinstance(v, dict) for v in results.values()), "the JSON must stay flat"
    assert results["isbi2012_corrected_images"] == [0, 1, 2]
    assert len(results["isbi2012_iou"]) == 3 and math.isfinite(results["isbi2012_final_iou"])
    assert results["isbi2012_steps"][1:] == [3, 3]
    assert all(p > 0 for p in results["isbi2012_pixels_corrected"][1:])

    held, corrected = set(results["isbi2012_held_out"]), set(results["isbi2012_corrected"])
    assert held and not held & corrected
    session = Session.open(sessions / "isbi2012_session", readonly=True)
    names = {entry.name for entry in session.images()}
    assert names == corrected, "exactly the corrected images went into the session"
    # each round's trainer published a version; round 2 started from round 1's
    versions = session.versions()
    assert [v.id for v in versions] == results["isbi2012_session_versions"] == ["v001", "v002"]
    assert versions[1].parent == "v001"
    assert results["isbi2012_model_version"] == ["start", "v001", "v002"]
    assert all(session.version_path(v.id).is_file() for v in versions)

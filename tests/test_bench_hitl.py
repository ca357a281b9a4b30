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


def test_the_snapshot_is_labelled_with_the_versions_own_post_processing(load_benchmark, tmp_path):
    """What the simulated user corrects (the session's snapshot) is the model's prediction with
    its own stored post-processing, as the Segment dock makes it — not the defaults."""
    import torch

    from napari_unet.core.checkpoint.format import load_checkpoint, save_checkpoint
    from napari_unet.core.generators import run_to_end
    from napari_unet.core.inference.config import PredictConfig
    from napari_unet.core.inference.normalization import NormalizationConfig, normalize
    from napari_unet.core.io.images import write_tiff
    from napari_unet.core.models import build_model
    from napari_unet.core.simulation.config import SimulateConfig
    from napari_unet.core.simulation.parts import predict_labels
    from napari_unet.core.simulation.versions import checkpoint_postprocess
    from napari_unet.core.synthetic import synthetic_em
    from napari_unet.core.training.items import TrainingItem
    from napari_unet.session import Session

    load_benchmark("bench_hitl")  # puts benchmarks/ on the path
    from _bench_hitl_session import SessionTrainer

    torch.manual_seed(0)
    net = build_model("unet", depth=2, base_channels=4, in_channels=1, out_channels=1)
    start = save_checkpoint(tmp_path / "start.pt", net, task="binary",
                            provenance={"postprocess": {"min_size": 10**9}})  # fmt: skip
    loaded = load_checkpoint(start)
    model, info = loaded.model, loaded.info
    image, membranes, _ = synthetic_em((64, 64), n_cells=8, seed=0)
    write_tiff(tmp_path / "em.tif", image, axes="YX")
    item = TrainingItem(normalize(image[None], NormalizationConfig()), labels=membranes > 0,
                        name="em")  # fmt: skip
    simulate = SimulateConfig(task="binary", predict=PredictConfig(tile_shape=(64, 64),
                                                                    device="cpu"))  # fmt: skip
    assert predict_labels(model, item.image, simulate).any(), "the defaults keep foreground"
    session = Session.create(tmp_path / "s.unet")
    snapshots = []
    save_slice = session.save_slice
    session.save_slice = lambda *a, **k: snapshots.append(k["snapshot"]) or save_slice(*a, **k)
    train = {"steps": 1, "batch_size": 2, "patch_shape": [32, 32], "val_fraction": 0.0,
             "amp": False, "channels_last": False, "device": "cpu"}  # fmt: skip
    own = checkpoint_postprocess(info, "binary")
    hook = SessionTrainer(session, start, {"em": tmp_path / "em.tif"},
                          {"em": (membranes > 0).astype(np.uint8)}, simulate, train, threads=1,
                          in_process=True, postprocess=own)  # fmt: skip
    returned = run_to_end(hook(model, [item], 1))
    (snapshot,) = snapshots
    assert not snapshot.any(), "labelled with the start model's own settings (min size 1e9)"
    assert hook.extras[0]["versions"] == ["v001"]
    assert returned.postprocess == hook.postprocess and hook.postprocess.min_size == 10**9

"""The simulated human-in-the-loop experiment: split, correction effort, rounds, CLI, plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_unet.core.errors import UserInputError
from napari_unet.core.inference.normalization import normalize
from napari_unet.core.inference.prediction import PredictConfig
from napari_unet.core.simulation.experiment import (
    RoundRecord,
    SimulateConfig,
    SimulateProgress,
    correction_effort,
    iter_simulate,
    mean_metrics,
    new_model_for,
    plan_split,
)
from napari_unet.core.synthetic import synthetic_nuclei
from napari_unet.core.training.config import StepEvent
from napari_unet.core.training.items import TrainingItem


def _items(n: int = 6) -> list[TrainingItem]:
    items = []
    for i in range(n):
        image, labels = synthetic_nuclei((64, 64), n_nuclei=6, seed=i)
        items.append(TrainingItem(normalize(image[None].astype(np.float32)), labels, name=f"{i}"))
    return items


def test_plan_split_is_disjoint_seeded_and_checks_the_count() -> None:
    order, held = plan_split(10, n_corrected=6, n_eval=3, seed=1)
    assert len(order) == 6 and len(held) == 3
    assert not set(order) & set(held)
    assert (order, held) == plan_split(10, n_corrected=6, n_eval=3, seed=1)
    assert plan_split(10, n_corrected=6, n_eval=3, seed=2) != (order, held)
    with pytest.raises(UserInputError, match="fewer rounds"):
        plan_split(5, n_corrected=4, n_eval=2, seed=0)


def test_correction_effort_semantic_counts_pixels_and_regions() -> None:
    truth = np.zeros((8, 8), dtype=np.int64)
    pred = truth.copy()
    pred[0, 0:2] = 1  # one region of 2 wrong pixels
    pred[5, 5] = 1  # another region of 1
    truth[7, 0] = 1  # a missed pixel: third region
    assert correction_effort(pred, truth, task="semantic") == (4, 3)
    assert correction_effort(truth, truth, task="semantic") == (0, 0)
    # binary: any non-zero class is foreground
    assert correction_effort(pred * 2, truth, task="binary") == (4, 3)


def test_correction_effort_instances_uses_matching() -> None:
    truth = np.zeros((10, 10), dtype=np.int64)
    truth[0:4, 0:4] = 1
    truth[6:9, 6:9] = 2
    pred = np.zeros_like(truth)
    pred[0:4, 0:4] = 7  # same object, other id: no correction
    pred[0:2, 6:8] = 3  # a false positive (4 px); object 2 is missed (9 px)
    pixels, objects = correction_effort(pred, truth, task="instances")
    assert (pixels, objects) == (4 + 9, 2)
    pred[0:4, 3] = 0  # object 1 shrinks to IoU 0.75: still matched, 4 pixels to fix
    assert correction_effort(pred, truth, task="instances") == (4 + 9 + 4, 2)


def test_mean_metrics_skips_nan() -> None:
    means = mean_metrics([{"a": 1.0, "b": float("nan")}, {"a": 3.0, "b": float("nan")}])
    assert means["a"] == 2.0 and np.isnan(means["b"])


def test_new_model_for_caps_the_class_count_as_the_cli_does() -> None:
    """The core API refuses a 70,001-class network itself (not only ``train``/``simulate``)."""
    from napari_unet.core.errors import TrainingDataError

    items = _items(2)
    labels = items[0].labels.astype(np.int64)
    labels[labels == 1] = 70000
    items[0] = TrainingItem(items[0].image, labels, name="big")
    with pytest.raises(TrainingDataError, match=r"70000.*70,001-class network \(at most 256\)"):
        new_model_for("unet", items, "semantic", depth=2, base_channels=4)
    model = new_model_for("unet", items, "semantic", label_map={70000: 1}, depth=2, base_channels=4)
    assert model.out_channels == max(int(items[1].labels.max()), 1) + 1


def test_new_model_for_counts_only_annotated_values_and_restoration_channels() -> None:
    items = _items(1)
    labels = np.where(items[0].labels > 0, 9, 0)
    mask = labels == 0  # only background is annotated: the 9s are not trained on
    items = [TrainingItem(items[0].image, labels, annotated_mask=mask, name="a")]
    assert new_model_for("unet", items, "semantic", depth=2, base_channels=4).out_channels == 2
    target = np.zeros((2, 64, 64), np.float32)
    items = [TrainingItem(items[0].image, target, name="r")]
    model = new_model_for("unet", items, "restoration", depth=2, base_channels=4)
    assert model.out_channels == 2


def test_loop_trains_on_corrected_images_only_and_is_cumulative() -> None:
    items = _items(6)
    model = new_model_for("unet", items, "instances", depth=2, base_channels=4)
    seen: list[list[str]] = []

    def trainer(model, pool, round_index):  # a fake trainer: records what it was given
        seen.append([item.name for item in pool])
        assert all(item.annotated_mask is None for item in pool)
        yield StepEvent(step=1, loss=0.5, lr=1e-3, patches_per_s=1.0, elapsed_s=0.0)
        return model

    config = SimulateConfig(
        task="instances",
        rounds=2,
        per_round=2,
        eval_images=2,
        predict=PredictConfig(tile_shape=(64, 64), device="cpu"),
    )
    events = list_events(iter_simulate(model, items, config, trainer=trainer))
    records = [e for e in events if isinstance(e, RoundRecord)]
    result = events[-1]
    assert [r.round for r in records] == [0, 1, 2]
    assert [r.corrected_images for r in records] == [0, 2, 4]
    assert [r.steps for r in records] == [0, 1, 1]
    assert seen[0] == list(records[1].new_images)
    assert seen[1] == seen[0] + list(records[2].new_images)
    assert not set(result.held_out) & set(seen[1])
    assert len(result.held_out) == 2 and "ap50" in records[0].metrics
    assert any(isinstance(e, SimulateProgress) and e.phase == "evaluate" for e in events)


def list_events(generator) -> list:
    """Every yielded event, then the returned value."""
    events = []
    while True:
        try:
            events.append(next(generator))
        except StopIteration as done:
            return [*events, done.value]


def test_stop_ends_after_the_current_round() -> None:
    items = _items(6)
    model = new_model_for("unet", items, "binary", depth=2, base_channels=4)
    config = SimulateConfig(
        task="binary",
        rounds=2,
        per_round=1,
        steps_per_round=2,
        eval_images=1,
        predict=PredictConfig(tile_shape=(64, 64), device="cpu"),
        train=SimulateConfig().train.replace(patch_shape=(32, 32), batch_size=2, device="cpu"),
    )
    events = list_events(iter_simulate(model, items, config, stop=lambda: True))
    assert [r.round for r in events[-1].rounds] == [0]


def test_cli_simulate_writes_json_and_plot(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    pytest.importorskip("matplotlib")
    from napari_unet.cli import main

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for i in range(6):
        image, truth = synthetic_nuclei((64, 64), n_nuclei=6, seed=i)
        tifffile.imwrite(images / f"img{i}.tif", image)
        tifffile.imwrite(labels / f"img{i}.tif", truth)
    out, plot = tmp_path / "sim.json", tmp_path / "sim.png"
    argv = ["simulate", "--images", str(images), "--labels", str(labels)]
    argv += ["--task", "instances", "--depth", "2", "--base-channels", "4"]
    argv += ["--rounds", "2", "--per-round", "2", "--steps-per-round", "3", "--eval-images", "2"]
    argv += ["--patch", "32", "--tile", "64", "--device", "cpu", "--threads", "1"]
    argv += ["--json", str(out), "--plot", str(plot)]
    assert main(argv) == 0

    summary = json.loads(out.read_text(encoding="utf-8"))
    rounds = summary["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert [r["corrected_images"] for r in rounds] == [0, 2, 4]
    assert [r["steps"] for r in rounds] == [0, 3, 3]
    for r in rounds:
        for key in ("minutes_trained", "cumulative_minutes", "pixels_corrected"):
            assert r[key] >= 0
        assert {"ap50", "ap75", "f1_50", "matched_iou"} <= set(r["metrics"])
        assert 0.0 <= r["metrics"]["ap50"] <= 1.0
    assert rounds[2]["cumulative_minutes"] >= rounds[1]["cumulative_minutes"] > 0
    # a random model's first prediction needs correcting
    assert rounds[1]["pixels_corrected"] > 0 and rounds[1]["objects_corrected"] > 0
    corrected = [name for r in rounds for name in r["new_images"]]
    assert len(set(corrected)) == 4
    assert len(summary["held_out"]) == 2 and not set(summary["held_out"]) & set(corrected)
    assert summary["config"]["simulate"]["rounds"] == 2
    # a new model zooms its patches 0.9-1.1x (core.training.fingerprint.ZOOM)
    assert summary["config"]["simulate"]["train"]["augment"]["affine_scale"] == [0.9, 1.1]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000


def test_cli_refuses_too_few_images(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tifffile = pytest.importorskip("tifffile")
    from napari_unet.cli import main

    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    for i in range(3):
        image, truth = synthetic_nuclei((32, 32), n_nuclei=2, seed=i)
        tifffile.imwrite(tmp_path / "images" / f"{i}.tif", image)
        tifffile.imwrite(tmp_path / "labels" / f"{i}.tif", truth)
    argv = ["simulate", "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels")]
    argv += ["--task", "instances", "--depth", "2", "--base-channels", "4", "--rounds", "2"]
    argv += ["--per-round", "2", "--steps-per-round", "1", "--json", str(tmp_path / "o.json")]
    assert main(argv) == 2
    assert "fewer rounds" in capsys.readouterr().err

"""Flipped intensities for a start model trained the other way up (``NormalizationConfig.invert``,
``core.training.polarity``, ``train --invert``): dark nuclei on a bright background reach the
fluorescence built-in as bright nuclei, the choice is stored and prediction applies it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_unet.core.checkpoint.format import builtin_checkpoints, load_checkpoint
from napari_unet.core.inference.normalization import (
    NormalizationConfig,
    apply_normalization,
    normalization_params,
    normalize,
)
from napari_unet.core.synthetic import synthetic_nuclei
from napari_unet.core.training.config import TrainConfig
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.polarity import choose_polarity, flipped


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_invert_flips_every_mode_and_keeps_nan_at_zero(dtype):
    rng = np.random.default_rng(0)
    image = (rng.random((2, 24, 32)) * 200).astype(dtype)
    keep = np.ones(image.shape, bool)
    if dtype != np.uint8:
        image[0, 0, 0], image[1, 3, 4] = np.nan, np.inf
        keep[0, 0, 0] = keep[1, 3, 4] = False
    plain, inverted = normalize(image), normalize(image, NormalizationConfig(invert=True))
    np.testing.assert_allclose(inverted[keep], 1.0 - plain[keep], atol=1e-6)
    if dtype != np.uint8:
        assert inverted[0, 0, 0] == 0.0 and inverted[1, 3, 4] == 0.0  # NaN: 0; +Inf: bright -> 0
    meanstd = NormalizationConfig(mode="meanstd", mean=(3.0,), std=(2.0,))
    np.testing.assert_allclose(
        normalize(image, meanstd.replace(invert=True))[keep], -normalize(image, meanstd)[keep]
    )
    constant = np.full((1, 5, 5), 7, np.uint16)
    assert not normalize(constant, NormalizationConfig(invert=True)).any()


def test_invert_is_applied_tile_by_tile_and_old_checkpoints_read_as_not_inverted():
    image = np.random.default_rng(1).random((1, 40, 40)).astype(np.float32)
    config = NormalizationConfig(invert=True)
    params = normalization_params(image, config)
    tile = apply_normalization(image[None, :, 8:24, 8:24], params)[0]
    np.testing.assert_allclose(tile, normalize(image, config)[:, 8:24, 8:24])
    stored = NormalizationConfig().to_dict()
    stored.pop("invert")
    assert NormalizationConfig.from_dict(stored).invert is False


def _nuclei(n: int, *, dark: bool, seed0: int = 0) -> list[TrainingItem]:
    items = []
    for seed in range(seed0, seed0 + n):
        image, labels = synthetic_nuclei((96, 96), seed=seed, n_nuclei=10)
        raw = _dark(image) if dark else image
        pixels = normalize(raw[None].astype(np.float32))
        items.append(TrainingItem(pixels, labels.astype(np.int32), name=f"n{seed}"))
    return items


@pytest.mark.parametrize("dark", [False, True])
def test_the_fluorescence_built_in_is_flipped_for_dark_nuclei_only(dark):
    model = load_checkpoint(builtin_checkpoints()["fluo-nuclei"]).model
    config = TrainConfig(task="instances", batch_size=2, device="cpu")
    choice = choose_polarity(model, _nuclei(3, dark=dark), config)
    assert choice.invert is dark
    better, worse = (choice.flipped_score, choice.score)[:: 1 if dark else -1]
    assert better > worse + 0.2, choice
    assert ("flipped for the start model" in choice.line()) is dark


def test_flipped_items_toggle_invert_and_copy_the_images():
    items = _nuclei(1, dark=True)
    out, normalization = flipped(items, NormalizationConfig(invert=True))
    assert normalization.invert is False and out[0].labels is items[0].labels
    np.testing.assert_allclose(out[0].image, 1.0 - items[0].image)
    assert choose_polarity(None, items, TrainConfig(task="restoration")).invert is False


def _dark(image: np.ndarray) -> np.ndarray:
    """The synthetic fluorescence image (uint16, bright nuclei) as dark nuclei on bright."""
    return (int(image.max()) - image.astype(np.int64)).astype(np.uint16)


def _write(folder, items_raw):
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for name, (raw, labels) in items_raw.items():
        tifffile.imwrite(folder / "images" / f"{name}.tif", raw)
        tifffile.imwrite(folder / "labels" / f"{name}.tif", labels.astype(np.uint16))


def _cli(*args):
    done = subprocess.run(
        [sys.executable, "-m", "napari_unet", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_train_flips_dark_nuclei_for_the_built_in_and_predict_applies_it(tmp_path):
    """`train --model fluo-nuclei` on dark nuclei says it flips, stores the flip, and the model
    then finds the nuclei of a new dark image that the built-in misses as it is."""
    from napari_unet.core.evaluation.score import evaluate_pair

    raws = {}
    for seed in range(3):
        image, labels = synthetic_nuclei((96, 96), seed=seed, n_nuclei=10)
        raws[f"d{seed}"] = (_dark(image), labels)
    _write(tmp_path, raws)
    test_image, truth = synthetic_nuclei((128, 128), seed=11, n_nuclei=14)
    tifffile.imwrite(tmp_path / "test.tif", _dark(test_image))
    out = tmp_path / "m.pt"
    log = _cli("train", "--images", str(tmp_path / "images"), "--labels",
               str(tmp_path / "labels"), "--task", "instances", "--model", "fluo-nuclei",
               "--steps", "2", "--device", "cpu", "--threads", "1", "--out", str(out))  # fmt: skip
    assert "intensities flipped for the start model" in log, log
    assert load_checkpoint(out).info.normalization_config().invert is True
    scores = {}
    for name, model in (("trained", str(out)), ("built-in", "fluo-nuclei")):
        _cli("predict", str(tmp_path / "test.tif"), "--model", model, "--labels", "instances",
             "--device", "cpu", "--out", str(tmp_path / name))  # fmt: skip
        labels = tifffile.imread(tmp_path / name / "test_labels.tif")
        scores[name] = evaluate_pair(labels, truth, task="instances")["ap50"]
    assert scores["trained"] > 0.5 and scores["built-in"] < 0.2, scores


def _train_dark(tmp_path, model: str, invert: str):
    """One ``train`` step of ``model`` on two dark-background nuclei images with ``--invert
    invert``; returns (the log, the written checkpoint's path)."""
    raws = {}
    for seed in range(2):
        image, labels = synthetic_nuclei((96, 96), seed=seed, n_nuclei=10)
        raws[f"d{seed}"] = (_dark(image), labels)
    _write(tmp_path, raws)
    out = tmp_path / "m.pt"
    log = _cli("train", "--images", str(tmp_path / "images"), "--labels",
               str(tmp_path / "labels"), "--task", "instances", "--model", model,
               "--steps", "1", "--device", "cpu", "--threads", "1", "--invert", invert,
               "--out", str(out))  # fmt: skip
    return log, out


def test_invert_no_keeps_the_images_as_they_are(tmp_path):
    log, out = _train_dark(tmp_path, "fluo-nuclei", "no")
    assert "flipped" not in log
    assert load_checkpoint(out).info.normalization_config().invert is False


def test_the_fine_tune_dock_trainer_flips_dark_corrections_for_the_built_in(tmp_path):
    """The dock's trainer makes the same choice on the session's corrections, says so in the
    pool line, and trains and stores the flipped normalisation (so versions predict flipped)."""
    import queue

    from trainer_kill_helper import request, review_slice

    from napari_unet.session import Session
    from napari_unet.trainer.events import PoolChanged, TrainerFinished
    from napari_unet.trainer.process import run_trainer

    pairs = [synthetic_nuclei((96, 96), seed=seed, n_nuclei=10) for seed in range(2)]
    folder = tmp_path / "session"
    session = Session.create(folder)
    stack = np.stack([_dark(image) for image, _ in pairs])
    image_id = session.add_image("dark", axes="ZYX", image=stack, task="instances")
    for index, (_, labels) in enumerate(pairs):
        review_slice(session, image_id, index, labels.astype(np.uint16))
    start = builtin_checkpoints()["fluo-nuclei"]
    events: queue.Queue = queue.Queue()
    run_trainer(request(folder, start, train={"steps": 2}).to_dict(), events, queue.Queue())
    seen = [events.get_nowait() for _ in range(events.qsize())]
    assert isinstance(seen[-1], TrainerFinished), seen[-1]
    pools = [e for e in seen if isinstance(e, PoolChanged)]
    assert pools and "intensities flipped for the start model" in pools[0].fingerprint
    assert pools[0].flipped.startswith("intensities flipped for the start model")
    (latest,) = (folder / "runs").glob("*/latest.pt")
    assert load_checkpoint(latest).info.normalization_config().invert is True


def test_simulate_scores_the_start_as_it_is_then_flips_for_round_one(tmp_path):
    """Round 0 scores the fluorescence built-in on dark nuclei as a user would first see it
    (almost nothing found); round 1 flips every image for it, as the trainer does on the
    corrections, and says so in its record and line."""
    from test_simulate_versions import PREDICT

    from napari_unet.cli.simulate_report import format_round
    from napari_unet.core.simulation.config import SimulateConfig
    from napari_unet.core.simulation.experiment import simulate

    loaded = load_checkpoint(builtin_checkpoints()["fluo-nuclei"])
    train = TrainConfig(task="instances", lr=1e-5, batch_size=2, patch_shape=(64, 64),
                        val_fraction=0.0, val_tile=32, amp=False, device="cpu")  # fmt: skip
    config = SimulateConfig(task="instances", rounds=1, per_round=2, steps_per_round=1,
                            eval_images=2, seed=0, train=train, predict=PREDICT)  # fmt: skip
    result = simulate(loaded.model, _nuclei(5, dark=True), config, work_dir=str(tmp_path),
                      start_trained=True,
                      postprocess=loaded.info.postprocess_config(output="instances"))  # fmt: skip
    first, second = result.rounds
    assert not first.intensities_flipped and second.intensities_flipped
    assert first.metrics["ap50"] < 0.2 < second.metrics["ap50"], (first.metrics, second.metrics)
    assert "intensities flipped for the start model" in format_round(second, "instances")
    assert result.to_dict()["rounds"][1]["intensities_flipped"] is True


def test_invert_yes_for_a_new_model_says_it_is_ignored(tmp_path):
    log, out = _train_dark(tmp_path, "unet", "yes")
    assert "--invert yes is ignored" in log and "a new model learns either way" in log
    assert load_checkpoint(out).info.normalization_config().invert is False

"""``simulate`` scores every version with its own post-processing (issue 17, session 10).

A start checkpoint's stored post-processing (the built-in ``fluo-nuclei``: threshold 0.8, seeds
0.4, min size 50) labels the held-out images of round 0, and the guard compares a fine-tuned
model with its parent on the held-back tiles each with its own: the parent with its stored
settings, the child with the settings re-tuned from them. Tiny synthetic runs (a few steps).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_unet.core.checkpoint.format import builtin_checkpoints, load_checkpoint
from napari_unet.core.inference.normalization import NormalizationConfig, normalize
from napari_unet.core.inference.prediction import PredictConfig, predict
from napari_unet.core.postprocess.config import PostprocessConfig
from napari_unet.core.postprocess.labels import labels_from_probabilities
from napari_unet.core.synthetic import synthetic_nuclei
from napari_unet.core.training.config import TrainConfig
from napari_unet.core.training.items import TrainingItem

PREDICT = PredictConfig(tile_shape=(96, 96), device="cpu", batch_size=1)


def nuclei_items(n: int = 5) -> list[TrainingItem]:
    items = []
    for seed in range(n):
        image, labels = synthetic_nuclei((96, 96), seed=seed, n_nuclei=10)
        pixels = normalize(image[None].astype(np.float32), NormalizationConfig())
        items.append(TrainingItem(pixels, labels.astype(np.int32), name=f"n{seed}"))
    return items


def start():
    """The built-in instance model and its stored post-processing (instances)."""
    loaded = load_checkpoint(builtin_checkpoints()["fluo-nuclei"])
    return loaded.model, loaded.info.postprocess_config(output="instances")


def held_out_metrics(model, post, items: list[TrainingItem], held: list[int]) -> dict:
    """Mean held-out metrics of ``model`` labelled with ``post``, computed here on its own."""
    from napari_unet.core.evaluation.score import evaluate_pair
    from napari_unet.core.simulation.parts import mean_metrics

    rows = []
    for i in held:
        probabilities = predict(
            model, items[i].image, "CYX", task="instances",
            normalization=NormalizationConfig(mode="none"), config=PREDICT,
        )  # fmt: skip
        labels = labels_from_probabilities(probabilities, task="instances", config=post)
        rows.append(evaluate_pair(labels, items[i].labels.astype(np.int64), task="instances"))
    return mean_metrics(rows)


def config(lr: float, rounds: int = 1):
    from napari_unet.core.simulation.config import SimulateConfig

    train = TrainConfig(
        task="instances", lr=lr, batch_size=2, patch_shape=(64, 64), val_fraction=0.0,
        val_tile=32, val_every=1, amp=False, channels_last=False, device="cpu",
    )  # fmt: skip
    return SimulateConfig(task="instances", rounds=rounds, per_round=2, steps_per_round=2,
                          eval_images=2, seed=0, train=train, predict=PREDICT)  # fmt: skip


def test_the_cli_scores_a_built_in_start_with_its_stored_post_processing(tmp_path):
    """Round 0 of ``simulate --model fluo-nuclei`` labelled the held-out images with the default
    post-processing (threshold 0.5, min size 0), not the model's own."""
    import json

    from skimage.io import imsave

    from napari_unet.cli import main
    from napari_unet.core.simulation.parts import plan_split

    items = []
    for kind in ("images", "labels"):
        (tmp_path / kind).mkdir()
    for seed in range(5):
        image, labels = synthetic_nuclei((96, 96), seed=seed, n_nuclei=10)
        imsave(tmp_path / "images" / f"n{seed}.tif", image, check_contrast=False)
        imsave(tmp_path / "labels" / f"n{seed}.tif", labels, check_contrast=False)
        pixels = normalize(image[None].astype(np.float32), NormalizationConfig())
        items.append(TrainingItem(pixels, labels.astype(np.int32), name=f"n{seed}"))
    argv = ["simulate", "--images", str(tmp_path / "images"), "--labels",
            str(tmp_path / "labels"), "--task", "instances", "--model", "fluo-nuclei",
            "--rounds", "0", "--per-round", "1", "--eval-images", "3", "--tile", "96",
            "--device", "cpu", "--json", str(tmp_path / "run.json")]  # fmt: skip
    assert main(argv) == 0
    round0 = json.loads((tmp_path / "run.json").read_text())["rounds"][0]
    model, own = start()
    _, held = plan_split(5, n_corrected=0, n_eval=3, seed=0)
    expected = held_out_metrics(model, own, items, held)
    default = held_out_metrics(model, own.replace(threshold=0.5, min_size=0), items, held)
    assert expected != pytest.approx(default), "the stored settings change the labels here"
    got = {k: v for k, v in round0["metrics"].items() if v is not None}
    assert got == pytest.approx({k: v for k, v in expected.items() if k in got})
    assert round0["postprocess"]["min_size"] == 50 and round0["postprocess"]["threshold"] == 0.8


@pytest.mark.parametrize("lr, min_size", [(0.1, None), (1e-4, 400)])
def test_a_round_never_goes_on_with_a_version_that_scores_lower_than_its_parent(
    tmp_path, lr, min_size
):
    """The issue's target, judged with each version's own post-processing on the held-back
    tiles. lr 0.1 wrecks the fine-tune: the parent goes on with its stored settings. lr 1e-4
    barely moves the weights, but a parent whose settings drop most nuclei (min size 400) is
    beaten by its child with the settings re-tuned from them, which then labels the held-out
    images."""
    from napari_unet.cli.simulate_report import format_round
    from napari_unet.core.simulation.experiment import simulate
    from napari_unet.core.simulation.guard import GUARD_FRACTION
    from napari_unet.core.simulation.parts import plan_split
    from napari_unet.core.simulation.versions import Version, held_back_score
    from napari_unet.core.training.split import split_validation

    items = nuclei_items()
    settings = config(lr)
    model, own = start()
    own = own if min_size is None else own.replace(min_size=min_size)
    result = simulate(model, items, settings, work_dir=str(tmp_path), start_trained=True,
                      postprocess=own)  # fmt: skip
    first, second = result.rounds
    assert first.postprocess == own.to_dict()
    order, held = plan_split(5, n_corrected=2, n_eval=2, seed=0)
    expected = held_out_metrics(start()[0], own, items, held)
    assert first.metrics == pytest.approx(expected, nan_ok=True)
    # the guard's held-back tiles, and both versions scored there each with its own settings
    corrected = [dataclasses.replace(items[i], annotated_mask=None) for i in order]
    round_config = settings.round_train_config(1, str(tmp_path / "check"))
    _, val = split_validation(corrected, GUARD_FRACTION, tile=32, seed=round_config.seed)
    parent_score = held_back_score(Version(start()[0], own), val, round_config, PREDICT)
    child_post = PostprocessConfig.from_dict(second.postprocess)
    child_score = held_back_score(Version(result.model, child_post), val, round_config, PREDICT)
    assert parent_score is not None and child_score is not None
    held_back = second.to_dict()["held_back"]  # both scores, in the JSON
    assert held_back["metric"] == "AP@0.5" and held_back["published"] is (min_size is not None)
    assert held_back["parent_score"] == pytest.approx(parent_score)
    line = format_round(second, "instances")
    if min_size is None:
        assert line.endswith("the parent is kept)"), line
    else:
        assert held_back["score"] == pytest.approx(child_score)
        assert line.endswith(f"(held-back AP@0.5 {child_score:.3f} > parent {parent_score:.3f}: "
                             "published)"), line  # fmt: skip
    if min_size is None:  # the parent went on, with its own settings
        assert second.note.startswith("version not published: held-back AP@0.5 "), second.note
        assert second.note.endswith(f"parent {parent_score:.3f}")
        assert child_post == own and child_score == pytest.approx(parent_score)
    else:  # the child went on, with its own (re-tuned) settings
        assert not second.note and child_post.min_size < min_size
        assert child_score > parent_score
    expected = held_out_metrics(result.model, child_post, items, held)
    assert second.metrics == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize(("child_pixels", "published"), [(0.9, True), (0.7, False)])
def test_a_tie_on_the_held_back_score_is_broken_by_the_pixel_score(
    monkeypatch, child_pixels, published
):
    """A parent scoring AP@0.5 1.0 on a few held-back tiles must not block every child: a child
    tied there is published when its pixel validation score is higher, never when lower."""
    from napari_unet.core.postprocess.config import PostprocessConfig
    from napari_unet.core.simulation import versions

    parent_model, child_model = object(), object()
    settings = PostprocessConfig(output="instances")
    tied = versions.HeldBackScore(1.0, "AP@0.5")
    monkeypatch.setattr(versions, "_tuned", lambda *a, **k: (settings, tied, None))
    pixels = {id(parent_model): 0.8, id(child_model): child_pixels}
    monkeypatch.setattr(versions, "score_model", lambda model, *a: pixels[id(model)])
    verdict = versions.judge_child(
        child_model, versions.Version(parent_model, settings), tied, [object()], None, None
    )
    assert verdict.better is published
    if not published:
        assert "AP@0.5 1.000 = parent 1.000" in verdict.message
        assert "validation 0.700 <= 0.800" in verdict.message

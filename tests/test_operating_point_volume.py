"""A volume within one tile holds back annotated slices; a 3-D model's operating point is chosen
on them with the 3-D watershed (issue 20)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_unet.core.checkpoint.format import load_checkpoint
from napari_unet.core.models import build_model
from napari_unet.core.postprocess import PostprocessConfig
from napari_unet.core.training.augment import AugmentConfig
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.loop import TrainConfig, train
from napari_unet.core.training.operating_point import choose_operating_point
from napari_unet.core.training.split import split_validation, splits_by_plane
from tests.test_operating_point import _Logits
from tests.volume_helpers import CENTRES, balls


def _slices(shape: tuple[int, ...], planes) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[list(planes)] = True
    return mask


def _item(shape, planes, name="stack") -> TrainingItem:
    rng = np.random.default_rng(0)
    image = rng.random((1, *shape), dtype=np.float32)
    labels = np.zeros(shape, np.uint8)
    labels[:, 10:20, 10:20] = 1
    return TrainingItem(image, labels, _slices(shape, planes), name)


def test_a_volume_within_one_tile_holds_back_whole_annotated_slices():
    item = _item((20, 100, 100), (3, 9, 15))
    assert splits_by_plane(item.spatial_shape, 128) and not splits_by_plane((100, 100), 128)
    train_items, val_items = split_validation([item], 0.1, tile=128, seed=0)
    held = val_items[0].mask
    planes = np.nonzero(held.any(axis=(1, 2)))[0]
    assert len(planes) == 1 and planes[0] in (3, 9, 15)
    assert held[planes[0]].all()  # the whole slice, nothing else
    assert held.sum() == 100 * 100
    assert not (train_items[0].mask & held).any()
    np.testing.assert_array_equal(train_items[0].mask | held, item.mask)


@pytest.mark.parametrize("seed", range(6))
def test_held_back_slices_keep_their_side_when_slices_are_added(seed):
    item = _item((20, 100, 100), (3, 9, 15))
    more = dataclasses.replace(item, annotated_mask=_slices(item.spatial_shape, (3, 9, 15, 18)))
    _, before = split_validation([item], 0.5, tile=128, seed=seed, at_least_one=False)
    _, after = split_validation([more], 0.5, tile=128, seed=seed, at_least_one=False)
    held_before = before[0].mask if before else np.zeros(item.spatial_shape, bool)
    held_after = after[0].mask if after else np.zeros(item.spatial_shape, bool)
    np.testing.assert_array_equal(held_after & item.mask, held_before)


def test_a_volume_wider_than_a_tile_holds_back_yx_tiles_through_every_slice():
    item = _item((20, 300, 300), (3, 9, 15))
    _, val_items = split_validation([item], 0.25, tile=128, seed=0)
    held = val_items[0].mask
    columns = held.any(axis=0)
    assert 0 < columns.sum() < 300 * 300
    for z in (3, 9, 15):
        np.testing.assert_array_equal(held[z], columns)
    assert held.sum() == 3 * columns.sum()


class _Logits3D(_Logits):
    """A stand-in 3-D network whose 3 input channels ARE the logits."""

    spatial_dims = 3


def _swollen_scene() -> tuple[np.ndarray, np.ndarray]:
    """(3, Z, Y, X) logits of the three balls of ``volume_helpers`` (interior core, boundary rim)
    whose foreground runs on 2 slices above and below each ball at p(foreground) ~ 0.76 -- the
    Z over-extension of a 3-D model trained on a few slices -- and the true instance labels."""
    _, truth = balls()
    logits = np.zeros((3, *truth.shape), np.float32)
    logits[0] = 6.0
    logits[0][truth > 0] = 0.0
    z, y, x = np.meshgrid(*(np.arange(n) for n in truth.shape), indexing="ij")
    for value, (cz, cy, cx) in enumerate(CENTRES, start=1):
        disc = ((y - cy) / 8.0) ** 2 + ((x - cx) / 8.0) ** 2 < 0.5
        core = (((z - cz) / 4.0) ** 2 + ((y - cy) / 8.0) ** 2 + ((x - cx) / 8.0) ** 2) < 0.4
        logits[1][core] = 6.0
        logits[2][(truth == value) & ~core] = 6.0
        beyond = disc & (np.abs(z - cz) >= 4) & (np.abs(z - cz) <= 5) & (truth == 0)
        logits[0][beyond], logits[2][beyond] = 0.0, 0.8
    return logits, truth


def test_a_3d_operating_point_trims_foreground_that_runs_on_in_z():
    from napari_unet.core.inference.prediction import PredictConfig
    from napari_unet.core.simulation.versions import Version, held_back

    logits, truth = _swollen_scene()
    # slice 10: balls 2 and 3 pass through it, ball 1 (z 3-9) only by its run-on foreground
    assert set(np.unique(truth[10])) == {0, 2, 3} and (logits[0][10][truth[10] == 0] == 0).any()
    item = TrainingItem(logits, truth.astype(np.int32), _slices(truth.shape, (10,)), "balls")
    base = PostprocessConfig(output="instances")
    predict_config = PredictConfig(tile_shape=truth.shape, device="cpu", precision="fp32")
    point = choose_operating_point(
        _Logits3D(), [item], base=base, predict_config=predict_config, tile=128
    )
    assert point is not None and point.n_true == 2 and point.n_tiles == 1
    assert point.ap50_before == pytest.approx(2 / 3)  # 2 TP, ball 1's run-on a false positive
    assert point.ap50 == pytest.approx(1.0) and point.config.threshold >= 0.8
    assert point.changed
    # the Fine-tune dock's and simulate's parent/child judge scores 3-D objects the same way
    config = TrainConfig(task="instances", val_tile=128)
    for settings, expected in ((base, 2 / 3), (point.config, 1.0)):
        score = held_back(Version(_Logits3D(), settings), [item], config, predict_config)
        assert score.metric == "AP@0.5" and score.value == pytest.approx(expected)


def test_training_a_3d_model_on_three_slices_stores_its_operating_point(tmp_path):
    image, truth = balls()
    low, high = np.percentile(image, (1, 99.8))
    normalised = ((image - low) / (high - low)).astype(np.float32)[None]
    item = TrainingItem(normalised, truth, _slices(truth.shape, (4, 8, 11)), "balls")
    torch.manual_seed(0)
    model = build_model("unet3d_aniso", depth=1, base_channels=4, out_channels=3)
    config = TrainConfig(task="instances", steps=4, batch_size=1, patch_shape=(8, 32, 32),
                         val_every=2, device="cpu", augment=AugmentConfig(strength=0.0),
                         checkpoint_dir=str(tmp_path / "run"))  # fmt: skip
    result = train(model, [item], config)
    report = load_checkpoint(result.best_path).info.provenance["operating_point"]
    assert result.operating_point == report
    assert report["n_tiles"] == 1 and report["n_true"] >= 1  # one held-back slice, 3-D objects
    assert report["ap50_best"] >= report["ap50"] >= report["ap50_before"]

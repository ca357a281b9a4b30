"""2.5-D: a 2-D net given each slice with its neighbours as channels (issue 20), end to end."""

from __future__ import annotations

import contextlib
import logging
import types

import numpy as np
import pytest
import tifffile
import torch
from test_train_3d import balls, error_line, write_volume
from torch import nn

from napari_unet.cli import main
from napari_unet.core.checkpoint.format import (
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from napari_unet.core.errors import UserInputError
from napari_unet.core.inference.context import neighbour_stack, with_context_radius
from napari_unet.core.inference.normalization import NormalizationConfig
from napari_unet.core.inference.prediction import PredictConfig, predict
from napari_unet.core.models import build_model
from napari_unet.core.models.context25d import stack_neighbour_slices
from napari_unet.core.training.context import context_items

RAW = NormalizationConfig(mode="none")


class PickNeighbour(nn.Module):
    """A plain 2-D 'net' that outputs input channel ``pick`` (of ``in_channels``) unchanged."""

    def __init__(self, radius: int, pick: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = 2 * radius + 1, 1
        self.context_slices, self.pick = radius, pick

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.pick : self.pick + 1]


def ramp_volume(depth: int = 5) -> np.ndarray:
    """(Z, 16, 16) float32: slice z holds 100 * z + x (every slice different, none constant)."""
    x = np.arange(16, dtype=np.float32)
    return 100 * np.arange(depth, dtype=np.float32)[:, None, None] + np.broadcast_to(x, (16, 16))


def restore(model, image, axes):
    config = PredictConfig(device="cpu", probability_dtype="float32", tile_shape=(16, 16))
    config = config.replace(z_flip=False)  # one order of the neighbours (see test_context25d_zflip)
    return predict(model, image, axes, task="restoration", normalization=RAW, config=config)


def test_predict_feeds_each_slice_its_mirrored_neighbours():
    volume = ramp_volume()
    below = restore(PickNeighbour(1, 0), volume, "ZYX")[0]  # channel 0 = slice z - 1
    above = restore(PickNeighbour(1, 2), volume, "ZYX")[0]  # channel 2 = slice z + 1
    np.testing.assert_array_equal(below, volume[[1, 0, 1, 2, 3]])  # mirrored at z = 0
    np.testing.assert_array_equal(above, volume[[1, 2, 3, 4, 3]])  # and at the last slice
    two = restore(PickNeighbour(2, 0), np.stack([volume, volume + 1]), "TZYX")[0]
    np.testing.assert_array_equal(two[1], volume[[2, 1, 0, 1, 2]] + 1)  # per T, along Z


def test_a_2d_image_is_its_own_neighbours_with_a_warning(caplog):
    """Decision: a single image (or the GUI's non-consecutive 'S' slices) is predicted with each
    slice repeated as its neighbours, and a warning says the Z-stack gives the trained context:
    the user gets the segmentation they asked for, not a refusal."""
    image = ramp_volume()[2]
    with caplog.at_level(logging.WARNING):
        out = restore(PickNeighbour(1, 0), image, "YX")
    np.testing.assert_array_equal(out[0], image)
    assert "has no Z-stack" in caplog.text and "predict the whole Z-stack" in caplog.text
    stack = ramp_volume()[[4, 0]]  # "S": two slices picked from a stack, not neighbours
    np.testing.assert_array_equal(restore(PickNeighbour(1, 0), stack, "SYX")[0], stack)


def test_neighbour_stack_reads_the_neighbours_of_chosen_slices_only():
    image = np.random.default_rng(0).random((2, 5, 3, 4, 4))
    full, axes = with_context_radius(image, "TZCYX", 1)
    assert full.shape == (2, 5, 9, 4, 4) and axes == "TZCYX"
    np.testing.assert_array_equal(full[1], stack_neighbour_slices(image[1].swapaxes(0, 1), 1))
    picked = neighbour_stack(image, "TZCYX", [0, 4, 7], 1)
    np.testing.assert_array_equal(picked, full.reshape(10, 9, 4, 4)[[0, 4, 7]])
    # a 2.5-D model takes the stacked slices as they are ("SCYX", in_channels channels)
    volume = ramp_volume()
    got = restore(PickNeighbour(1, 0), neighbour_stack(volume, "ZYX", [0, 3], 1), "SCYX")[0]
    np.testing.assert_array_equal(got, volume[[1, 2]])


def test_context_items_are_the_annotated_slices_with_neighbours_as_channels():
    volume = ramp_volume(6)[None]
    labels = np.zeros((6, 16, 16), np.uint8)
    mask = np.zeros((6, 16, 16), bool)
    mask[2, :4] = mask[5] = True
    items = context_items(volume, labels, mask, 1, normalization=RAW, name="v", flat_copies=False)
    assert [item.name for item in items] == ["v[2]", "v[5]"]
    np.testing.assert_array_equal(items[0].image, volume[0, [1, 2, 3]])
    np.testing.assert_array_equal(items[1].image, volume[0, [4, 5, 4]])  # mirrored at the end
    assert items[0].annotated_mask.sum() == 4 * 16 and items[0].labels.shape == (16, 16)


def test_checkpoint_round_trip_keeps_the_context_and_export_refuses(tmp_path):
    net = build_model("unet", depth=1, base_channels=2, in_channels=5, out_channels=1)
    path = save_checkpoint(tmp_path / "m.pt", net, task="binary", provenance={"context_slices": 2})
    assert read_checkpoint_info(path).context_slices == 2
    loaded = load_checkpoint(path)
    assert loaded.info.context_slices == 2 and loaded.model.context_slices == 2
    plain = load_checkpoint(save_checkpoint(tmp_path / "p.pt", net, task="binary"))
    assert plain.info.context_slices == 0 and plain.model.context_slices == 0
    from napari_unet.core.checkpoint.bioimageio_export import export_bioimageio

    with pytest.raises(UserInputError, match=r"2\.5-D model .* bioimage\.io package cannot"):
        export_bioimageio(loaded, tmp_path / "m.zip")
    assert not list(tmp_path.glob("m.zip*"))


def context_args(tmp_path, *extra, model="unet", out="model.pt"):
    return [
        "train",
        "--images", str(tmp_path / "images"),
        "--labels", str(tmp_path / "labels"),
        "--masks", str(tmp_path / "masks"),
        "--model", model,
        "--task", "binary",
        "--steps", "2",
        "--patch", "16",
        "--batch-size", "2",
        "--val-fraction", "0",
        "--device", "cpu",
        "--out", str(tmp_path / out),
        *extra,
    ]  # fmt: skip


def two_slices_annotated(shape=(8, 32, 32)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[[2, 5]] = 1
    return mask


def test_train_context_slices_trains_predicts_and_fine_tunes(tmp_path, capsys):
    image, labels = balls()
    write_volume(tmp_path, image, labels, two_slices_annotated())
    assert main(context_args(tmp_path, "--context-slices", "1")) == 0
    loaded = load_checkpoint(tmp_path / "model.pt")
    assert loaded.info.arch == "unet" and loaded.info.in_channels == 3
    assert loaded.info.context_slices == 1 and loaded.model.context_slices == 1
    assert loaded.info.provenance["data"]["annotated_pixels"] == 2 * 32 * 32
    out = tmp_path / "pred"
    predict_args = ["predict", str(tmp_path / "images" / "vol.tif"), "--model"]
    assert main([*predict_args, str(tmp_path / "model.pt"), "--out", str(out)]) == 0
    assert tifffile.imread(out / "vol_labels.tif").shape == image.shape
    tuned = context_args(tmp_path, model=str(tmp_path / "model.pt"), out="tuned.pt")
    assert main(tuned) == 0  # the checkpoint's R is kept without --context-slices
    assert load_checkpoint(tmp_path / "tuned.pt").info.context_slices == 1
    capsys.readouterr()
    assert main([*tuned, "--context-slices", "2"]) == 2
    assert "takes 1 neighbour slice(s) on each side, not 2" in error_line(capsys)


@pytest.mark.parametrize(
    ("extra", "model", "match"),
    [
        (("--context-slices", "1"), "unet3d", "is a 3-D model that sees them already"),
        (("--context-slices", "9"), "unet", "expected a number of slices from 0 to 8"),
        (("--context-slices", "1"), "flat", "has no Z axis of 2 or more"),
    ],
)
def test_bad_context_slices_fail_in_one_line(tmp_path, capsys, extra, model, match):
    image, labels = balls()
    mask = two_slices_annotated()
    if model == "flat":  # a 2-D image: no neighbours to train with
        image, labels, mask, model = image[2], labels[2], mask[2], "unet"
    write_volume(tmp_path, image, labels, mask)
    with pytest.raises(SystemExit) if "9" in extra else contextlib.nullcontext():
        assert main(context_args(tmp_path, *extra, model=model)) != 0
    assert match in capsys.readouterr().err
    assert not (tmp_path / "model.pt").exists()


def test_the_gui_job_image_gives_each_slice_its_neighbours():
    from napari_unet._widgets.predict_job import Plan, job_image
    from napari_unet.core.io.axes import to_stack

    volume = ramp_volume()
    layout = to_stack(volume, "ZYX")[1]
    plan = Plan(layout=layout, todo=[0, 3], skipped=[], region=None)
    layer = types.SimpleNamespace(data=volume)
    assert job_image(layer, "ZYX", plan).shape == (2, 1, 16, 16)
    stacked = job_image(layer, "ZYX", plan, context_slices=1)
    np.testing.assert_array_equal(stacked[:, 0], volume[[1, 2]])
    np.testing.assert_array_equal(stacked[:, 2], volume[[1, 4]])

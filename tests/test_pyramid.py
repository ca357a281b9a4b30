"""Pyramid inputs (issue 19): napari `MultiScaleData` or an array list is predicted on level 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet.core.checkpoint.format import save_checkpoint
from napari_unet.core.errors import ImageReadError
from napari_unet.core.io.axes import to_stack
from napari_unet.core.io.lazy import full_resolution, stack_slices
from napari_unet.core.models import build_model

napari = pytest.importorskip("napari")
zarr = pytest.importorskip("zarr")


def _pyramid(rng: np.random.Generator) -> list[np.ndarray]:
    level0 = rng.integers(0, 60, (3, 48, 64), dtype=np.uint8)
    level0[:, 10:25, 12:30] = 220
    return [level0, level0[:, ::2, ::2].copy(), level0[:, ::4, ::4].copy()]


def test_stack_slices_reads_level_0_of_a_napari_pyramid(rng) -> None:
    levels = _pyramid(rng)
    data = napari.layers.Image(levels, multiscale=True).data  # napari's MultiScaleData
    assert type(data).__name__ == "MultiScaleData"
    expected = to_stack(levels[0], "ZYX")[0][[0, 2]]
    np.testing.assert_array_equal(stack_slices(data, "ZYX", [0, 2]), expected)
    np.testing.assert_array_equal(stack_slices(levels, "ZYX", [0, 2]), expected)  # plain list


def test_stack_slices_reads_a_zarr_pyramid_lazily(tmp_path, rng) -> None:
    levels = _pyramid(rng)
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="w")
    arrays = []
    for i, level in enumerate(levels):
        arrays.append(group.create_array(str(i), shape=level.shape, dtype=level.dtype))
        arrays[-1][...] = level
    data = napari.layers.Image(arrays, multiscale=True).data
    picked = stack_slices(data, "ZYX", [1])
    assert picked.shape == (1, 1, 48, 64)
    np.testing.assert_array_equal(picked[0, 0], levels[0][1])


def test_an_empty_pyramid_is_a_clear_error() -> None:
    with pytest.raises(ImageReadError, match="empty pyramid"):
        full_resolution([])
    array = np.zeros((4, 4))
    assert full_resolution(array) is array


def _checkpoint(folder: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, out_channels=2)
    return save_checkpoint(folder / "m.pt", model, task="semantic", tile_shape=(32, 32), overlap=8)


def _drain(generator):
    while True:
        try:
            next(generator)
        except StopIteration as stop:
            return stop.value


def test_the_dock_predicts_level_0_and_the_labels_keep_its_scale_and_translate(
    tmp_path, rng
) -> None:
    from napari.components import ViewerModel

    from napari_unet._widgets.output import OutputTarget, OutputWriter
    from napari_unet._widgets.predict_job import job_image, plan_run, resolve_axes
    from napari_unet._widgets.predict_worker import PostprocessChoice, PredictJob, run_prediction
    from napari_unet.core.checkpoint.format import load_checkpoint
    from napari_unet.core.inference.prediction import PredictConfig, predict
    from napari_unet.core.postprocess import labels_from_probabilities

    levels = _pyramid(rng)
    viewer = ViewerModel()
    image = viewer.add_image(
        levels, multiscale=True, name="vol", scale=(2.0, 0.5, 0.5), translate=(1.0, 3.0, 4.0)
    )
    axes = resolve_axes(image, True, "ZYX")  # the axes the user picks in the list
    writer = OutputWriter(viewer)
    plan = plan_run(viewer, image, axes, scope="stack", overwrite=False, writer=writer)
    assert plan.layout.spatial_shape == (3, 48, 64)
    checkpoint = _checkpoint(tmp_path)
    job = PredictJob(
        checkpoint=str(checkpoint),
        image=job_image(image, axes, plan),
        axes="SCYX",
        slices=tuple(plan.todo),
        predict=PredictConfig(device="cpu"),
        postprocess=PostprocessChoice(output="semantic"),
    )
    result = _drain(run_prediction(job))
    writer.write(OutputTarget(image="vol", layout=plan.layout, model=str(checkpoint)), result)

    labels = viewer.layers["vol labels"]
    assert labels.data.shape == (3, 48, 64)
    np.testing.assert_allclose(labels.scale, (2.0, 0.5, 0.5))
    np.testing.assert_allclose(labels.translate, (1.0, 3.0, 4.0))
    loaded = load_checkpoint(checkpoint)
    info = loaded.info
    for z in range(3):  # the same labels as predicting level 0 directly
        probabilities = predict(
            loaded.model,
            levels[0][z],
            "YX",
            task=info.task,
            normalization=info.normalization,
            config=PredictConfig(device="cpu"),
        )
        expected = labels_from_probabilities(
            probabilities, task=info.task, config=info.postprocess_config(output="semantic")
        )
        np.testing.assert_array_equal(labels.data[z], expected)


def test_the_visible_region_of_a_pyramid_is_in_level_0_pixels(rng) -> None:
    from napari.components import ViewerModel

    from napari_unet._widgets import layers as L

    viewer = ViewerModel()
    image = viewer.add_image(_pyramid(rng), multiscale=True, name="vol")
    # what a canvas draw sets when level 1 is on screen: its pixels 5..14 (Y) and 8..19 (X)
    image._data_level = 1  # set by the vispy canvas, which this test has not
    image.corner_pixels = np.array([[0, 5, 8], [0, 14, 19]])
    assert L.visible_region(viewer, image, "ZYX") == (slice(10, 30), slice(16, 40))

"""Predicted label files are marked, and open as predictions (not as the user's edits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet._reader import read_layers
from napari_unet.cli import main
from napari_unet.core.checkpoint.format import save_checkpoint
from napari_unet.core.io.images import read_image, write_labels, write_tiff
from napari_unet.core.io.marks import (
    PredictionMark,
    parse_software,
    read_mark,
    software_tag,
)
from napari_unet.core.models import build_model

MARK = PredictionMark(model="em-membranes", task="semantic", output="instances")


def test_software_tag_round_trip_and_foreign_text() -> None:
    assert parse_software(software_tag(MARK)) == MARK
    assert parse_software("tifffile.py") is None
    assert parse_software(None) is None
    assert parse_software("napari-unet-loop predict {not json") is None
    assert parse_software('napari-unet-loop predict {"model": "m"}') is None  # incomplete
    bad_output = software_tag(MARK).replace('"instances"', '"restored"')
    assert parse_software(bad_output) is None


def test_marked_labels_keep_their_pixels_and_axes(tmp_path: Path) -> None:
    labels = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    path = write_labels(tmp_path / "a_labels.tif", labels, axes="ZYX", software=software_tag(MARK))
    assert read_mark(path) == MARK
    data = read_image(path)
    assert data.axes == "ZYX"
    np.testing.assert_array_equal(data.image, labels)
    assert read_mark(write_labels(tmp_path / "b_labels.tif", labels)) is None  # hand-made
    (tmp_path / "c.tif").write_bytes(b"II*\x00" + bytes(10))
    assert read_mark(tmp_path / "c.tif") is None  # damaged: no mark, no exception
    assert read_mark(tmp_path / "missing.tif") is None


def test_predict_marks_its_labels_and_they_open_as_predictions(tmp_path: Path, rng) -> None:
    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, out_channels=3)
    checkpoint = save_checkpoint(tmp_path / "nuclei.pt", model, task="instances")
    image = rng.integers(0, 200, (2, 48, 64), dtype=np.uint8)
    image[:, 10:30, 10:40] = 250
    write_tiff(tmp_path / "cells.tif", image, axes="ZYX")
    argv = ["predict", str(tmp_path / "cells.tif"), "--model", str(checkpoint)]
    assert main([*argv, "--out", str(tmp_path), "--device", "cpu"]) == 0
    path = tmp_path / "cells_labels.tif"
    assert read_mark(path) == PredictionMark(model="nuclei", task="instances", output="instances")

    [(_, image_kwargs, _), (labels, kwargs, kind)] = read_layers(str(tmp_path / "cells.tif"))
    assert kind == "labels" and image_kwargs["name"] == "cells"
    tag = kwargs["metadata"]["napari_unet"]
    assert (tag["role"], tag["image_layer"], tag["task"], tag["output"], tag["model"]) == (
        "labels",
        "cells",
        "instances",
        "instances",
        "nuclei",
    )
    np.testing.assert_array_equal(tag["snapshot"], labels)
    assert tag["snapshot"] is not labels  # edits to the layer must not move the snapshot
    assert tag["predicted"] == [0, 1] and not tag["reviewed"].any()

    # a second run over the folder predicts the image, not the labels the first run wrote there
    assert main(["predict", str(tmp_path), "--model", str(checkpoint), "--out", str(tmp_path)]) == 0
    assert not (tmp_path / "cells_labels_labels.tif").exists()

    write_labels(tmp_path / "own_labels.tif", labels)  # the same pixels, saved by hand
    [(_, own, _)] = read_layers(str(tmp_path / "own_labels.tif"))
    assert "role" not in own["metadata"]["napari_unet"]  # the user's annotation, as before


def test_predicted_zarr_labels_are_marked(tmp_path: Path, rng) -> None:
    zarr = pytest.importorskip("zarr")
    from napari_unet.core.io.zarr_io import ngff_attributes

    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, out_channels=2)
    checkpoint = save_checkpoint(tmp_path / "membranes.pt", model, task="semantic")
    volume = rng.integers(0, 255, (2, 32, 32), dtype=np.uint8)
    group = zarr.open_group(store=str(tmp_path / "em.ome.zarr"), mode="w", zarr_format=2)
    group.attrs.update(ngff_attributes("ZYX", "em.ome.zarr"))
    group.create_array("0", shape=volume.shape, chunks=(1, 32, 32), dtype=volume.dtype)[...] = (
        volume
    )
    argv = ["predict", str(tmp_path / "em.ome.zarr"), "--model", str(checkpoint)]
    assert main([*argv, "--out", str(tmp_path), "--device", "cpu"]) == 0
    mark = read_mark(tmp_path / "em_labels.zarr")
    assert mark == PredictionMark(model="membranes", task="semantic", output="semantic")
    [_, (labels, kwargs, _)] = read_layers(str(tmp_path / "em.ome.zarr"))
    tag = kwargs["metadata"]["napari_unet"]
    assert tag["role"] == "labels" and tag["output"] == "semantic" and tag["predicted"] == [0, 1]
    np.testing.assert_array_equal(tag["snapshot"], labels)


def test_issue15_point1_only_files_predict_wrote_may_be_overwritten(tmp_path: Path) -> None:
    from napari_unet.core.errors import UserInputError
    from napari_unet.core.io.marks import check_overwritable, output_tag, written_by_predict

    labels = np.ones((8, 8), np.uint8)
    mark = PredictionMark(model="m", task="binary", output="semantic")
    write_labels(tmp_path / "a_labels.tif", labels, software=software_tag(mark))
    write_tiff(tmp_path / "a_probabilities.tif", labels, software=output_tag("probabilities", "m"))
    write_labels(tmp_path / "b_labels.tif", labels)  # by hand
    write_tiff(tmp_path / "b_probabilities.tif", labels, software="napari-unet-loop outputs")
    (tmp_path / "c_labels.tif").write_bytes(b"not a tiff")
    for name in ("a_labels.tif", "a_probabilities.tif", "missing_labels.tif"):
        check_overwritable(tmp_path / name)
    assert written_by_predict(tmp_path / "a_probabilities.tif")
    assert read_mark(tmp_path / "a_probabilities.tif") is None  # not opened as labels
    for name in ("b_labels.tif", "b_probabilities.tif", "c_labels.tif"):
        assert not written_by_predict(tmp_path / name)
        with pytest.raises(UserInputError, match=f"{name} exists and is not a prediction"):
            check_overwritable(tmp_path / name)

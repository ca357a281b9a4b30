"""The npe2 reader and writer round-trip, and refuse what they do not handle."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_unet._reader import get_reader
from napari_unet._writer import labels_dtype, write_labels
from napari_unet.core.errors import ImageReadError
from napari_unet.core.io.images import write_tiff


def test_reader_returns_none_for_files_it_does_not_handle(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path)) is None
    assert get_reader([str(tmp_path / "a.tif"), str(tmp_path / "notes.txt")]) is None


def test_reader_opens_image_with_axes_and_labels_sibling(tmp_path) -> None:
    image = np.arange(3 * 20 * 30, dtype=np.uint16).reshape(3, 20, 30)
    labels = np.zeros((3, 20, 30), np.uint16)
    labels[:, 5:10, 5:10] = 7
    write_tiff(tmp_path / "cells.tif", image, axes="ZYX")
    write_tiff(tmp_path / "cells_labels.tif", labels, axes="ZYX")
    layers = get_reader(str(tmp_path / "cells.tif"))(str(tmp_path / "cells.tif"))
    assert [kind for *_, kind in layers] == ["image", "labels"]
    data, kwargs, _ = layers[0]
    np.testing.assert_array_equal(data, image)
    assert kwargs["metadata"]["napari_unet"]["axes"] == "ZYX"
    np.testing.assert_array_equal(layers[1][0], labels)
    assert layers[1][0].dtype == np.uint16 and layers[1][1]["name"] == "cells_labels"


def test_reader_keeps_channels_in_one_layer_and_flags_rgb(tmp_path) -> None:
    cyx = np.random.default_rng(0).integers(0, 4000, (2, 16, 16), dtype=np.uint16)
    write_tiff(tmp_path / "two.tif", cyx, axes="CYX")
    (layer,) = get_reader(str(tmp_path / "two.tif"))(str(tmp_path / "two.tif"))
    data, kwargs, kind = layer
    # one layer with its channel axis (issue 18): a 2-channel model gets both channels
    assert kind == "image" and "channel_axis" not in kwargs and kwargs["name"] == "two"
    assert kwargs["metadata"]["napari_unet"]["axes"] == "CYX"
    np.testing.assert_array_equal(data, cyx)
    rgb = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    data, kwargs, _ = get_reader(str(tmp_path / "rgb.tif"))(str(tmp_path / "rgb.tif"))[0]
    assert kwargs.get("rgb") is True and data.shape == (16, 16, 3)


def test_reader_reports_a_corrupt_file_clearly(tmp_path) -> None:
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00garbage")
    reader = get_reader(str(broken))
    with pytest.raises(ImageReadError, match=r"broken\.tif"):
        reader(str(broken))


@pytest.mark.parametrize("max_id, dtype", [(3, np.uint8), (300, np.uint16), (70000, np.uint32)])
def test_writer_round_trips_with_the_right_integer_dtype(tmp_path, max_id, dtype) -> None:
    labels = np.zeros((2, 12, 14), np.int64)
    labels[1, 3:6, 4:9] = max_id
    labels[0, 0, 0] = 1
    meta = {"metadata": {"napari_unet": {"axes": "ZYX"}}}
    (written,) = write_labels(str(tmp_path / "out"), labels, meta)
    assert written.endswith("out.tif")
    layers = get_reader(written)(written)
    back = layers[0][0]
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, labels)
    read = tifffile.imread(written)
    assert read.dtype == dtype
    np.testing.assert_array_equal(read, labels)
    with tifffile.TiffFile(written) as tif:
        assert tif.pages[0].compression != 1  # compressed


def test_writer_refuses_fractional_labels(tmp_path) -> None:
    from napari_unet.core.errors import UserInputError

    with pytest.raises(UserInputError, match="non-integer"):
        write_labels(str(tmp_path / "x.tif"), np.full((4, 4), 0.5), {})
    assert labels_dtype(np.array([-1, 2])) == np.int32


def test_an_untouched_prediction_is_saved_as_a_prediction(tmp_path) -> None:
    from napari_unet.core.io.marks import PredictionMark, read_mark

    labels = np.zeros((2, 16, 16), np.uint16)
    labels[:, 4:8, 4:8] = 1
    tag = {
        "role": "labels",
        "image_layer": "cells",
        "task": "instances",
        "output": "instances",
        "model": "fluo-nuclei",
        "snapshot": labels.copy(),
        "predicted": [0, 1],
        "reviewed": np.zeros(labels.shape, bool),
        "axes": "ZYX",
    }
    [path] = write_labels(
        str(tmp_path / "cells_labels"), labels, {"metadata": {"napari_unet": tag}}
    )
    assert read_mark(path) == PredictionMark("fluo-nuclei", "instances", "instances")
    [(_, kwargs, _)] = get_reader(path)(path)
    assert kwargs["metadata"]["napari_unet"]["predicted"] == [0, 1]  # reopens as a prediction

    edited = labels.copy()
    edited[1, 10, 10] = 2
    [path] = write_labels(str(tmp_path / "edited"), edited, {"metadata": {"napari_unet": tag}})
    assert read_mark(path) is None  # the user's labels now
    tag["reviewed"][0, 0, 0] = True
    [path] = write_labels(str(tmp_path / "reviewed"), labels, {"metadata": {"napari_unet": tag}})
    assert read_mark(path) is None


def test_an_ome_tiff_and_its_predicted_labels_open_as_a_pair(tmp_path) -> None:
    image = np.zeros((2, 16, 16), np.uint16)
    write_tiff(tmp_path / "cells.ome.tif", image, axes="ZYX")
    labels = np.ones((2, 16, 16), np.uint8)
    write_tiff(tmp_path / "cells_labels.tif", labels, axes="ZYX")  # as predict names it
    path = str(tmp_path / "cells.ome.tif")
    [(_, image_kwargs, _), (_, labels_kwargs, kind)] = get_reader(path)(path)
    assert kind == "labels"
    assert (image_kwargs["name"], labels_kwargs["name"]) == ("cells", "cells_labels")

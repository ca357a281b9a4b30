"""Predictions merged into a labels layer around the user's work, through napari's undo history.

Runs on plain napari layers (no window, no Qt): ``_widgets/label_writes.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_unet._widgets import layers as L
from napari_unet._widgets.label_history import is_plugin_write
from napari_unet._widgets.label_writes import write_prediction
from napari_unet.core.io.axes import StackLayout


def squares(shape, boxes, dtype=np.uint16):
    labels = np.zeros(shape, dtype=dtype)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        labels[..., y0:y1, x0:x1] = i + 1
    return labels


def predicted_layer(data, *, output="instances"):
    from napari.layers import Labels

    meta = L.labels_metadata(
        "img", data.shape, task=output, output=output, model="m", dtype=data.dtype
    )
    layout = StackLayout(axes="YX" if data.ndim == 2 else "ZYX", shape=data.shape)
    slices = list(range(layout.n_slices))
    data = L.write_into(
        np.zeros_like(data), meta, layout, data.reshape(-1, *data.shape[-2:]), slices, None
    )
    return Labels(data, metadata={L.TAG: meta}), layout


def test_one_edit_no_longer_freezes_a_2d_image_and_undo_takes_the_refresh_back():
    first = squares((64, 64), [(2, 12, 2, 12), (30, 40, 30, 40), (50, 60, 2, 12)])
    layer, layout = predicted_layer(first)
    tag = L.plugin_tag(layer)
    # the user paints one pixel of object 1 and reviews a corner
    layer.data_setitem((np.array([5]), np.array([5])), 9)
    tag["reviewed"][48:64, 0:16] = True
    before = np.array(layer.data)
    new = squares((64, 64), [(0, 14, 0, 14), (20, 28, 40, 50)])
    paints = []
    layer.events.paint.connect(lambda e: paints.append(is_plugin_write(e.source, e.value)))
    kept = write_prediction(layer, layout, new[None], [0], None)
    data = np.asarray(layer.data)
    assert kept > 0 and paints == [True]  # one history item, recognised as the plugin's
    # the edited object (ids 1 and 9 around the painted pixel) and the reviewed corner: identical
    touched = np.isin(before, [1, 9])
    np.testing.assert_array_equal(data[touched], before[touched])
    np.testing.assert_array_equal(data[48:, :16], before[48:, :16])
    assert data[35, 35] == 0 and data[24, 45] != 0  # the rest of the image was refreshed
    assert data[24, 45] not in (1, 9, 3)  # a new id, none of the kept ones
    np.testing.assert_array_equal(tag["snapshot"][24, 45], data[24, 45])
    assert (data != tag["snapshot"]).sum() == 1  # only the user's pixel differs: still an edit
    # Ctrl+Z: the refresh goes, the snapshot follows; Ctrl+Shift+Z: it comes back
    layer.undo()
    np.testing.assert_array_equal(layer.data, before)
    assert (np.asarray(layer.data) != tag["snapshot"]).sum() == 1
    layer.redo()
    np.testing.assert_array_equal(layer.data, data)
    assert (np.asarray(layer.data) != tag["snapshot"]).sum() == 1
    layer.undo()
    layer.undo()  # and then the brush stroke: back to the first prediction, nothing edited
    np.testing.assert_array_equal(layer.data, first)
    np.testing.assert_array_equal(tag["snapshot"], first)


def test_overwrite_replaces_the_users_work_and_undo_gives_it_back_as_an_edit():
    first = squares((32, 32), [(2, 12, 2, 12)])
    layer, layout = predicted_layer(first)
    tag = L.plugin_tag(layer)
    layer.data_setitem((np.array([20]), np.array([20])), 5)
    new = squares((32, 32), [(18, 24, 18, 24)])
    write_prediction(layer, layout, new[None], [0], None, overwrite=True)
    np.testing.assert_array_equal(layer.data, new)
    np.testing.assert_array_equal(tag["snapshot"], new)
    layer.undo()
    assert layer.data[20, 20] == 5 and tag["snapshot"][20, 20] == 0  # an edit again


def test_a_stack_keeps_edits_per_pixel_and_refreshes_the_rest_of_each_slice():
    first = squares((3, 32, 32), [(2, 12, 2, 12), (20, 30, 20, 30)])
    layer, layout = predicted_layer(first)
    tag = L.plugin_tag(layer)
    layer.data_setitem((np.array([1]), np.array([4]), np.array([4])), 0)  # slice 1, object 1
    tag["reviewed"][2] = True  # slice 2 reviewed in full
    new = np.stack([squares((32, 32), [(0, 16, 0, 16)])] * 3)
    write_prediction(layer, layout, new, [0, 1, 2], None)
    data = np.asarray(layer.data)
    assert (data[0, 0:16, 0:16] > 0).all()  # untouched slice: the new prediction
    assert data[1, 4, 4] == 0 and (data[1, 2:4, 2:12] == 1).all()  # the edited object kept
    np.testing.assert_array_equal(data[2], first[2])  # reviewed: identical


def test_semantic_labels_keep_edited_and_reviewed_pixels():
    first = np.ones((16, 16), np.uint8)
    layer, layout = predicted_layer(first, output="semantic")
    tag = L.plugin_tag(layer)
    layer.data_setitem((np.array([0]), np.array([0])), 2)
    tag["reviewed"][8:, 8:] = True
    write_prediction(layer, layout, np.full((1, 16, 16), 3, np.uint8), [0], None)
    data = np.asarray(layer.data)
    assert data[0, 0] == 2 and (data[8:, 8:] == 1).all() and data[4, 4] == 3


def test_the_visible_region_is_merged_without_cutting_objects():
    first = squares((40, 40), [(0, 8, 0, 30), (30, 38, 2, 10)])
    layer, layout = predicted_layer(first)
    region = (slice(0, 40), slice(0, 16))
    new = np.zeros((1, 40, 16), np.uint16)
    new[0, 10:14, 2:6] = 1
    write_prediction(layer, layout, new, [0], region)
    data = np.asarray(layer.data)
    assert (data[0:8, 0:30] == 1).all()  # crosses the region's border: left whole
    assert (data[30:38, 2:10] == 0).all()  # inside, untouched by the user: refreshed
    assert data[12, 4] not in (0, 1)

"""The "U-Net Segment" dock widget in a real napari window (run under Xvfb: ``xvfb-run -a``).

A tiny random-weight checkpoint (depth 2, 4 base channels) keeps every prediction well under a
second; what is checked is the widget's behaviour: layers, reuse, cancel, scopes, protection of
corrections and messages for bad inputs.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_unet._widgets import layers as L
from napari_unet.core.synthetic import synthetic_nuclei

pytestmark = pytest.mark.gui
TIMEOUT = 20_000


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, in_channels=1, out_channels=3)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return save_checkpoint(path, model, task="instances", tile_shape=(64, 64), overlap=8)


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def errors(monkeypatch):
    """Every napari error notification the widget sends (and none reaches a dialog)."""
    shown: list[str] = []
    monkeypatch.setattr(
        "napari.utils.notifications.show_error", lambda message: shown.append(str(message))
    )
    return shown


def make_widget(viewer, checkpoint, qtbot):
    from napari_unet._widgets import SegmentWidget

    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="U-Net Segment")
    panel = widget.segment
    panel.form.model.add_checkpoint(checkpoint)
    # the model's defaults arrive from a worker: wait for them (tile 64 from the checkpoint)
    qtbot.waitUntil(lambda: panel.form.tile.value() == 64, timeout=TIMEOUT)
    return widget, panel


def run_and_wait(panel, qtbot):
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=TIMEOUT)


def labels_layers(viewer):
    return [layer for layer in viewer.layers if (L.plugin_tag(layer) or {}).get("role") == "labels"]


def test_predict_edit_rerun_reuses_layer(viewer, checkpoint, qtbot, errors):
    image, _ = synthetic_nuclei((128, 128))
    viewer.add_image(image, name="nuclei")
    _, panel = make_widget(viewer, checkpoint, qtbot)
    panel.form.probabilities.setChecked(True)
    assert panel.form.output.currentData() == "instances"  # from the model's task
    run_and_wait(panel, qtbot)
    assert not errors, errors
    (layer,) = labels_layers(viewer)
    assert layer.data.shape == (128, 128)
    assert np.issubdtype(layer.data.dtype, np.integer)
    tag = L.plugin_tag(layer)
    assert tag["image_layer"] == "nuclei" and tag["predicted"] == [0]
    np.testing.assert_array_equal(tag["snapshot"], layer.data)
    assert "Predicted" in panel.status.text()
    n_layers = len(viewer.layers)
    assert any((L.plugin_tag(x) or {}).get("role") == "probabilities" for x in viewer.layers)

    layer.data[5, 5] = 77  # editable: paint a pixel
    layer.refresh()
    assert layer.data[5, 5] == 77
    # the edited slice is protected by default ...
    run_and_wait(panel, qtbot)
    assert layer.data[5, 5] == 77
    assert "Kept your corrections" in panel.status.text()
    # ... and replaced when asked, in the same layer
    panel.form.overwrite.setChecked(True)
    run_and_wait(panel, qtbot)
    assert len(viewer.layers) == n_layers
    assert labels_layers(viewer) == [layer]
    assert layer.data[5, 5] != 77
    np.testing.assert_array_equal(L.plugin_tag(layer)["snapshot"], layer.data)
    layer.undo()  # Ctrl+Z takes "Overwrite corrected slices" back, the edit with it
    assert layer.data[5, 5] == 77 and L.plugin_tag(layer)["snapshot"][5, 5] != 77


def test_test_time_augmentation_choice_reaches_the_prediction(viewer, checkpoint, qtbot, errors):
    image, _ = synthetic_nuclei((96, 96))
    viewer.add_image(image, name="nuclei")
    _, panel = make_widget(viewer, checkpoint, qtbot)
    panel.form.probabilities.setChecked(True)
    panel.form.overwrite.setChecked(True)
    assert panel.form.predict_settings().tta == "none"  # off unless asked: it costs 4-8x

    def probabilities():
        role = "probabilities"
        (layer,) = [x for x in viewer.layers if (L.plugin_tag(x) or {}).get("role") == role]
        return np.array(layer.data, dtype=np.float32)

    run_and_wait(panel, qtbot)
    plain = probabilities()
    panel.form.tta.setCurrentIndex(panel.form.tta.findData("dihedral"))
    assert panel.form.predict_settings().tta == "dihedral"
    run_and_wait(panel, qtbot)
    assert not errors, errors
    averaged = probabilities()
    assert averaged.shape == plain.shape and np.abs(averaged - plain).max() > 1e-3


def test_reviewed_slice_is_not_overwritten(viewer, checkpoint, qtbot, errors):
    stack = np.stack([synthetic_nuclei((64, 64), seed=s)[0] for s in range(3)])
    viewer.add_image(stack, name="stack")
    _, panel = make_widget(viewer, checkpoint, qtbot)
    panel.form.scope.setCurrentIndex(panel.form.scope.findData("stack"))
    # (3, 64, 64): channels or slices? The widget asks instead of guessing.
    assert "choose them in the Axes list" in panel.message.text()
    run_and_wait(panel, qtbot)
    assert not labels_layers(viewer) and "not known" in panel.message.text()
    errors.clear()
    panel.form.axes.setCurrentIndex(panel.form.axes.findData("ZYX"))
    run_and_wait(panel, qtbot)
    (layer,) = labels_layers(viewer)
    assert layer.data.shape == (3, 64, 64)
    tag = L.plugin_tag(layer)
    assert tag["predicted"] == [0, 1, 2]
    assert all(layer.data[s].any() for s in range(3))
    layer.data[...] = 0  # wipe everything, mark slice 1 reviewed: 0 and 2 count as edited too
    tag["snapshot"][0] = 0
    tag["snapshot"][2] = 0
    tag["reviewed"][1, :4, :4] = True
    run_and_wait(panel, qtbot)
    assert not layer.data[1].any()  # erased and partly reviewed: kept as the user left it
    assert layer.data[0].any() and layer.data[2].any()
    assert "Kept your corrections" in panel.status.text()
    tag["reviewed"][1] = True  # reviewed in full: the slice is not even predicted
    run_and_wait(panel, qtbot)
    assert not layer.data[1].any() and "slice(s) 1 are reviewed" in panel.status.text()
    assert not errors, errors


def test_current_slice_of_stack(viewer, checkpoint, qtbot):
    stack = np.stack([synthetic_nuclei((64, 64), seed=s)[0] for s in range(5)])
    viewer.add_image(stack, name="zstack")
    _, panel = make_widget(viewer, checkpoint, qtbot)
    viewer.dims.set_current_step(0, 2)
    run_and_wait(panel, qtbot)
    (layer,) = labels_layers(viewer)
    assert L.plugin_tag(layer)["predicted"] == [2]
    assert layer.data[2].any() and not layer.data[[0, 1, 3, 4]].any()


def test_visible_region(make_napari_viewer, checkpoint, qtbot):
    viewer = make_napari_viewer(show=True)  # corner pixels are set when the canvas draws
    image, _ = synthetic_nuclei((256, 256))
    viewer.add_image(image, name="big")
    _, panel = make_widget(viewer, checkpoint, qtbot)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center = (64, 64)
    camera.zoom = camera.zoom * 4
    layer_image = viewer.layers["big"]
    qtbot.waitUntil(lambda: layer_image.corner_pixels[1, 0] < 200, timeout=TIMEOUT)
    region = L.visible_region(viewer, layer_image, "YX")
    assert region is not None
    panel.form.scope.setCurrentIndex(panel.form.scope.findData("region"))
    run_and_wait(panel, qtbot)
    (layer,) = labels_layers(viewer)
    outside = layer.data.copy()
    outside[region] = 0
    assert not outside.any() and layer.data[region].any()
    assert "visible region" in panel.status.text()


def test_cancel_keeps_layers(viewer, checkpoint, qtbot, monkeypatch):
    import napari_unet._widgets.predict_worker as worker_module

    real = worker_module.run_prediction

    def slow(job):
        generator = real(job)
        for step in generator:
            time.sleep(0.2)
            yield step

    monkeypatch.setattr(worker_module, "run_prediction", slow)  # what predict_and_merge runs
    image, _ = synthetic_nuclei((256, 256))
    viewer.add_image(image, name="slow")
    _, panel = make_widget(viewer, checkpoint, qtbot)
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.progress.value() >= 1, timeout=TIMEOUT)
    n_layers = len(viewer.layers)
    panel.cancel_button.click()
    started = time.perf_counter()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=TIMEOUT)
    assert time.perf_counter() - started < 2.0
    assert len(viewer.layers) == n_layers
    assert not labels_layers(viewer)
    assert "Cancelled" in panel.status.text()
    assert panel.run_button.isEnabled()


@pytest.mark.parametrize(
    ("data", "rgb", "expected"),
    [
        (np.zeros((32, 32, 3), np.uint8), True, "channel"),
        (np.zeros((2, 2, 3, 16, 16), np.uint8), False, "axes"),
    ],
    ids=["rgb-into-1-channel", "5d"],
)
def test_bad_images_give_messages(viewer, checkpoint, qtbot, errors, data, rgb, expected):
    viewer.add_image(data, name="bad", rgb=rgb)
    _, panel = make_widget(viewer, checkpoint, qtbot)
    run_and_wait(panel, qtbot)
    assert panel.message.isVisibleTo(panel)
    assert expected in panel.message.text().lower()
    assert errors and expected in errors[-1].lower()
    assert not labels_layers(viewer)


def test_empty_layer_message(viewer, checkpoint, qtbot, errors, monkeypatch):
    from unittest import mock

    from napari.layers import Image

    _, panel = make_widget(viewer, checkpoint, qtbot)
    empty = mock.Mock(spec=Image)  # napari cannot even draw an empty image: fake the layer
    empty.name, empty.data, empty.metadata, empty.rgb = "empty", np.zeros((0, 16)), {}, False
    monkeypatch.setattr(panel, "image_layer", lambda: empty)
    run_and_wait(panel, qtbot)
    assert "'empty' is empty" in panel.message.text()
    assert errors


def test_labels_layer_as_image_and_no_model(viewer, checkpoint, qtbot, errors):
    viewer.add_labels(np.zeros((32, 32), np.uint8), name="not an image")
    _, panel = make_widget(viewer, checkpoint, qtbot)
    assert panel.form.image.count() == 0  # only Image layers are listed
    panel.form.image.addItem("not an image")  # force it anyway: the guard must hold
    run_and_wait(panel, qtbot)
    assert "not an image" in panel.message.text() and "Labels layer" in panel.message.text()
    viewer.add_image(np.ones((32, 32), np.float32), name="img")
    panel.form.image.setCurrentIndex(panel.form.image.findText("img"))
    panel.form.model.setCurrentIndex(panel.form.model.count() - 1)  # "Load…" chosen, none loaded
    run_and_wait(panel, qtbot)
    assert "No model chosen" in panel.message.text()


def test_broken_checkpoint_message(viewer, checkpoint, qtbot, errors, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(checkpoint.read_bytes()[:2000])
    viewer.add_image(synthetic_nuclei((64, 64))[0], name="img")
    _, panel = make_widget(viewer, checkpoint, qtbot)
    panel.form.model.add_checkpoint(broken)
    run_and_wait(panel, qtbot)
    assert "cannot load" in panel.message.text() and "broken.pt" in panel.message.text()
    assert not labels_layers(viewer)


def test_image_list_follows_layers(viewer, checkpoint, qtbot):
    _, panel = make_widget(viewer, checkpoint, qtbot)
    viewer.add_image(np.zeros((16, 16)), name="a")
    viewer.add_image(np.zeros((16, 16)), name="b")
    items = [panel.form.image.itemText(i) for i in range(panel.form.image.count())]
    assert items == ["a", "b"]
    viewer.layers["a"].name = "renamed"
    del viewer.layers["b"]
    items = [panel.form.image.itemText(i) for i in range(panel.form.image.count())]
    assert items == ["renamed"]


def test_open_through_manifest(viewer, qtbot):
    from napari_unet._widgets import SegmentWidget

    try:
        _, widget = viewer.window.add_plugin_dock_widget("napari-unet-loop", "U-Net Segment")
    except (KeyError, ValueError, LookupError) as err:
        pytest.skip(f"the manifest does not declare the widget yet ({err})")
    assert isinstance(widget, SegmentWidget)


def test_gui_command_helpers(viewer, qtbot, tmp_path):
    import tifffile

    from napari_unet._widgets import SegmentWidget
    from napari_unet.cli.gui import dock_segment_widget, open_image

    open_image(viewer, None)
    assert viewer.layers[-1].data.shape == (512, 512)
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, synthetic_nuclei((64, 64))[0])
    open_image(viewer, path)
    assert viewer.layers[-1].data.shape == (64, 64)
    widget = dock_segment_widget(viewer)
    assert isinstance(widget, SegmentWidget)
    assert widget.segment.form.image.count() == 2
    zarr = pytest.importorskip("zarr")  # last: a .zarr folder opens too (lazily)
    store = zarr.open_array(store=str(tmp_path / "vol.zarr"), mode="w", shape=(2, 64, 64))
    store[...] = 1.0
    open_image(viewer, tmp_path / "vol.zarr")
    assert viewer.layers[-1].data.shape == (2, 64, 64)
    assert not isinstance(viewer.layers[-1].data, np.ndarray)


def test_a_volume_too_big_for_memory_is_refused_before_predicting(
    viewer, checkpoint, qtbot, errors, monkeypatch
):
    from napari_unet._widgets import predict_job as J
    from napari_unet.core.io.axes import StackLayout

    volume = synthetic_nuclei((64, 64))[0][None].repeat(4, 0)
    viewer.add_image(volume, name="vol", metadata={"napari_unet": {"axes": "ZYX"}})
    _, panel = make_widget(viewer, checkpoint, qtbot)
    monkeypatch.setattr(J, "available_memory", lambda: 10_000)  # 3-5 bytes x 16384 pixels needed
    run_and_wait(panel, qtbot)
    assert "would take about" in panel.message.text() and "command line" in panel.message.text()
    assert errors and not labels_layers(viewer)  # refused up front, nothing predicted
    monkeypatch.setattr(J, "available_memory", lambda: 10**12)
    run_and_wait(panel, qtbot)
    assert len(labels_layers(viewer)) == 1

    from napari_unet.core.errors import UserInputError

    layout = StackLayout(axes="ZYX", shape=(100, 1000, 1000))  # 1e8 pixels
    J.check_output_memory("x", layout, 0, available=1)  # nothing new: nothing to refuse
    J.check_output_memory("x", layout, 3, available=400_000_000)  # 0.3 GB <= 0.8 x 0.4 GB
    with pytest.raises(UserInputError, match=r"about 0\.5 GB of memory, but only 0\.4 GB"):
        J.check_output_memory("x", layout, 5, available=400_000_000)


def test_a_lazy_image_is_never_read_whole_by_the_dock(viewer, checkpoint, qtbot, errors):
    import dask.array as da

    class Counting:
        """A (40, 64, 64) array that counts the slices read from it."""

        shape, dtype, ndim = (40, 64, 64), np.dtype(np.uint8), 3

        def __init__(self) -> None:
            self.read = 0

        def __getitem__(self, key):
            block = np.zeros(self.shape, self.dtype)[key]
            self.read += block.shape[0] if block.ndim == 3 else 1
            return block

    source = Counting()
    lazy = da.from_array(source, chunks=(1, 64, 64), asarray=False)
    _, panel = make_widget(viewer, checkpoint, qtbot)
    viewer.add_image(lazy, name="lazy", metadata={"napari_unet": {"axes": "ZYX"}})
    panel.form.image.setCurrentIndex(panel.form.image.findText("lazy"))
    qtbot.wait(200)
    assert source.read < 10  # what napari shows, not the 40 slices (np.size computed them all)

    from napari_unet._widgets.correct_panel import CorrectPanel

    [correct] = panel.parent().findChildren(CorrectPanel)
    lazy_labels = da.zeros((40, 64, 64), dtype=np.uint16, chunks=(1, 64, 64))
    viewer.add_labels(lazy_labels, name="lazy labels")
    assert correct.layer_combo.findText("lazy labels") == -1  # view only: not offered to edit
    assert correct.labels_layer is None

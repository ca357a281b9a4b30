"""Measurements in a real napari window (run under Xvfb: ``xvfb-run -a``): after Run, the labels
layer's features hold one row per object; Measure after an edit, and Save measurements… to CSV.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_unet._widgets import layers as L
from napari_unet.core.io.images import read_image

pytestmark = pytest.mark.gui
TIMEOUT = 30_000


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_CONFIG_DIR", str(tmp_path / "config"))


def predicted_layer(viewer, shared_data, qtbot):
    """Image 044 of dsb2018_fluo predicted with the built-in fluo-nuclei model in the dock."""
    from napari_unet._widgets import SegmentWidget
    from napari_unet.core.checkpoint.format import resolve_checkpoint

    path = shared_data / "dsb2018_fluo/images/044.png"
    viewer.add_image(read_image(path).image, name="044")
    checkpoint = resolve_checkpoint("fluo-nuclei")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="U-Net Segment")
    panel = widget.segment
    panel.form.model.add_checkpoint(checkpoint)
    # the model's defaults arrive from a worker: wait for them before Run
    qtbot.waitUntil(lambda: not panel.loop.jobs.running(panel._info_key), timeout=TIMEOUT)
    assert panel.form.output.currentData() == "instances"
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=TIMEOUT)
    (layer,) = [x for x in viewer.layers if (L.plugin_tag(x) or {}).get("role") == "labels"]
    qtbot.waitUntil(lambda: len(layer.features) > 0, timeout=TIMEOUT)
    return panel, layer


def test_features_after_run_measure_after_edit_and_save(
    make_napari_viewer, shared_data, qtbot, tmp_path, monkeypatch
):
    viewer = make_napari_viewer()
    panel, layer = predicted_layer(viewer, shared_data, qtbot)
    labels = np.asarray(layer.data)
    ids = np.unique(labels[labels > 0])
    features = layer.features
    assert len(ids) > 10 and len(features) == len(ids)
    assert features["index"].tolist() == ids.tolist()
    first = int(ids[0])
    row = features[features["label"] == first].iloc[0]
    assert row["area"] == int(np.count_nonzero(labels == first))
    image = viewer.layers["044"].data
    assert row["mean_intensity"] == pytest.approx(float(image[labels == first].mean()))
    # napari shows the object's row where the mouse is
    y, x = np.argwhere(labels == first)[0]
    status = layer.get_status((y, x), world=True)
    assert "area" in str(status) and str(first) in str(status)

    # an edit (one object erased), then Measure: one row fewer
    from napari_unet._widgets.measurements import MeasureButtons

    (bar,) = panel.findChildren(MeasureButtons)
    layer.data[labels == first] = 0
    layer.refresh()
    bar.measure_button.click()
    qtbot.waitUntil(lambda: len(layer.features) == len(ids) - 1, timeout=TIMEOUT)
    assert "objects measured" in bar.status.text()

    target = tmp_path / "044_measurements.csv"
    monkeypatch.setattr(
        "napari_unet._widgets.measurements.ask_csv_path", lambda parent, default: str(target)
    )
    bar.save_button.click()
    lines = target.read_text().splitlines()
    assert lines[0].startswith("# napari-unet-loop measurements")
    rows = list(csv.DictReader(lines[1:]))
    assert len(rows) == len(ids) - 1 and first not in {int(r["label"]) for r in rows}
    assert "Saved 044_measurements.csv" in bar.status.text()


def test_measure_without_a_prediction_says_so(make_napari_viewer, qtbot):
    from napari_unet._widgets import SegmentWidget
    from napari_unet._widgets.measurements import MeasureButtons

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.float32), name="blank")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="U-Net Segment")
    panel = widget.segment
    qtbot.waitUntil(lambda: not panel.loop.jobs.running(panel._info_key), timeout=TIMEOUT)
    (bar,) = panel.findChildren(MeasureButtons)
    bar.measure_button.click()
    assert bar.status.text() == "No predicted labels to measure: press Run first."
    bar.save_button.click()
    assert bar.status.text() == "No predicted labels to measure: press Run first."


def test_a_huge_layer_is_not_measured_automatically(make_napari_viewer, monkeypatch):
    from napari_unet._widgets import measurements as M
    from napari_unet.core.io.axes import StackLayout

    viewer = make_napari_viewer()
    labels = np.zeros((16, 16), np.uint16)
    labels[2:5, 2:5] = 1
    meta = L.labels_metadata("img", labels.shape, task="binary", output="instances", model="m")
    layer = viewer.add_labels(labels, name="img labels", metadata={L.TAG: meta})
    M.set_features(layer, {"label": np.array([1]), "area": np.array([9])})
    monkeypatch.setattr(M, "AUTO_PIXELS", 100)
    M.measure_after_prediction(viewer, layer, StackLayout("YX", (16, 16)))
    assert len(layer.features) == 0  # the old table no longer matches: cleared, not kept
    assert "measurements" not in L.plugin_tag(layer)

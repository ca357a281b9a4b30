"""A 3-D model in the Segment dock, in a real napari window (``xvfb-run -a``).

A tiny ``unet3d_aniso`` fitted to three synthetic ellipsoids (16x64x64) is the model; what is
checked is the dock's 3-D behaviour: one 3-D labels layer with ids consistent across Z, a
per-object table of volumes, the slab of the current-slice scope, protection of the user's
edits in 3-D, and one sentence for an image a 3-D model cannot take.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_unet._widgets import layers as L
from tests.volume_helpers import CENTRES, balls, trained_checkpoint

pytestmark = pytest.mark.gui
TIMEOUT = 60_000


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return trained_checkpoint(tmp_path_factory.mktemp("ckpt3d") / "balls3d.pt")


@pytest.fixture
def errors(monkeypatch):
    shown: list[str] = []
    monkeypatch.setattr(
        "napari.utils.notifications.show_error", lambda message: shown.append(str(message))
    )
    return shown


def make_panel(viewer, checkpoint, qtbot, scope="stack"):
    from napari_unet._widgets import SegmentWidget

    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="U-Net Segment")
    panel = widget.segment
    panel.form.model.add_checkpoint(checkpoint)
    qtbot.waitUntil(lambda: str(checkpoint) in panel.model_dims, timeout=TIMEOUT)
    panel.form.fields["output"].value = "instances"
    panel.form.scope.setCurrentIndex(panel.form.scope.findData(scope))
    return panel


def run_and_wait(panel, qtbot):
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=TIMEOUT)


def labels_layers(viewer):
    return [x for x in viewer.layers if (L.plugin_tag(x) or {}).get("role") == "labels"]


def ball_ids(labels, truth, value):
    """The predicted ids inside the core of truth object ``value`` (all its slices)."""
    from scipy import ndimage

    core = ndimage.binary_erosion(truth == value, iterations=2)
    return set(np.unique(labels[core]).tolist()) - {0}


def test_whole_volume_in_3d_one_labels_layer_ids_across_z_and_volumes(
    make_napari_viewer, checkpoint, qtbot, errors
):
    viewer = make_napari_viewer()
    image, truth = balls()
    viewer.add_image(image, name="vol", scale=(2.0, 1.0, 1.0))
    panel = make_panel(viewer, checkpoint, qtbot)
    run_and_wait(panel, qtbot)
    assert not errors, errors
    (layer,) = labels_layers(viewer)
    assert layer.data.shape == truth.shape
    tag = L.plugin_tag(layer)
    assert tag["predicted"] == list(range(truth.shape[0]))
    for value in (1, 2, 3):  # one id per ball, the same in all 7 of its slices
        ids = ball_ids(layer.data, truth, value)
        assert len(ids) == 1, (value, ids)
        (obj,) = ids
        assert len(np.unique(np.nonzero(layer.data == obj)[0])) >= 5
    # the per-object table measures volumes: one row per ball, extents across Z
    qtbot.waitUntil(lambda: len(layer.features) > 0, timeout=TIMEOUT)
    table = tag["measurements"]
    assert len(table["label"]) == len(np.unique(layer.data)) - 1
    depth = np.asarray(table["bbox_z_max"]) - np.asarray(table["bbox_z_min"])
    assert depth.max() >= 5
    # voxel size from the layer's scale (z = 2): physical volumes are twice the voxel counts
    np.testing.assert_allclose(table["volume_physical"], 2.0 * np.asarray(table["area"]))
    assert "Predicted" in panel.status.text()


def test_current_slice_scope_reads_a_slab_and_writes_the_displayed_slice(
    make_napari_viewer, checkpoint, qtbot, errors
):
    viewer = make_napari_viewer()
    image, _ = balls()
    viewer.add_image(image, name="vol")
    panel = make_panel(viewer, checkpoint, qtbot, scope="slice")
    viewer.dims.set_current_step(0, 6)
    jobs = []
    start = panel.loop.jobs.start

    def recording(key, fn, *args, **kwargs):
        jobs.append(args)
        return start(key, fn, *args, **kwargs)

    panel.loop.jobs.start = recording
    run_and_wait(panel, qtbot)
    assert not errors, errors
    from napari_unet._widgets.predict_worker import PredictJob

    (job,) = [a[0] for a in jobs if a and isinstance(a[0], PredictJob)]
    assert job.volume is not None and job.image.shape[0] > 2  # Z context around slice 6
    assert job.volume.write == (6,)
    (layer,) = labels_layers(viewer)
    assert L.plugin_tag(layer)["predicted"] == [6]
    others = np.delete(np.asarray(layer.data), 6, axis=0)
    assert layer.data[6].any() and not others.any()


def test_user_edits_are_kept_in_3d(make_napari_viewer, checkpoint, qtbot, errors):
    viewer = make_napari_viewer()
    image, truth = balls()
    viewer.add_image(image, name="vol")
    panel = make_panel(viewer, checkpoint, qtbot)
    run_and_wait(panel, qtbot)
    (layer,) = labels_layers(viewer)
    (obj,) = ball_ids(layer.data, truth, 1)
    # the user fixes ball 1 in one slice: paints a pixel of it with a new id
    z, y, x = CENTRES[0]
    layer.data[z, y - 1 : y + 2, x - 1 : x + 2] = 99
    layer.refresh()
    assert layer.data[z, y, x] == 99
    before = np.asarray(layer.data).copy()
    run_and_wait(panel, qtbot)
    assert not errors, errors
    after = np.asarray(layer.data)
    assert after[z, y, x] == 99
    # the object the edit touched is kept whole, in every slice (3-D), ids not reused
    touched = (before == obj) | (before == 99)
    np.testing.assert_array_equal(after[touched], before[touched])
    new_ids = set(np.unique(after[~touched]).tolist()) - {0}
    assert obj not in new_ids and 99 not in new_ids
    assert "Kept your corrections" in panel.status.text()
    layer.undo()  # the refresh is one undoable step: the layer is back as the user left it
    np.testing.assert_array_equal(layer.data, before)


def test_a_2d_image_given_to_a_3d_model_is_one_sentence(
    make_napari_viewer, checkpoint, qtbot, errors
):
    viewer = make_napari_viewer()
    image, _ = balls()
    plane = image[6].copy()
    viewer.add_image(plane, name="plane")
    panel = make_panel(viewer, checkpoint, qtbot, scope="slice")
    run_and_wait(panel, qtbot)
    assert not labels_layers(viewer)
    (text,) = errors
    assert "3-D model" in text and "no Z axis" in text and "\n" not in text
    np.testing.assert_array_equal(viewer.layers["plane"].data, plane)


def test_a_z_of_one_and_time_are_refused_in_one_sentence():
    from napari_unet._widgets.volume_run import check_volume_image, volume_slices
    from napari_unet.core.errors import UserInputError
    from napari_unet.core.io.axes import StackLayout

    with pytest.raises(UserInputError, match="Z axis of 1 slice"):
        check_volume_image(StackLayout(axes="ZYX", shape=(1, 8, 8)), "one", "m")
    with pytest.raises(UserInputError, match="one Z-stack at a time"):
        check_volume_image(StackLayout(axes="TZYX", shape=(2, 3, 8, 8)), "movie", "m")
    assert volume_slices(30, "slice", [0]) == (list(range(9)), [0])
    assert volume_slices(30, "region", [29]) == (list(range(21, 30)), [29])
    assert volume_slices(5, "stack", [1, 2]) == (list(range(5)), list(range(5)))
    assert volume_slices(2, "slice", [1]) == ([0, 1], [1])


def test_uncertainty_and_next_region_with_a_3d_model(make_napari_viewer, checkpoint, qtbot, errors):
    from napari_unet._widgets.guidance_jump import MAX_SLICES
    from napari_unet._widgets.guidance_panel import GuidancePanel

    viewer = make_napari_viewer()
    image, _ = balls()
    layer_image = viewer.add_image(image, name="vol")
    panel = make_panel(viewer, checkpoint, qtbot)
    run_and_wait(panel, qtbot)
    viewer.dims.set_current_step(0, 2)
    viewer.layers.selection.active = layer_image
    guidance = GuidancePanel(viewer)
    qtbot.addWidget(guidance)
    guidance.next_region()  # no probability layer: the 3-D model measures a Z slab in 3-D
    qtbot.waitUntil(lambda: guidance.worker is None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: "Uncertainty" in guidance.why.text(), timeout=TIMEOUT)
    assert not errors, errors
    uncertainty = L.find_plugin_layer(viewer, role="uncertainty", image_layer="vol")
    computed = L.plugin_tag(uncertainty)["computed"]
    assert 2 in computed and len(computed) == MAX_SLICES
    data = np.asarray(uncertainty.data)
    assert all(data[z].max() > 0 for z in computed)
    # the jump goes to the Z slice of the most uncertain tile, named in the sentence
    z = int(viewer.dims.current_step[0])
    assert f"slice {z}" in guidance.why.text()
    from napari_unet._widgets.guidance_jump import TILE
    from napari_unet.core.inference.uncertainty import most_uncertain_tile

    scores = {s: most_uncertain_tile(data[s], None, TILE)[2] for s in computed}
    assert scores[z] == max(scores.values())

"""Correction tools in a real napari window (run under Xvfb: ``xvfb-run -a``).

The labels layer is built by hand with the contract tag (snapshot = a copy of the data), so no
model runs: what is checked is reviewed marks (slice, view, rectangles), edit tracking and the
annotated mask, per-slice status, the next-free-id shortcut and deleting small objects.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_unet._widgets import reviewed as rv

pytestmark = pytest.mark.gui


def predicted_stack(n: int = 3) -> np.ndarray:
    """(n, 32, 32) uint16 instance labels: two squares per slice, ids unique over the stack."""
    labels = np.zeros((n, 32, 32), dtype=np.uint16)
    for s in range(n):
        labels[s, 2:10, 2:10] = 2 * s + 1
        labels[s, 20:30, 18:28] = 2 * s + 2
    return labels


def add_labels(viewer, data: np.ndarray, predicted=None, output="instances"):
    tag = {
        "role": "labels",
        "image_layer": "img",
        "task": "instances",
        "output": output,
        "model": "test",
        "snapshot": data.copy(),
        "reviewed": np.zeros(data.shape, bool),
        "predicted": list(range(rv.n_slices(data.shape))) if predicted is None else predicted,
        "session_image_id": None,
    }
    return viewer.add_labels(data, name="img labels", metadata={"napari_unet": tag})


@pytest.fixture
def setup(make_napari_viewer, qtbot):
    from napari_unet._widgets.correct_panel import CorrectPanel

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((3, 32, 32), np.float32), name="img")
    labels = add_labels(viewer, predicted_stack())
    viewer.dims.set_current_step(0, 0)
    panel = CorrectPanel(viewer)
    qtbot.addWidget(panel)
    assert panel.labels_layer is labels
    return viewer, labels, panel


def reviewed_of(labels) -> np.ndarray:
    return labels.metadata["napari_unet"]["reviewed"]


def test_status_counts_and_mark_slice(setup, qtbot):
    viewer, labels, panel = setup
    panel.refresh_status()
    assert panel.slice_status.text() == "Slice 0: predicted"
    assert panel.stack_status.text() == "3 slices: 3 predicted"

    viewer.dims.set_current_step(0, 1)
    assert panel.current_slice() == 1
    assert panel.mark_slice() == 32 * 32
    mask = reviewed_of(labels)
    assert mask[1].all() and not mask[0].any() and not mask[2].any()
    overlay = rv.find_overlay(viewer, labels)
    assert overlay is not None and overlay.metadata["napari_unet"]["role"] == "reviewed"
    assert np.shares_memory(overlay.data, mask) and overlay.blending == "additive"
    assert viewer.layers.selection.active is labels
    qtbot.waitUntil(lambda: panel.stack_status.text() == "3 slices: 1 reviewed, 2 predicted")
    assert panel.slice_status.text() == "Slice 1: reviewed"
    assert panel.mark_slice() == 0  # idempotent


def test_mark_view_uses_visible_corner_pixels(setup):
    viewer, labels, panel = setup
    viewer.dims.set_current_step(0, 2)
    labels.corner_pixels = np.array([[0, 4, 6], [0, 11, 20]])  # what a zoomed-in draw sets
    assert panel.view_region() == (slice(4, 12), slice(6, 21))
    assert panel.mark_view() == 8 * 15
    expected = np.zeros((32, 32), bool)
    expected[4:12, 6:21] = True
    np.testing.assert_array_equal(reviewed_of(labels)[2], expected)
    assert rv.status_of(labels, 2) == "edited"  # partly reviewed


def test_rectangles_become_reviewed_and_are_cleared(setup):
    viewer, labels, panel = setup
    shapes = panel.show_review_regions()
    assert shapes.mode == "add_rectangle" and viewer.layers.selection.active is shapes
    # a rectangle on slice 2 and one on slice 0, corners at pixel centres (inclusive)
    shapes.add_rectangles(np.array([[2, 3, 4], [2, 3, 9], [2, 7, 9], [2, 7, 4]]))
    shapes.add_rectangles(np.array([[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 0]]))
    added = panel.mark_regions()
    assert added == 5 * 6 + 2 * 2
    mask = reviewed_of(labels)
    assert mask[2, 3:8, 4:10].all() and mask[2].sum() == 30
    assert mask[0, 0:2, 0:2].all() and mask[0].sum() == 4
    assert not mask[1].any()
    assert len(shapes.data) == 0
    assert viewer.layers.selection.active is labels
    assert panel.mark_regions() == 0 and "No rectangles" in panel.message.text()


def test_paint_is_tracked_as_edit_with_annotated_extent(setup, qtbot):
    viewer, labels, panel = setup
    panel.refresh_status()
    labels.paint((0, 5, 5), 2, refresh=True)  # grows object 2 into object 1 (brush size 10)
    qtbot.waitUntil(lambda: panel.slice_status.text() == "Slice 0: edited")
    assert panel.stack_status.text() == "3 slices: 1 edited, 2 predicted"
    data = labels.data[0]
    snapshot = labels.metadata["napari_unet"]["snapshot"][0]
    changed = data != snapshot
    assert changed.any()
    annotated = rv.annotated_plane(labels, 0)
    # the whole old and new extent of ids 1 (erased part) and 2 (grown) is annotated
    expected = changed | np.isin(data, [1, 2]) | np.isin(snapshot, [1, 2])
    np.testing.assert_array_equal(annotated, expected)
    assert not annotated[15, 0]  # untouched background stays unannotated
    # data setitem on slice 2 + an untouched slice 1: only slice 2 becomes edited
    labels.data_setitem((np.array([2]), np.array([15]), np.array([15])), 9)
    qtbot.waitUntil(lambda: panel.stack_status.text() == "3 slices: 2 edited, 1 predicted")
    annotated2 = rv.annotated_plane(labels, 2)
    assert annotated2.sum() == 1 and annotated2[15, 15]
    # undo (set_data only) is noticed for the shown slice
    viewer.dims.set_current_step(0, 2)
    labels.undo()
    qtbot.waitUntil(lambda: panel.slice_status.text() == "Slice 2: predicted")


def test_unpredicted_slices_and_user_labels(make_napari_viewer, qtbot):
    from napari_unet._widgets.correct_panel import CorrectPanel

    viewer = make_napari_viewer()
    data = predicted_stack(2)
    data[1] = 0
    add_labels(viewer, data, predicted=[0])
    own = viewer.add_labels(np.zeros((16, 16), np.uint8), name="mine")
    panel = CorrectPanel(viewer)
    qtbot.addWidget(panel)
    assert panel.labels_layer is not own  # the plugin's layer is preferred
    panel.refresh_status()
    assert panel.stack_status.text() == "2 slices: 1 predicted, 1 unlabelled"
    panel.layer_combo.setCurrentIndex(panel.layer_combo.findText("mine"))
    assert panel.labels_layer is own
    own.name = "my labels"
    assert panel.layer_combo.currentText() == "my labels" and panel.labels_layer is own
    assert panel.slice_status.text() == "Image: unlabelled"
    own.data_setitem((np.array([1]), np.array([1])), 3)  # own labels: every label is an edit
    qtbot.waitUntil(lambda: panel.slice_status.text() == "Image: edited")
    assert panel.mark_slice() == 256
    qtbot.waitUntil(lambda: panel.slice_status.text() == "Image: reviewed")
    assert rv.annotated_plane(own, 0).all()


def test_next_free_label_shortcut(setup):
    from app_model.types import KeyBinding

    _viewer, labels, panel = setup
    assert "M" in panel.next_button.toolTip()
    assert panel.select_next_label() == 7  # max over the whole stack (6) + 1
    assert labels.selected_label == 7
    labels.selected_label = 1
    bound = labels.keymap[KeyBinding.from_str("M")]
    bound(labels)
    assert labels.selected_label == 7
    labels.data_setitem((np.array([1]), np.array([0]), np.array([0])), 40)
    bound(labels)
    assert labels.selected_label == 41


def test_next_free_label_overflow_warns(make_napari_viewer, qtbot, monkeypatch):
    from napari_unet._widgets.correct_panel import CorrectPanel

    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", shown.append)
    viewer = make_napari_viewer()
    viewer.add_labels(np.full((8, 8), 255, np.uint8), name="full")
    panel = CorrectPanel(viewer)
    qtbot.addWidget(panel)
    assert panel.select_next_label() is None
    assert shown and "uint8" in shown[0]


def test_delete_small_objects_slice_or_stack_undoable(setup, qtbot):
    viewer, labels, panel = setup
    labels.data_setitem(
        (np.array([0, 1]), np.array([15, 15]), np.array([15, 15])), np.array([50, 51])
    )  # two 1-pixel specks on slices 0 and 1
    viewer.dims.set_current_step(0, 0)
    panel.min_size.setValue(5)
    panel.scope.setCurrentText("current slice")
    assert panel.delete_small() == 1
    assert labels.data[0, 15, 15] == 0 and labels.data[1, 15, 15] == 51
    assert (labels.data[0] == 1).sum() == 64  # big objects kept
    assert panel.delete_small(scope="whole stack") == 1
    assert labels.data[1, 15, 15] == 0
    labels.undo()  # napari's own history undoes the deletion
    assert labels.data[1, 15, 15] == 51
    # the deletion counts as an edit (tracked through the paint event)
    assert panel.delete_small(min_size=100, scope="whole stack") > 0
    qtbot.waitUntil(lambda: "edited" in panel.stack_status.text())
    assert (labels.data[0] == 2).sum() == 100 and not (labels.data[0] == 1).any()


def test_semantic_small_objects_by_component(make_napari_viewer, qtbot):
    from napari_unet._widgets.correct_panel import CorrectPanel

    viewer = make_napari_viewer()
    data = np.zeros((20, 20), np.uint8)
    data[1:8, 1:8] = 1
    data[15, 15] = 1  # same class, separate small component
    add_labels(viewer, data, output="semantic")
    panel = CorrectPanel(viewer)
    qtbot.addWidget(panel)
    assert panel.delete_small(min_size=3) == 1
    assert panel.labels_layer.data[15, 15] == 0 and panel.labels_layer.data[4, 4] == 1


def test_paint_slices_reads_history_atoms():
    shape = (2, 3, 8, 8)
    atom = ((np.array([1, 1]), np.array([2, 0]), np.array([0, 0]), np.array([1, 2])), None, 3)
    assert rv.paint_slices([atom], shape) == {5, 3}
    assert rv.paint_slices([object()], shape) is None
    assert rv.paint_slices([], (8, 8)) == {0}


def test_a_predicted_file_opens_as_a_prediction_and_only_edits_count(
    make_napari_viewer, qtbot, tmp_path
):
    from napari_unet._reader import read_layers
    from napari_unet._widgets.correct_panel import CorrectPanel
    from napari_unet.core.io.images import write_labels, write_tiff
    from napari_unet.core.io.marks import PredictionMark, software_tag

    write_tiff(tmp_path / "img.tif", np.zeros((3, 32, 32), np.uint8), axes="ZYX")
    mark = PredictionMark(model="fluo-nuclei", task="instances", output="instances")
    software = software_tag(mark)  # as `napari-unet-loop predict` writes it
    write_labels(tmp_path / "img_labels.tif", predicted_stack(), axes="ZYX", software=software)
    viewer = make_napari_viewer()
    for data, kwargs, kind in read_layers(str(tmp_path / "img.tif")):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    labels = viewer.layers["img_labels"]
    viewer.dims.set_current_step(0, 0)
    panel = CorrectPanel(viewer)
    qtbot.addWidget(panel)
    assert panel.labels_layer is labels
    panel.refresh_status()
    assert panel.stack_status.text() == "3 slices: 3 predicted"
    labels.paint((0, 5, 5), 9)  # the user fixes one object on slice 0
    qtbot.waitUntil(lambda: rv.status_of(labels, 0) == "edited")
    assert [rv.status_of(labels, s) for s in (1, 2)] == ["predicted", "predicted"]
    annotated = rv.annotated_plane(labels, 0)
    assert annotated[5, 5] and not annotated[25, 20]  # the untouched object is not learnt from


def test_the_reviewed_eraser_unmarks_and_the_pixels_stop_being_training_data(setup, qtbot):
    _, labels, panel = setup
    saved = []
    labels.events.metadata.connect(lambda e: saved.append(getattr(e, "napari_unet_slices", None)))
    assert panel.mark_slice() == 32 * 32
    assert rv.annotated_plane(labels, 0).all()
    panel.erase_button.setChecked(True)  # the eraser: the same buttons un-mark
    labels.corner_pixels = np.array([[0, 0, 0], [0, 15, 31]])  # the top half is visible
    assert panel.mark_view() == 16 * 32
    assert "un-marked" in panel.message.text()
    mask = reviewed_of(labels)
    assert not mask[0, :16].any() and mask[0, 16:].all()
    annotated = rv.annotated_plane(labels, 0)
    assert not annotated[:16].any() and annotated[16:].all()  # no longer training data
    assert saved[-1] == (0,)  # announced: the autosave saves the slice's reviewed mask
    shapes = panel.show_review_regions()
    shapes.add_rectangles(np.array([[0, 20, 0], [0, 20, 3], [0, 23, 3], [0, 23, 0]]))
    assert panel.mark_regions() == 16
    assert not mask[0, 20:24, 0:4].any()
    assert panel.mark_slice() == 32 * 32 - 16 * 32 - 16
    assert not mask.any() and rv.status_of(labels, 0) == "predicted"
    panel.erase_button.setChecked(False)
    assert panel.mark_slice() == 32 * 32  # marking again


def test_a_reviewed_mark_on_an_image_with_no_labels_is_refused_in_one_sentence(
    make_napari_viewer, qtbot
):
    from napari_unet._widgets.correct_panel import CorrectPanel

    viewer = make_napari_viewer()
    panel = CorrectPanel(viewer)
    qtbot.addWidget(panel)
    assert panel.mark_slice() == 0 and panel.mark_view() == 0 and panel.mark_regions() == 0
    assert panel.message.text().startswith("No labels layer to mark")
    data = predicted_stack(2)
    data[1] = 0
    labels = add_labels(viewer, data, predicted=[0])  # slice 1: never predicted, nothing painted
    panel.set_labels_layer(labels)
    viewer.dims.set_current_step(0, 1)
    before = np.array(labels.data)
    assert panel.mark_slice() == 0
    text = panel.message.text()
    assert text.count(".") == 1 and "Slice(s) 1" in text and "predict or paint it first" in text
    assert not reviewed_of(labels).any()
    np.testing.assert_array_equal(labels.data, before)
    viewer.dims.set_current_step(0, 0)
    assert panel.mark_slice() == 32 * 32  # a predicted slice is marked as before

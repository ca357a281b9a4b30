"""The first ten minutes, in a real napari window (run under Xvfb: ``xvfb-run -a``).

A sample opened the way the Open Sample menu does, the built-in models, and both docks docked
the way the Plugins menu does: the corrections go to the prediction (never to the sample's
ground truth), the defaults follow the work (model for the image, start model for fine-tuning,
the newest version after opening a session) and the Fine-tune dock is usable at 1600x1000.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_unet._widgets import reviewed as rv
from napari_unet.core.checkpoint.format import builtin_checkpoints

pytestmark = pytest.mark.gui
TIMEOUT = 60_000
PLUGIN = "napari-unet-loop"


@pytest.fixture(autouse=True)
def _quiet(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setattr("napari.utils.notifications.show_warning", lambda message: None)
    monkeypatch.setattr("napari.utils.notifications.show_error", lambda message: None)


@pytest.fixture
def builtins():
    models = {name: str(path) for name, path in builtin_checkpoints().items()}
    if not {"fluo-nuclei", "em-membranes"} <= set(models):
        pytest.skip("the built-in models are not installed")
    return models


def segment_dock(viewer, qtbot):
    from napari_unet._widgets import SegmentWidget

    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="U-Net Segment")
    return widget, widget.segment, widget.panels[1]


def run_and_wait(panel, qtbot):
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=TIMEOUT)
    assert not panel.message.text(), panel.message.text()


def choose_image(panel, name: str) -> None:
    combo = panel.form.image
    combo.setCurrentIndex(combo.findText(name))
    assert panel.image_layer().name == name


def test_corrections_go_to_the_prediction_never_the_ground_truth(
    make_napari_viewer, qtbot, builtins
):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "synthetic_nuclei")
    truth = viewer.layers["nuclei ground truth"]
    truth_before = truth.data.copy()
    widget, panel, correct = segment_dock(viewer, qtbot)
    assert correct.labels_layer is None  # the ground truth is not something to correct
    assert correct.layer_combo.findText(truth.name) < 0
    assert panel.form.model.checkpoint() == builtins["fluo-nuclei"]

    run_and_wait(panel, qtbot)
    labels = viewer.layers["nuclei labels"]
    assert correct.labels_layer is labels and correct.layer_combo.currentText() == labels.name
    labels.selected_label = correct.select_next_label()  # the M key's action
    labels.paint((40, 40), labels.selected_label)
    assert correct.mark_slice() == labels.data.size
    assert rv.reviewed_mask(labels).all()
    assert labels.data[40, 40] == labels.selected_label
    assert "reviewed" not in truth.metadata["napari_unet"]
    np.testing.assert_array_equal(truth.data, truth_before)
    session_panel = widget.panels[2]
    assert session_panel.target_labels() is labels  # Create session links the prediction

    # selecting the ground truth in the layer list does not make it the target either
    viewer.layers.selection.active = truth
    assert correct.labels_layer is labels

    # a second image: the panel follows the new prediction
    viewer.open_sample(PLUGIN, "synthetic_em")
    choose_image(panel, "em")
    assert panel.form.model.checkpoint() == builtins["em-membranes"]
    run_and_wait(panel, qtbot)
    second = viewer.layers["em labels"]
    assert correct.labels_layer is second
    # back to the first prediction by selecting it, then re-running the second one
    viewer.layers.selection.active = labels
    assert correct.labels_layer is labels
    run_and_wait(panel, qtbot)
    assert correct.labels_layer is second


def test_segment_dock_proposes_the_model_that_fits_the_image(make_napari_viewer, qtbot, builtins):
    from napari_unet.core.synthetic import synthetic_em, synthetic_nuclei

    viewer = make_napari_viewer()
    nuclei, _ = synthetic_nuclei((256, 256), seed=3)
    em, *_ = synthetic_em((256, 256), seed=3)
    viewer.add_image(em, name="untagged em")
    _, panel, _ = segment_dock(viewer, qtbot)
    assert panel.form.model.checkpoint() == builtins["em-membranes"]
    viewer.add_image(nuclei, name="untagged nuclei")  # no tag: the pixels tell
    choose_image(panel, "untagged nuclei")
    assert panel.form.model.checkpoint() == builtins["fluo-nuclei"]
    assert "fluo-nuclei" in panel.status.text() and "untagged nuclei" in panel.status.text()
    # once the user picks a model by hand, images no longer change it
    picker = panel.form.model
    index = picker.findData(builtins["em-membranes"])
    picker.setCurrentIndex(index)
    picker.activated.emit(index)
    choose_image(panel, "untagged em")
    choose_image(panel, "untagged nuclei")
    assert picker.checkpoint() == builtins["em-membranes"]


def test_finetune_starts_from_the_model_that_made_the_labels(make_napari_viewer, qtbot, builtins):
    from napari_unet._widgets import FinetuneWidget

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "synthetic_nuclei")
    finetune = FinetuneWidget(viewer)  # opened before predicting: em-membranes comes first
    viewer.window.add_dock_widget(finetune, name="U-Net Fine-tune")
    form = finetune.finetune.form
    assert form.start_key() == "builtin:em-membranes"
    _, panel, _ = segment_dock(viewer, qtbot)
    run_and_wait(panel, qtbot)
    assert form.start_key() == "builtin:fluo-nuclei"
    # a Fine-tune dock opened after the prediction starts there too
    late = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(late, name="U-Net Fine-tune 2")
    assert late.finetune.form.start_key() == "builtin:fluo-nuclei"


def test_opening_a_session_shows_its_newest_version(make_napari_viewer, qtbot, tmp_path):
    import torch

    from napari_unet._widgets.loop_state import LoopState
    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model
    from napari_unet.session import Session

    session = Session.create(tmp_path / "session")
    for name, parent in (("a", "fluo-nuclei"), ("b", "v001")):
        torch.manual_seed(0)
        model = build_model("unet", depth=2, base_channels=4, in_channels=1, out_channels=1)
        path = save_checkpoint(tmp_path / f"{name}.pt", model, task="binary", tile_shape=(64, 64))
        session.add_version(path, parent=parent, steps=5, metrics={"score": 0.5})
    viewer = make_napari_viewer()
    _, panel, _ = segment_dock(viewer, qtbot)
    assert panel.hot_swap.follow.isChecked()
    LoopState.for_viewer(viewer).set_session(Session.open(session.root))  # what Open… does
    assert panel.form.model.version_id() == "v002"
    assert LoopState.for_viewer(viewer).active_version == "v002"
    assert not panel.hot_swap.repredictor.running  # nothing is re-predicted on opening


def test_both_docks_fit_at_1600x1000_without_a_splitter(make_napari_viewer, qtbot):
    """Docked from the Plugins menu, the docks become tabs: Start, status and plot are visible."""
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "U-Net Segment")
    dock, finetune = viewer.window.add_plugin_dock_widget(PLUGIN, "U-Net Fine-tune")
    window = dock.parentWidget()
    qtbot.waitUntil(lambda: bool(window.tabifiedDockWidgets(dock)), timeout=5_000)
    panel = finetune.finetune
    qtbot.wait(200)  # the tabs settle
    dock.raise_()  # a click on its tab
    qtbot.waitUntil(lambda: not panel.plot.visibleRegion().isEmpty())
    for widget in (panel.start_button, panel.status, panel.plot):
        visible = widget.visibleRegion().boundingRect()
        assert visible.height() >= min(widget.height(), 20), widget
    assert panel.plot.visibleRegion().boundingRect().height() >= 150
    # the Segment tab is one click away and shows Run
    segment.dock_widget().raise_()
    qtbot.waitUntil(lambda: segment.segment.run_button.isVisible())
    assert not segment.segment.run_button.visibleRegion().isEmpty()


def test_gui_command_fits_the_image_after_docking(make_napari_viewer, qtbot):
    """``gui IMAGE``: both docks as tabs, Segment on top, the whole image in view."""
    from napari_unet.cli.gui import (
        dock_finetune_widget,
        dock_segment_widget,
        open_image,
        show_segment_first,
    )

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    open_image(viewer, None)
    image = viewer.layers[-1]
    segment = dock_segment_widget(viewer)
    finetune = dock_finetune_widget(viewer)
    show_segment_first(viewer, segment)
    qtbot.wait(200)
    window = segment.dock_widget().parentWidget()
    assert finetune.dock_widget() in window.tabifiedDockWidgets(segment.dock_widget())
    assert not segment.segment.run_button.visibleRegion().isEmpty()
    corners = np.asarray(image.corner_pixels)  # the visible data box: the whole image
    assert (corners[0] <= 0).all() and (corners[1] >= np.asarray(image.data.shape) - 1).all()
    assert "fluo-nuclei" in segment.segment.form.model.currentText()


def test_shortcuts_tables_and_overlay(make_napari_viewer, qtbot, tmp_path):
    import torch

    from napari_unet._widgets import FinetuneWidget, SegmentWidget
    from napari_unet._widgets.loop_state import LoopState
    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model
    from napari_unet.session import Session

    viewer = make_napari_viewer()
    segment = SegmentWidget(viewer)
    shortcuts = segment.panels[-1].section
    rows = [shortcuts.rows.itemAt(i).widget() for i in range(shortcuts.rows.count())]
    texts = " ".join(w.text() for w in rows if hasattr(w, "text"))
    for keys in ("Ctrl+Enter", "<b>M</b>", "Ctrl+Shift+Enter", "Ctrl+Z"):
        assert keys in texts
    assert "M: Next free label id" in shortcuts.toggle.toolTip()

    session = Session.create(tmp_path / "session")
    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, in_channels=1, out_channels=1)
    path = save_checkpoint(tmp_path / "a.pt", model, task="binary", tile_shape=(64, 64))
    session.add_version(
        path, name="a long version name after many corrections", parent="fluo-nuclei",
        steps=12345, metrics={"score": 0.5}, data={"n_images": 3, "n_items": 27},
    )  # fmt: skip
    LoopState.for_viewer(viewer).set_session(session)
    finetune = FinetuneWidget(viewer)
    finetune.resize(340, 900)
    finetune.show()
    qtbot.addWidget(finetune)
    table = finetune.panels[1].table
    qtbot.waitUntil(lambda: table.rowCount() == 1)
    qtbot.wait(100)
    assert table.horizontalHeader().length() <= table.viewport().width()
    assert table.horizontalScrollBar().maximum() == 0

    viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    tag = {
        "role": "labels",
        "image_layer": "img",
        "task": "instances",
        "output": "instances",
        "model": "test",
        "snapshot": np.zeros((32, 32), np.uint16),
        "reviewed": np.zeros((32, 32), bool),
        "predicted": [0],
        "session_image_id": None,
    }
    labels = viewer.add_labels(
        np.zeros((32, 32), np.uint16), name="img labels", metadata={"napari_unet": tag}
    )
    correct = segment.panels[1]
    assert correct.labels_layer is labels
    correct.mark_slice()
    assert rv.find_overlay(viewer, labels).opacity <= 0.15  # faint: dim nuclei stay visible

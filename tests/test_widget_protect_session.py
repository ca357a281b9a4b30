"""The user's work survives a session save/reopen, and the autosave follows Ctrl+Z (Xvfb).

Labels are built by hand with the contract tag and predictions written with the plugin's own
writer (:func:`~napari_unet._widgets.label_writes.write_prediction`), so no model runs.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_unet._widgets import layers as L
from napari_unet._widgets import reviewed as rv
from napari_unet.core.io.axes import StackLayout
from napari_unet.session import Session

pytestmark = pytest.mark.gui
TIMEOUT = 10_000
LAYOUT = StackLayout(axes="YX", shape=(64, 64))


@pytest.fixture(autouse=True)
def _sessions_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_SESSIONS_DIR", str(tmp_path / "sessions"))


def squares(boxes):
    labels = np.zeros((64, 64), dtype=np.uint16)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        labels[y0:y1, x0:x1] = i + 1
    return labels


def add_pair(viewer):
    image = viewer.add_image(np.random.default_rng(0).random((64, 64), np.float32), name="img")
    data = squares([(2, 12, 2, 12), (30, 40, 30, 40), (50, 60, 50, 60)])
    tag = L.labels_metadata("img", data.shape, task="instances", output="instances", model="m")
    tag["snapshot"][:] = data
    tag["predicted"] = [0]
    labels = viewer.add_labels(data, name="img labels", metadata={L.TAG: tag})
    return image, labels


def make_panel(viewer):
    from napari_unet._widgets.session_panel import SessionPanel

    panel = SessionPanel(viewer)
    viewer.window.add_dock_widget(panel, name="session")
    panel.autosave._timer.setInterval(100)
    return panel


def stored_slice(folder):
    return Session.open(folder, readonly=True).load_slice("img0001", 0)


def test_edits_survive_reopen_and_the_autosave_follows_undo(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, labels = add_pair(viewer)
    panel = make_panel(viewer)
    folder = panel.create_session().root
    labels.data_setitem((np.array([5]), np.array([5])), 0)  # an edit of object 1
    rv.mark_reviewed(labels, 0, (slice(48, 64), slice(48, 64)))  # object 3 reviewed
    labels.events.metadata(napari_unet_slices=(0,))
    qtbot.waitUntil(lambda: stored_slice(folder).reviewed is not None, timeout=TIMEOUT)
    user = np.array(labels.data)

    # a refresh (everything predicted anew), then Ctrl+Z: what is saved follows what is shown
    new = squares([(0, 20, 0, 20), (20, 30, 20, 30)])
    from napari_unet._widgets.label_writes import write_prediction

    write_prediction(labels, LAYOUT, new[None], [0], None)
    refreshed = np.array(labels.data)
    assert not np.array_equal(refreshed, user)
    qtbot.waitUntil(lambda: np.array_equal(stored_slice(folder).labels, refreshed), timeout=TIMEOUT)
    labels.undo()
    np.testing.assert_array_equal(labels.data, user)
    qtbot.waitUntil(lambda: np.array_equal(stored_slice(folder).labels, user), timeout=TIMEOUT)
    stored = stored_slice(folder)
    np.testing.assert_array_equal(stored.snapshot, L.plugin_tag(labels)["snapshot"])
    assert Session.open(folder, readonly=True).statuses("img0001") == ["edited"]
    assert panel.autosave.flush()

    # a new viewer opens the session: the same pixels are the user's and are kept
    other = make_napari_viewer()
    panel2 = make_panel(other)
    panel2.open_session(folder)
    (restored,) = [la for la in other.layers if rv.role_of(la) == "labels"]
    np.testing.assert_array_equal(restored.data, user)
    write_prediction(restored, LAYOUT, new[None], [0], None)
    data = np.asarray(restored.data)
    np.testing.assert_array_equal(data[2:12, 2:12], user[2:12, 2:12])  # the edited object
    np.testing.assert_array_equal(data[48:, 48:], user[48:, 48:])  # the reviewed corner
    assert (data[20:30, 20:30] > 0).all() and not data[30:40, 30:40].any()  # refreshed

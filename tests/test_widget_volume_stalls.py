"""The loop in 3-D without long main-thread steps, in a real napari window (``xvfb-run -a``).

Issue 20's stall limit (<= 100 ms, as in 2-D): what is volume-wide runs in workers. Checked here:
the merge's per-slice diffs are computed in the worker and the main thread only assigns them
(same labels, one undo step, the user's edits kept in 3-D); a first 3-D prediction joins the
open session with its image stored in a worker; a save spanning many slices runs in a thread.
``benchmarks/bench_gui.py --scenario volume --quick`` measures the stalls themselves.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_unet._widgets import layers as L
from tests.test_widget_volume import ball_ids, labels_layers, make_panel, run_and_wait
from tests.volume_helpers import CENTRES, balls, trained_checkpoint

pytestmark = pytest.mark.gui
TIMEOUT = 60_000


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("NAPARI_UNET_SESSIONS_DIR", str(tmp_path / "sessions"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return trained_checkpoint(tmp_path_factory.mktemp("ckpt3d") / "balls3d.pt")


def recording_threads(monkeypatch, module: str, name: str) -> list[int]:
    """Wrap ``module.name`` so that every call records the id of the thread it ran on."""
    import importlib

    owner = importlib.import_module(module)
    real, threads = getattr(owner, name), []

    def wrapped(*args, **kwargs):
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)
    return threads


def test_3d_rerun_merges_in_the_worker_same_labels_one_undo_step_edits_kept(
    make_napari_viewer, checkpoint, qtbot, monkeypatch
):
    viewer = make_napari_viewer()
    image, truth = balls()
    viewer.add_image(image, name="vol", scale=(2.0, 1.0, 1.0))
    panel = make_panel(viewer, checkpoint, qtbot)
    run_and_wait(panel, qtbot)
    (layer,) = labels_layers(viewer)
    (obj,) = ball_ids(layer.data, truth, 1)
    z, y, x = CENTRES[0]
    layer.data[z, y - 1 : y + 2, x - 1 : x + 2] = 99  # the user's edit of ball 1
    layer.data[2, 60:63, 60:63] = 7  # and a new object far from the balls
    stale = (slice(10, 13), slice(0, 5), slice(0, 5))  # an older prediction, not an edit:
    layer.data[stale] = 50  # the rerun replaces it
    L.plugin_tag(layer)["snapshot"][stale] = 50
    layer.refresh()
    before = np.asarray(layer.data).copy()
    snapshot_before = L.plugin_tag(layer)["snapshot"].copy()
    diffs = recording_threads(monkeypatch, "napari_unet._widgets.label_writes", "slice_diff")
    plans = []
    real_write = panel.writer.write
    panel.writer.write = lambda t, r, p=None: plans.append(p) or real_write(t, r, p)
    history = len(layer._undo_history)
    run_and_wait(panel, qtbot)
    main = threading.get_ident()
    assert diffs and main not in diffs  # every per-slice diff was computed in the worker
    (plan,) = plans
    assert plan is not None and plan.diffs is not None and len(plan.diffs) == len(plan.pieces)
    after = np.asarray(layer.data).copy()
    snapshot = L.plugin_tag(layer)["snapshot"]
    for index, merged, replaced in plan.pieces:  # the layer shows the merge exactly
        np.testing.assert_array_equal(after[index], merged)
        expected = np.where(replaced, merged, snapshot_before[index])
        np.testing.assert_array_equal(snapshot[index], expected)
    touched = (before == obj) | (before == 99)  # the edited object, kept whole in 3-D
    np.testing.assert_array_equal(after[touched], before[touched])
    assert after[2, 61, 61] == 7
    assert not after[stale].any() and not snapshot[stale].any()
    assert len(layer._undo_history) == history + 1  # one step of napari's history
    layer.undo()
    np.testing.assert_array_equal(layer.data, before)
    np.testing.assert_array_equal(L.plugin_tag(layer)["snapshot"], snapshot_before)
    layer.redo()
    np.testing.assert_array_equal(layer.data, after)


def test_a_first_3d_prediction_joins_the_session_stored_in_a_worker(
    make_napari_viewer, checkpoint, qtbot, monkeypatch, tmp_path
):
    from napari_unet._widgets.session_panel import SessionPanel
    from napari_unet.session import Session

    viewer = make_napari_viewer()
    image, _ = balls()
    viewer.add_image(image, name="vol")
    panel = make_panel(viewer, checkpoint, qtbot)
    (sessions,) = [p for p in panel.parent().findChildren(SessionPanel)]
    sessions.autosave._timer.setInterval(50)
    panel.loop.set_session(Session.create(tmp_path / "vol_session"))
    stored = recording_threads(monkeypatch, "napari_unet._widgets.session_panel", "store_image")
    busy = []
    sessions.autosave.busy.connect(busy.append)
    run_and_wait(panel, qtbot)
    (layer,) = labels_layers(viewer)
    linked = lambda: L.plugin_tag(layer).get("session_image_id") is not None  # noqa: E731
    qtbot.waitUntil(linked, timeout=TIMEOUT)
    assert stored and threading.get_ident() not in stored  # the volume's copy: not on the main
    assert [lay for lay, _ in sessions.autosave.watched()] == [layer]
    depth = image.shape[0]
    on_disk = lambda: Session.open(tmp_path / "vol_session", readonly=True).statuses("img0001")  # noqa: E731
    qtbot.waitUntil(lambda: on_disk() == ["predicted"] * depth, timeout=TIMEOUT)
    assert True in busy  # the 16 slices were saved in a thread
    saved = Session.open(tmp_path / "vol_session", readonly=True).load_slice("img0001", 8)
    np.testing.assert_array_equal(saved.labels, layer.data[8])


def test_closing_while_a_stack_is_stored_in_a_worker_keeps_its_labels(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    """A labels stack added to an open session is stored in a worker; a flush (the window
    closing, a session switch) right after waits for that store and saves the labels too."""
    import time

    import napari_unet._widgets.session_panel as session_panel
    from napari_unet.session import Session
    from tests.test_widget_session import add_pair, make_panel

    real = session_panel.store_image

    def slow_store(*args, **kwargs):
        time.sleep(0.5)  # a large volume's copy
        return real(*args, **kwargs)

    viewer = make_napari_viewer()
    panel = make_panel(viewer, qtbot)
    panel.loop_state.set_session(Session.create(tmp_path / "s"))
    monkeypatch.setattr(session_panel, "store_image", slow_store)
    data = np.zeros((4, 32, 32), np.int32)
    data[:, 8:20, 8:20] = 1
    _, labels = add_pair(viewer, data)  # a stack: its image is stored in a worker
    assert panel.flush()  # at once, as the window closing does
    assert L.plugin_tag(labels).get("session_image_id") == "img0001"
    saved = Session.open(tmp_path / "s", readonly=True)
    assert saved.statuses("img0001") == ["predicted"] * 4
    np.testing.assert_array_equal(saved.load_slice("img0001", 2).labels, data[2])

"""The Qt side of the trainer: signals from a real spawned process, stop, crash, window close.

Run under Xvfb (``xvfb-run -a``). Each test spawns one trainer process (a few seconds to import
torch) on a tiny session.
"""

from __future__ import annotations

import itertools
import os
import signal
import time

import pytest
from trainer_kill_helper import make_session, request, start_model

pytest.importorskip("pytestqt")

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QMainWindow

from napari_unet._widgets.loop_state import LoopState
from napari_unet._widgets.trainer_client import TrainerClient
from napari_unet.session import Session

pytestmark = pytest.mark.gui
SPAWN_MS = 90_000  # the child imports torch; the CI machine is small and shared


@pytest.fixture
def clients():
    """Makes clients and shuts their trainers down after the test, even when it failed."""
    made: list[TrainerClient] = []

    def make(**kwargs) -> TrainerClient:
        made.append(TrainerClient(**kwargs))
        return made[-1]

    yield make
    for client in made:
        client.shutdown(0.5)


@pytest.fixture
def session_request(tmp_path):
    folder = tmp_path / "session"
    make_session(folder)
    start = start_model(tmp_path / "start.pt")
    return folder, request(folder, start, train={"steps": 100_000, "val_every": 3, "lr": 0.01})


def test_signals_version_and_stop_without_blocking_the_ui(qtbot, clients, session_request):
    folder, req = session_request
    client = clients()
    steps, versions, finished, failed, pools = [], [], [], [], []
    client.step.connect(steps.append)
    client.version.connect(versions.append)
    client.finished.connect(finished.append)
    client.failed.connect(failed.append)
    client.pool_changed.connect(pools.append)
    beats: list[float] = []
    heartbeat = QTimer(interval=10)
    heartbeat.timeout.connect(lambda: beats.append(time.monotonic()))
    client.start(req)
    assert client.running and client.pid
    qtbot.waitUntil(lambda: bool(steps or failed), timeout=SPAWN_MS)
    assert not failed, failed
    heartbeat.start()
    qtbot.waitUntil(lambda: bool(versions or failed), timeout=30_000)
    assert not failed, failed
    qtbot.wait(300)
    heartbeat.stop()
    assert pools and pools[0].n_items == 1
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert gaps and max(gaps) < 0.2, f"the UI stalled {max(gaps):.3f} s"
    process_pid = client.pid
    asked = time.monotonic()
    client.stop()
    qtbot.waitUntil(lambda: not client.running, timeout=5_000)
    assert time.monotonic() - asked < 2.5
    assert finished and finished[-1].reason == "stopped" and not failed
    assert finished[-1].best_version == versions[-1].version_id
    # every version on disk was signalled (compared after the end: one may land while we look)
    assert [v.version_id for v in versions] == [v.id for v in Session.open(folder).versions()]
    with pytest.raises(ProcessLookupError):
        os.kill(process_pid, 0)


def test_sigkill_is_reported_then_window_close_stops_the_trainer(qtbot, clients, session_request):
    folder, req = session_request
    window = QMainWindow()
    viewer = type("FakeViewer", (), {})()
    LoopState.for_viewer(viewer).watch_window(window)  # what a docked widget does
    client = clients(viewer=viewer)
    steps, failed, finished = [], [], []
    client.step.connect(steps.append)
    client.failed.connect(failed.append)
    client.finished.connect(finished.append)
    client.start(req)
    qtbot.waitUntil(lambda: bool(steps or failed), timeout=SPAWN_MS)
    os.kill(client.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: bool(failed), timeout=5_000)
    assert failed == [
        f"The trainer stopped unexpectedly (exit code {-signal.SIGKILL}); your session and all "
        "completed versions are intact."
    ]
    assert not client.running and not finished
    Session.open(folder)  # still loads

    steps.clear()
    client.start(req)  # a new run after the crash
    qtbot.waitUntil(lambda: bool(steps or len(failed) > 1), timeout=SPAWN_MS)
    pid = client.pid
    window.close()  # napari closing
    assert not client.running
    assert finished and finished[-1].reason == "stopped" and len(failed) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_loop_state_is_one_per_viewer(qtbot):
    class Viewer:  # weak-referenceable stand-in
        pass

    a, b = Viewer(), Viewer()
    state = LoopState.for_viewer(a)
    assert LoopState.for_viewer(a) is state and LoopState.for_viewer(b) is not state
    reviewed, versions, active = [], [], []
    state.reviewed.connect(lambda image_id, slices: reviewed.append((image_id, slices)))
    state.version_added.connect(versions.append)
    state.active_version_changed.connect(active.append)
    state.publish_reviewed("img0001", (2, 0, 2))
    state.publish_reviewed("img0001", [])
    state.add_version("v002")
    state.set_active_version("v002")
    state.set_active_version("v002")
    assert reviewed == [("img0001", [0, 2])] and versions == ["v002"] and active == ["v002"]
    state.auto_switch = False
    assert state.auto_switch is False


def test_session_panel_publishes_sessions_and_reviewed_slices(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    import numpy as np

    from napari_unet._widgets import reviewed as rv
    from napari_unet._widgets.session_panel import SessionPanel

    monkeypatch.setenv("NAPARI_UNET_SESSIONS_DIR", str(tmp_path / "sessions"))
    viewer = make_napari_viewer()
    data = np.zeros((3, 32, 32), np.uint16)
    data[:, 4:12, 4:12] = 1
    image = viewer.add_image(np.random.default_rng(0).random(data.shape, np.float32), name="img")
    tag = {
        "role": "labels",
        "image_layer": image.name,
        "task": "instances",
        "output": "instances",
        "model": "test",
        "snapshot": data.copy(),
        "reviewed": np.zeros(data.shape, bool),
        "predicted": [0, 1, 2],
        "session_image_id": None,
    }
    labels = viewer.add_labels(data, name="img labels", metadata={"napari_unet": tag})
    state = LoopState.for_viewer(viewer)
    sessions, reviewed = [], []
    state.session_changed.connect(sessions.append)
    state.reviewed.connect(lambda image_id, slices: reviewed.append((image_id, slices)))
    panel = SessionPanel(viewer)
    viewer.window.add_dock_widget(panel, name="session")
    panel.autosave._timer.setInterval(100)
    session = panel.create_session()
    assert sessions == [session] and state.session is session
    qtbot.waitUntil(lambda: Session.open(session.root).statuses("img0001")[0] == "predicted")
    qtbot.wait(300)
    assert reviewed == [], "saving predictions is not a correction"
    labels.paint((1, 20, 20), 5)
    rv.mark_reviewed(labels, 2)
    labels.events.metadata(napari_unet_slices=(2,))
    qtbot.waitUntil(lambda: bool(reviewed), timeout=10_000)
    assert sorted(s for _, slices in reviewed for s in slices) == [1, 2]
    assert {image_id for image_id, _ in reviewed} == {"img0001"}

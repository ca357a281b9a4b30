"""The viewer's LoopState is the one owner of the open session (real window, ``xvfb-run -a``).

Before, the session panel, its autosave, the correction clock and the re-prediction each kept
their own copy, set by hand: a session published through the loop state (as the Fine-tune dock,
the walkthrough scripts and tests do) left the session panel saying "No session" and its
autosave saving nowhere.
"""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from test_widget_session import add_pair, make_panel, on_disk, predicted_stack

from napari_unet._widgets.loop_state import LoopState
from napari_unet.session import Session

pytestmark = pytest.mark.gui
TIMEOUT = 10_000


@pytest.fixture(autouse=True)
def _sessions_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_SESSIONS_DIR", str(tmp_path / "sessions"))


def test_a_session_published_through_the_loop_state_is_the_panels_and_autosaves(
    make_napari_viewer, qtbot, tmp_path
):
    viewer = make_napari_viewer()
    _, labels = add_pair(viewer, predicted_stack(2))
    panel = make_panel(viewer, qtbot, delay_ms=50)
    loop = LoopState.for_viewer(viewer)
    session = Session.create(tmp_path / "by-the-loop.unet-session")
    loop.set_session(session)
    assert panel.session is session and panel.autosave.session is session
    assert str(session.root) in panel.path_label.text() and panel.add_button.isEnabled()
    panel.add_labels_layer(labels)
    labels.paint((1, 15, 15), 7)
    qtbot.waitUntil(lambda: on_disk(session.root)[1] == ["predicted", "edited"], timeout=TIMEOUT)

    other = Session.create(tmp_path / "second.unet-session")
    loop.set_session(other)  # switching: the old links are dropped, nothing saved into `other`
    assert panel.session is other and panel.autosave.watched() == []
    labels.paint((0, 15, 15), 9)
    qtbot.wait(300)
    assert other.images() == []

"""Region-level refresh of one large 2-D image when a version is published (real window, Xvfb).

The session holds two versions of a depth-2 binary U-Net whose last layer is a constant: v001
predicts background everywhere, v002 foreground everywhere. On a 1024x1024 image the user
corrects two regions (paints one, reviews the other) under v001; publishing v002 must refresh
the rest of the image in the background and leave both regions byte-identical. A 10 ms
heartbeat on the main thread measures the longest stall of the refresh (under 100 ms; on a
machine with more runnable processes than 1.5 per core the heartbeat waits for a core whatever
the plugin does, so the bound is relaxed there and ``benchmarks/bench_gui.py --scenario
refresh`` is the measurement to quote).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_unet._widgets import layers as L

pytestmark = pytest.mark.gui
TIMEOUT = 60_000
SIDE = 1024
#: The issue's target for the longest main-thread stall of a background refresh.
MAX_STALL_MS = 100.0
#: Runnable processes per core above which the machine, not the plugin, sets the stalls (the
#: 10 ms heartbeat then waits for a core): the target is relaxed 5-fold and the stall printed.
BUSY_LOAD_PER_CORE = 1.5


def stall_limit_ms() -> float:
    """:data:`MAX_STALL_MS`, or 5 times it on a machine busier than :data:`BUSY_LOAD_PER_CORE`."""
    import os

    busy = os.getloadavg()[0] / (os.cpu_count() or 1) > BUSY_LOAD_PER_CORE
    return MAX_STALL_MS * (5 if busy else 1)


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setattr("napari.utils.notifications.show_warning", lambda message: None)
    monkeypatch.setattr("napari.utils.notifications.show_error", lambda message: None)


def constant_checkpoint(path, bias: float):
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, in_channels=1, out_channels=1)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(bias)
    return save_checkpoint(path, model, task="binary", tile_shape=(256, 256), overlap=16)


@pytest.fixture
def session(tmp_path):
    from napari_unet.session import Session

    session = Session.create(tmp_path / "session")
    session.add_version(constant_checkpoint(tmp_path / "a.pt", -10.0), parent="fluo-nuclei")
    return session


def stalls_ms(ticks, start, end):
    times = np.asarray(ticks)
    keep = (times[1:] > start) & (times[1:] <= end)
    gaps = np.diff(times)[keep] * 1000.0
    return float(gaps.max()) if gaps.size else float("nan")


def test_a_published_version_refreshes_a_2d_image_around_two_corrected_regions(
    make_napari_viewer, session, tmp_path, qtbot
):
    from qtpy.QtCore import QTimer

    from napari_unet._widgets import SegmentWidget
    from napari_unet._widgets.loop_state import LoopState

    viewer = make_napari_viewer()
    loop = LoopState.for_viewer(viewer)
    loop.set_session(session)
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, size=(SIDE, SIDE)).astype(np.uint8)
    viewer.add_image(image, name="section")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    panel = widget.segment
    loop.set_active_version("v001")
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=TIMEOUT)
    labels = L.find_plugin_layer(viewer, role="labels", image_layer="section")
    assert labels is not None and not np.asarray(labels.data).any()  # v001: background

    # region A: the user paints an object; region B: the user reviews background
    ys, xs = np.mgrid[100:200, 100:200]
    labels.data_setitem((ys.ravel(), xs.ravel()), 1)
    L.plugin_tag(labels)["reviewed"][600:700, 600:760] = True
    before = np.array(labels.data)

    beat: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: beat.append(time.perf_counter()))
    timer.start()
    session.add_version(constant_checkpoint(tmp_path / "b.pt", 10.0), parent="v001")
    qtbot.wait(100)
    start = time.perf_counter()
    loop.add_version("v002")  # published: "follow the newest version" is on
    repredictor = panel.hot_swap.repredictor
    qtbot.waitUntil(lambda: not repredictor.running, timeout=TIMEOUT)
    qtbot.wait(300)  # the redraw and the autosave after the write
    end = time.perf_counter()
    timer.stop()

    data = np.asarray(labels.data)
    assert data[400:500, 400:500].all() and data[900:, :100].all()  # refreshed elsewhere
    np.testing.assert_array_equal(data[100:200, 100:200], before[100:200, 100:200])
    np.testing.assert_array_equal(data[600:700, 600:760], before[600:700, 600:760])
    assert not data[600:700, 600:760].any()
    stall = stalls_ms(beat, start, end)
    limit = stall_limit_ms()
    print(f"longest stall of the refresh of {SIDE}x{SIDE}: {stall:.0f} ms (limit {limit:.0f})")
    assert stall < limit
    labels.undo()  # Ctrl+Z takes the refresh back, as it takes back a brush stroke
    np.testing.assert_array_equal(labels.data, before)

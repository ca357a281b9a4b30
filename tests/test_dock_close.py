"""Closing napari right after opening both docks must not crash the process on exit.

Closing the window can start a last background worker (e.g. reading a start model's info); one
still running when Qt tears its objects down used to abort the process (``WorkerBaseSignals has
been deleted``). Runs in a fresh interpreter, since the crash happens at exit.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import napari
from napari_unet._widgets import FinetuneWidget, SegmentWidget
viewer = napari.Viewer(show=False)
for cls, name in ((SegmentWidget, "U-Net Segment"), (FinetuneWidget, "U-Net Fine-tune")):
    viewer.window.add_dock_widget(cls(viewer), name=name)
app = napari.qt.get_qapp()
for _ in range(20):
    app.processEvents()
viewer.close()
print("closed")
"""


def test_closing_napari_with_workers_running_exits_cleanly() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=False
    )
    assert "closed" in done.stdout, done.stderr[-2000:]
    assert done.returncode == 0, done.stderr[-2000:]
    assert "has been deleted" not in done.stderr, done.stderr[-2000:]

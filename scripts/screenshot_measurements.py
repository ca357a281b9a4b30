"""Screenshot of the measurements (docs/images/measurements.png), run through napari-shot::

    ../shared/tools/napari-shot docs/images/measurements.png scripts/screenshot_measurements.py

Image 044 of the shared dsb2018_fluo set predicted with the built-in fluo-nuclei model in the
U-Net Segment dock; the labels layer's features (one row per object) in napari's Features table
widget and, in the status bar, the row of the object under the (simulated) mouse.
"""

from __future__ import annotations

import time
from pathlib import Path

from napari.qt import get_qapp
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QDockWidget, QScrollArea

from napari_unet._widgets import SegmentWidget
from napari_unet._widgets.measurements import MeasureButtons
from napari_unet.core.checkpoint.format import resolve_checkpoint
from napari_unet.core.io.images import read_image

viewer = globals()["viewer"]  # given by napari-shot
app = get_qapp()
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def wait(condition, seconds: float = 60.0) -> None:
    end = time.time() + seconds
    while not condition() and time.time() < end:
        app.processEvents()
        time.sleep(0.05)


viewer.add_image(read_image(DATA / "dsb2018_fluo/images/044.png").image, name="044")
panel = next(d for d in viewer.window.dock_widgets.values() if isinstance(d, SegmentWidget)).segment
panel.images.refresh()
panel.form.model.add_checkpoint(resolve_checkpoint("fluo-nuclei"))
wait(lambda: not panel.loop.jobs.running(panel._info_key))
panel.run_button.click()
wait(lambda: panel.worker is None)
layer = viewer.layers["044 labels"]
wait(lambda: len(layer.features) > 0)  # measured automatically after the prediction
(bar,) = panel.findChildren(MeasureButtons)
bar.measure_button.click()  # the same table again, by hand: the status line reports it
wait(lambda: "objects measured" in bar.status.text())
table_dock, _ = viewer.window.add_plugin_dock_widget("napari", "Features table widget")
segment_dock = panel.parentWidget()
while not isinstance(segment_dock, QDockWidget):
    segment_dock = segment_dock.parentWidget()
table_dock.parentWidget().resizeDocks(
    [segment_dock, table_dock], [560, 300], Qt.Orientation.Vertical
)  # public Qt (QMainWindow.resizeDocks): room for the table
viewer.layers.selection.active = layer
scroll = bar.parentWidget()
while scroll is not None and not isinstance(scroll, QScrollArea):
    scroll = scroll.parentWidget()
if scroll is not None:
    scroll.ensureWidgetVisible(bar)
row = layer.features.iloc[5]
y, x = round(row["centroid_y"]), round(row["centroid_x"])
viewer.cursor.position = (y, x)
# what napari's status bar shows with the mouse over that object (Xvfb has no real mouse)
viewer.status = layer.get_status((y, x), world=True)["coordinates"]
for _ in range(30):
    app.processEvents()

"""The "Keyboard shortcuts" section of the Segment dock, opened (docs/images/keyboard.png).

Run with the screenshot tool, which docks the plugin's widgets and gives ``viewer``::

    ../shared/tools/napari-shot docs/images/keyboard.png scripts/shot_keys.py
"""

from napari.qt import get_qapp

from napari_unet._widgets import SegmentWidget
from napari_unet.core.synthetic import synthetic_nuclei

viewer = globals()["viewer"]
viewer.add_image(synthetic_nuclei((256, 256))[0], name="nuclei")
docks = [dock.widget() for dock in viewer.window._dock_widgets.values()]
segment = next(w for w in docks if isinstance(w, SegmentWidget))
segment.panels[-1].section.toggle.click()
app = get_qapp()
for _ in range(10):
    app.processEvents()
bar = segment._scroll.verticalScrollBar()
bar.setValue(bar.maximum())

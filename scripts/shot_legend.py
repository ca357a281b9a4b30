"""The Segment dock's class legend after a 3-class semantic prediction (docs/images/legend.png).

Run with the screenshot tool, which docks the plugin's widgets and gives ``viewer``::

    ../shared/tools/napari-shot docs/images/legend.png scripts/shot_legend.py

The model is new and untrained (classes background, nucleus, membrane): the labels are noise, the
point is the legend, whose names come from the model and colours from the labels layer.
"""

import os
import tempfile
import time
from pathlib import Path

from napari.qt import get_qapp

from napari_unet._widgets import SegmentWidget
from napari_unet.core.checkpoint.new_model import NewModelConfig, new_checkpoint
from napari_unet.core.synthetic import synthetic_nuclei

viewer = globals()["viewer"]
os.environ["NAPARI_UNET_CONFIG_DIR"] = tempfile.mkdtemp()
names = ("background", "nucleus", "membrane")
model = new_checkpoint(
    NewModelConfig(task="semantic", class_names=names), Path(tempfile.mkdtemp()) / "three.pt"
)
viewer.add_image(synthetic_nuclei((256, 256))[0], name="nuclei")
docks = [dock.widget() for dock in viewer.window._dock_widgets.values()]
panel = next(w for w in docks if isinstance(w, SegmentWidget)).segment
panel.form.model.add_checkpoint(str(model))
app = get_qapp()
start = time.time()
while time.time() - start < 3:
    app.processEvents()
panel.run_button.click()
while (
    panel.worker is not None or "Predicted" not in panel.status.text()
) and time.time() - start < 60:
    app.processEvents()
    time.sleep(0.05)

"""The Fine-tune dock's "New model" section after creating a 3-class UNet++ for a 2-channel
image opened as one layer (docs/images/new_model.png).

Run with the screenshot tool, which docks the plugin's widgets and gives ``viewer``::

    ../shared/tools/napari-shot docs/images/new_model.png scripts/shot_new_model.py
"""

import os
import tempfile
from pathlib import Path

import numpy as np
from napari.qt import get_qapp

from napari_unet._widgets import FinetuneWidget
from napari_unet.core.io.images import write_tiff
from napari_unet.core.synthetic import synthetic_nuclei

viewer = globals()["viewer"]
os.environ["NAPARI_UNET_CONFIG_DIR"] = tempfile.mkdtemp()
folder = Path(tempfile.mkdtemp())
nuclei = synthetic_nuclei((256, 256))[0].astype(np.float32)
write_tiff(folder / "two-channel.tif", np.stack([nuclei, nuclei[::-1]]), axes="CYX")
viewer.open(str(folder / "two-channel.tif"), plugin="napari-unet-loop")
for dock in viewer.window._dock_widgets.values():
    if isinstance(dock.widget(), FinetuneWidget):
        dock.raise_()
        section = dock.widget().finetune.new_model
section.follow_image()
section.section.toggle.click()
section.arch.setCurrentIndex(section.arch.findData("unetpp"))
section.classes.setText("background, nucleus, membrane")
section.create_button.click()
app = get_qapp()
for _ in range(10):
    app.processEvents()

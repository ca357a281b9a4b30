"""docs/images/segment_zflip.png: the Segment dock's Advanced section with a 2.5-D model (each
slice seen with its Z neighbours) chosen: "Average with Z reversed" is offered (issue 20; greyed
for a 2-D model, its tooltip saying the 2x time). The model is an untrained 2.5-D U-Net (only
its settings are shown); with ``SHOT_2D=1`` it is a 2-D one (the box greyed)::

    ../shared/tools/napari-shot docs/images/segment_zflip.png scripts/shot_segment_zflip.py
"""

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from napari.qt import get_qapp
from qtpy.QtWidgets import QTabBar

from napari_unet._widgets import SegmentWidget
from napari_unet.core.checkpoint.format import save_checkpoint
from napari_unet.core.models import build_model
from napari_unet.core.synthetic import synthetic_nuclei

viewer = globals()["viewer"]  # given by napari-shot
torch.manual_seed(0)
context = 0 if os.environ.get("SHOT_2D") else 1  # Z neighbours on each side
net = build_model("unet", depth=2, base_channels=8, in_channels=2 * context + 1, out_channels=3)
checkpoint = str(
    save_checkpoint(
        Path(tempfile.mkdtemp()) / ("nuclei-25d.pt" if context else "nuclei-2d.pt"),
        net,
        task="instances",
        tile_shape=(256, 256),
        overlap=16,
        provenance={"context_slices": context} if context else {},
    )
)
stack = np.stack([synthetic_nuclei((256, 256), seed=s)[0] for s in range(9)])
viewer.add_image(stack, name="nuclei stack")
docks = viewer.window._dock_widgets.values()
qt_dock = next(d for d in docks if isinstance(d.widget(), SegmentWidget))
panel = qt_dock.widget().segment
panel.form.model.add_checkpoint(checkpoint)
app = get_qapp()
start = time.time()
while checkpoint not in panel.model_dims and time.time() - start < 60:
    app.processEvents()  # the model's defaults arrive from a worker
    time.sleep(0.05)
panel.form.advanced_toggle.click()
qt_dock.raise_()
for bar in viewer.window._qt_window.findChildren(QTabBar):  # its tab in front of the others
    for index in range(bar.count()):
        if bar.tabText(index).startswith("U-Net Segment"):
            bar.setCurrentIndex(index)
box = panel.form.fields["z_flip"].native
print("z_flip enabled:", box.isEnabled(), "| tooltip:", box.toolTip())
for _ in range(20):
    app.processEvents()
    time.sleep(0.05)

"""docs/images/finetune_flipped.png: the Fine-tune dock after a real fine-tune of the built-in
``fluo-nuclei`` on a stained bright-field tile (dark nuclei on a bright background): the pool line
says the intensities were flipped for the start model and why (issue 17). With ``SHOT_ZOOM=N``
the tile is enlarged N times first (nuclei of about 130 px at N = 6, as whole cells): the line
then also says the net sees the images smaller (docs/images/finetune_scale.png). With
``SHOT_SET=isbi2012_cells`` the image is an ISBI 2012 EM slice whose cells are the instances
(membranes background): the line says the border weights are off (docs/images/finetune_gaps.png).

The trainer runs for real (``run_trainer`` in this process, 12 steps on the CPU); its events then
go through the dock's real ``TrainerClient`` dispatch, as they do from the trainer process::

    ../shared/tools/napari-shot docs/images/finetune_flipped.png scripts/shot_finetune_flipped.py
    SHOT_ZOOM=6 ../shared/tools/napari-shot docs/images/finetune_scale.png \
        scripts/shot_finetune_flipped.py
    SHOT_SET=isbi2012_cells ../shared/tools/napari-shot docs/images/finetune_gaps.png \
        scripts/shot_finetune_flipped.py
"""

import os
import queue
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QTabBar
from skimage.io import imread
from skimage.transform import resize

from napari_unet._widgets import FinetuneWidget
from napari_unet._widgets.loop_state import LoopState
from napari_unet.session import Session
from napari_unet.trainer.events import FinetuneRequest, PoolChanged
from napari_unet.trainer.process import run_trainer

viewer = globals()["viewer"]  # given by napari-shot
app = napari.qt.get_qapp()
shared = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if os.environ.get("SHOT_SET") == "isbi2012_cells":  # EM: each region of cell interior a cell
    from scipy import ndimage

    image = imread(shared / "isbi2012" / "images" / "00.png")
    labels = ndimage.label(imread(shared / "isbi2012" / "labels" / "00.png") == 255)[0]
    labels, name = labels.astype(np.uint16), "EM 00"
else:
    image = imread(shared / "dsb2018_stained_bf" / "images" / "013.png")[..., :3]
    labels = imread(shared / "dsb2018_stained_bf" / "labels" / "013.png").astype(np.uint16)
    name = "stained 013"
zoom = int(os.environ.get("SHOT_ZOOM", "1"))
if zoom > 1:  # objects of whole-cell size: bicubic image, nearest labels
    big = (image.shape[0] * zoom, image.shape[1] * zoom)
    image = resize(image, big, order=3, preserve_range=True).clip(0, 255).astype(np.uint8)
    labels = labels.repeat(zoom, axis=0).repeat(zoom, axis=1)
root = Path(tempfile.mkdtemp()) / "stained.unet"
session = Session.create(root, name="stained")
axes = "YXC" if image.ndim == 3 else "YX"
image_id = session.add_image(name, axes=axes, image=image, task="instances")
session.save_slice(
    image_id, 0, labels=labels, snapshot=labels, reviewed=np.ones(labels.shape, bool)
)
viewer.add_image(image, name=name, rgb=image.ndim == 3)
viewer.add_labels(labels, name=f"{name} labels", opacity=0.4)
LoopState.for_viewer(viewer).set_session(session)
qt_dock = next(
    d for d in viewer.window._dock_widgets.values() if isinstance(d.widget(), FinetuneWidget)
)
dock = qt_dock.widget()
panel = dock.finetune
for _ in range(40):
    app.processEvents()
    time.sleep(0.05)
train = {"steps": 12, "val_every": 4, "device": "cpu"}
request = FinetuneRequest(
    session=str(root), start_from="fluo-nuclei", train_config=train, num_threads=1, nice=0
)
events: queue.Queue = queue.Queue()
run_trainer(request.to_dict(), events, queue.Queue())
seen = [events.get_nowait() for _ in range(events.qsize())]
client = panel.client
client.running_changed.emit(True)
pool = next(e for e in seen if isinstance(e, PoolChanged))
starting = zoom > 1 or bool(os.environ.get("SHOT_SET"))  # shown as training starts
for event in seen[: seen.index(pool) + 1] if starting else seen:
    client._dispatch(event)
client.running_changed.emit(starting)
print("pool:", pool.fingerprint)
print("status:", panel.status.text())
dock._scroll.ensureWidgetVisible(panel.status)
qt_dock.raise_()
for bar in viewer.window._qt_window.findChildren(QTabBar):  # its tab in front of the others
    for index in range(bar.count()):
        if bar.tabText(index).startswith("U-Net Fine-tune"):
            bar.setCurrentIndex(index)
for _ in range(20):
    app.processEvents()
    time.sleep(0.05)

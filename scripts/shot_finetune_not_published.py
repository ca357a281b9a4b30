"""docs/images/finetune_not_published.png: the Fine-tune dock's status line after a fine-tune
whose best model was not published (issue 17), at the dock's default width.

The trainer's real events go through the real ``TrainerClient`` dispatch (no trainer process: a
run of a few steps, its validations, then the ``VersionSkipped`` the trainer's ``ParentGuard``
sends and the ``TrainerFinished``). With ``SHOT_PUBLISHED=1`` the run publishes a version instead
(the line right after it: its held-back score against the parent's); with ``SHOT_NARROW=1`` the
dock is at its minimum width::

    ../shared/tools/napari-shot docs/images/finetune_not_published.png \
        scripts/shot_finetune_not_published.py
"""

import os
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QTabBar

from napari_unet._widgets import FinetuneWidget
from napari_unet._widgets.loop_state import LoopState
from napari_unet.core.synthetic import synthetic_nuclei
from napari_unet.core.training.events import StepEvent, ValidationEvent
from napari_unet.session import Session
from napari_unet.trainer.events import TrainerFinished, VersionPublished
from napari_unet.trainer.guard import VersionSkipped, skip_message

viewer = globals()["viewer"]  # given by napari-shot
app = napari.qt.get_qapp()
root = Path(tempfile.mkdtemp()) / "loop.unet"
image, labels = synthetic_nuclei((256, 256), n_nuclei=25, seed=1)
session = Session.create(root, name="nuclei")
image_id = session.add_image("nuclei", axes="YX", image=np.asarray(image), task="instances")
labels = np.asarray(labels, np.uint16)
session.save_slice(
    image_id, 0, labels=labels, snapshot=labels, reviewed=np.ones(labels.shape, bool)
)
viewer.add_image(np.asarray(image), name="nuclei")
viewer.add_labels(labels, name="nuclei labels", opacity=0.4)
LoopState.for_viewer(viewer).set_session(session)
qt_dock = next(
    d for d in viewer.window._dock_widgets.values() if isinstance(d.widget(), FinetuneWidget)
)
dock = qt_dock.widget()
if os.environ.get("SHOT_NARROW"):  # the dock at its minimum width
    viewer.window._qt_window.resizeDocks([qt_dock], [dock.minimumWidth()], Qt.Horizontal)
panel = dock.finetune
for _ in range(40):
    app.processEvents()
    time.sleep(0.05)
client = panel.client
client.running_changed.emit(True)  # as the client does when its process starts
panel.status.setText("Starting the trainer…")
for step in range(0, 41, 2):
    client._dispatch(StepEvent(step, 0.9 * np.exp(-step / 25) + 0.05, 1e-3, 40.0, step * 0.3))
for step, score in ((0, 0.81), (20, 0.84), (40, 0.86)):
    client._dispatch(ValidationEvent(step, {"score": score}, step > 0))
if os.environ.get("SHOT_PUBLISHED"):
    metrics = {
        "score": 0.86,
        "held_back_score": 0.7,
        "held_back_metric": "AP@0.5",
        "parent_held_back_score": 0.65,
    }
    client._dispatch(VersionPublished("v002", str(root / "v002.pt"), metrics, 40))
else:  # the run ends: its last refusal says why nothing was published
    client._dispatch(VersionSkipped(40, 0.61, 0.65, skip_message(0.61, 0.65, "AP@0.5")))
    client.running_changed.emit(False)
    client._dispatch(TrainerFinished("steps", 40, None))
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

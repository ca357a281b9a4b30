"""docs/images/finetune_start.png: an RGB stained-nuclei session with instance labels and no
model of its own; the Fine-tune dock pre-selects fluo-nuclei, adapts it to 3 channels and uses
lr 1e-3 (issue 17). ``../shared/tools/napari-shot docs/images/finetune_start.png THIS.py``."""

import tempfile
import time
from pathlib import Path

import napari
import numpy as np

from napari_unet._widgets.loop_state import LoopState
from napari_unet.core.synthetic import synthetic_nuclei
from napari_unet.session import Session

viewer = globals()["viewer"]  # given by napari-shot
root = Path(tempfile.mkdtemp()) / "loop.unet"
pairs = [synthetic_nuclei((256, 256), n_nuclei=25, seed=s) for s in (1, 2)]
grey = np.stack([np.asarray(i, np.float32) for i, _ in pairs])
grey = (grey - grey.min()) / (np.ptp(grey) + 1e-6)
rgb = (
    (np.stack([1 - grey, 0.8 - grey / 2, 1 - grey / 3], axis=-1) * 255)
    .clip(0, 255)
    .astype(np.uint8)
)
labels = np.stack([np.asarray(lab, np.uint16) for _, lab in pairs])
session = Session.create(root, name="stained")
image_id = session.add_image("stained cells", axes="ZYXC", image=rgb, task="instances")
for s in range(2):
    session.save_slice(
        image_id, s, labels=labels[s], snapshot=labels[s], reviewed=np.ones(labels[s].shape, bool)
    )
viewer.add_image(rgb, name="stained cells", rgb=True)
viewer.add_labels(labels, name="stained cells labels", opacity=0.4)
LoopState.for_viewer(viewer).set_session(session)
app = napari.qt.get_qapp()
end = time.time() + 20
while time.time() < end:
    app.processEvents()
    time.sleep(0.05)

"""The 3-D view of a 3-D model's instance labels (docs/images/volume3d.png).

Run with the screenshot tool, which docks the plugin's widgets and gives ``viewer``::

    ../shared/tools/napari-shot docs/images/volume3d.png scripts/shot_volume3d.py

A small ``unet3d_aniso`` (voxel 1.75 x 0.8 x 0.8 um) learns the nuclei of embryo stack ``00`` of
``../shared/data/embryo_nuclei3d`` from 3 annotated XY slices only (z = 12, 22, 33; every other
voxel ignored) with the product's training loop (400 steps on 8x64x64 patches, a few minutes on
a CPU); the Segment dock then predicts stack ``01`` (never seen) as one volume in 3-D with its
3-D watershed, and the viewer shows the instance labels in its 3-D view (ndisplay=3). Last run
(2026-12-06): 400 steps in 242 s on this 2-core CPU (shared); 128 objects for the 16 annotated
nuclei, the extra ones specks of a few voxels at the nuclei's edges (the dock's default minimum
size is 0; "Objects < N px" removes them); the earlier binary fit of this script merged
neighbouring nuclei into one object.
"""

import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from napari.qt import get_qapp

from napari_unet._widgets import SegmentWidget
from napari_unet.core.models import build_model

viewer = globals()["viewer"]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "embryo_nuclei3d"
VOXEL = (1.75, 0.8, 0.8)
SLICES = (12, 22, 33)
STEPS = 400


def sparse_fit(image: np.ndarray, labels: np.ndarray, folder: Path) -> Path:
    """A 3-class (background, interior, boundary) ``unet3d_aniso`` trained by the product's own
    training loop (:func:`napari_unet.core.training.loop.train`, as ``train --model unet3d_aniso``)
    on :data:`SLICES` of one volume, every other voxel unannotated; returns the published
    checkpoint."""
    from napari_unet.core.inference.normalization import NormalizationConfig, normalize
    from napari_unet.core.training.config import TrainConfig
    from napari_unet.core.training.items import TrainingItem
    from napari_unet.core.training.loop import train

    torch.manual_seed(0)
    model = build_model("unet3d_aniso", depth=3, base_channels=8, out_channels=3, voxel_size=VOXEL)
    mask = np.zeros(image.shape, bool)
    mask[list(SLICES)] = True
    flat = normalize(image.reshape(1, -1, image.shape[-1]), NormalizationConfig())
    item = TrainingItem(flat.reshape(image.shape)[None], labels, mask, "embryo 00")
    config = TrainConfig(
        task="instances",
        steps=STEPS,
        batch_size=2,
        patch_shape=(8, 64, 64),
        val_fraction=0.0,
        seed=0,
        checkpoint_dir=str(folder),
    )
    start = time.time()
    result = train(model, [item], config)
    print(f"trained {result.steps} steps on slices {SLICES} in {time.time() - start:.0f} s")
    return result.best_path


train = tifffile.imread(DATA / "images" / "00.tif")
checkpoint = sparse_fit(
    train, tifffile.imread(DATA / "labels" / "00.tif"), Path(tempfile.mkdtemp())
)
viewer.add_image(tifffile.imread(DATA / "images" / "01.tif"), name="embryo 01", scale=VOXEL)
docks = [dock.widget() for dock in viewer.window._dock_widgets.values()]
panel = next(w for w in docks if isinstance(w, SegmentWidget)).segment
panel.form.model.add_checkpoint(str(checkpoint))
app = get_qapp()
start = time.time()
while str(checkpoint) not in panel.model_dims and time.time() - start < 30:
    app.processEvents()  # the model's defaults arrive from a worker
panel.form.fields["output"].value = "instances"
panel.form.scope.setCurrentIndex(panel.form.scope.findData("stack"))
panel.run_button.click()
while (panel.worker is not None or "Predicted" not in panel.status.text()) and (
    time.time() - start < 300
):
    app.processEvents()
    time.sleep(0.05)
print("status:", panel.status.text())
labels = viewer.layers["embryo 01 labels"]
truth = tifffile.imread(DATA / "labels" / "01.tif")
print("objects:", len(np.unique(labels.data)) - 1, "of", len(np.unique(truth)) - 1, "annotated")
viewer.layers["embryo 01"].visible = False
viewer.dims.ndisplay = 3
viewer.reset_view()
viewer.camera.angles = (15, 35, 70)  # after reset_view, which resets the angles too

"""The 3-D view of a 3-D model's instance labels (docs/images/volume3d.png).

Run with the screenshot tool, which docks the plugin's widgets and gives ``viewer``::

    ../shared/tools/napari-shot docs/images/volume3d.png scripts/shot_volume3d.py

A small ``unet3d_aniso`` (voxel 1.75 x 0.8 x 0.8 um) learns the nuclei of embryo stack ``00`` of
``../shared/data/embryo_nuclei3d`` from 3 annotated XY slices only (z = 12, 22, 33; every other
voxel ignored; 120 steps on 16x96x96 patches, a minute or two on a CPU); the Segment dock then
predicts stack ``01`` (never seen) as one volume in 3-D, and the viewer shows the instance
labels in its 3-D view (ndisplay=3).
"""

import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from napari.qt import get_qapp

from napari_unet._widgets import SegmentWidget
from napari_unet.core.checkpoint.format import save_checkpoint
from napari_unet.core.models import build_model

viewer = globals()["viewer"]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "embryo_nuclei3d"
VOXEL = (1.75, 0.8, 0.8)
SLICES = (12, 22, 33)
STEPS = 120


def sparse_fit(image: np.ndarray, labels: np.ndarray, path: Path) -> Path:
    """A binary unet3d_aniso fitted on :data:`SLICES` of one volume: patches of 16x96x96
    holding an annotated slice at any depth, BCE on the annotated slices only."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model("unet3d_aniso", depth=1, base_channels=8, out_channels=1, voxel_size=VOXEL)
    low, high = np.percentile(image, (1.0, 99.8))
    x = torch.from_numpy(((image - low) / (high - low)).astype(np.float32))[None, None]
    y = torch.from_numpy((labels > 0).astype(np.float32))[None, None]
    mask = torch.zeros_like(y)
    mask[:, :, list(SLICES)] = 1.0
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    start = time.time()
    for _ in range(STEPS):
        # the annotated slice anywhere in the patch, so that the net learns patch (and volume) edges
        z = int(np.clip(rng.choice(SLICES) - rng.integers(0, 16), 0, image.shape[0] - 16))
        yy, xx = (int(rng.integers(0, n - 96)) for n in image.shape[1:])
        box = (slice(None), slice(None), slice(z, z + 16), slice(yy, yy + 96), slice(xx, xx + 96))
        optimiser.zero_grad()
        weight = mask[box]
        loss = (
            torch.nn.functional.binary_cross_entropy_with_logits(
                model(x[box]), y[box], weight=weight, reduction="sum"
            )
            / weight.sum()
        )
        loss.backward()
        optimiser.step()
    print(
        f"fitted {STEPS} steps on slices {SLICES} in {time.time() - start:.0f} s: {loss.item():.3f}"
    )
    model.eval()
    return save_checkpoint(path, model, task="binary", tile_shape=(32, 128, 128), overlap=8)


train = tifffile.imread(DATA / "images" / "00.tif")
checkpoint = sparse_fit(
    train, tifffile.imread(DATA / "labels" / "00.tif"), Path(tempfile.mkdtemp()) / "embryo3d.pt"
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

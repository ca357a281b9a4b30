"""The Segment dock running a restoration model (docs/images/restoration.png).

Run with the screenshot tool, which docks the plugin's widgets and gives ``viewer``::

    ../shared/tools/napari-shot docs/images/restoration.png scripts/shot_restore.py

Trains a small denoiser for 150 steps on noisy copies of an ISBI crop (benchmarks/bench_restore.py),
restores a held-out noisy image from the Segment dock and shows noisy, restored and clean in a grid.
"""

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from napari.qt import get_qapp

from napari_unet._widgets import SegmentWidget

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_restore as bench

viewer = globals()["viewer"]
setup = dataclasses.replace(bench.RestoreSetup(), crop=256, steps=150, base_channels=8, depth=2)
train, held = bench.clean_images(setup)
checkpoint, _ = bench.train_denoiser(train, setup, Path(tempfile.mkdtemp()))
viewer.add_image(bench.noisy_copy(held, setup.sigma, 1000), name="EM noisy")
docks = [dock.widget() for dock in viewer.window._dock_widgets.values()]
panel = next(w for w in docks if isinstance(w, SegmentWidget)).segment
panel.form.model.add_checkpoint(str(checkpoint))
app = get_qapp()
start = time.time()
while time.time() - start < 3:  # the model's defaults arrive from a worker
    app.processEvents()
panel.run_button.click()
while (
    panel.worker is not None or "Predicted" not in panel.status.text()
) and time.time() - start < 60:
    app.processEvents()
    time.sleep(0.05)
print("status:", panel.status.text())
viewer.add_image(held, name="EM clean (reference)")
viewer.grid.enabled = True
viewer.reset_view()

"""Make the README screenshot of the U-Net Fine-tune dock while keep-learning runs for real.

Usage::

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshot_finetune.py \\
        docs/images/finetune.png [--seconds 20]

A session with two synthetic nuclei slices (one fully reviewed, one reviewed on its left part) is
fine-tuned from the built-in ``fluo-nuclei`` model in keep-learning mode (patch 96, batch 2, one
trainer thread); the screenshot is taken ``--seconds`` after Start, then the trainer is stopped.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("screenshot_finetune")


def _session(folder: Path) -> tuple:
    """``(session, image id, (2, 256, 256) image, labels)``: two synthetic nuclei slices, one fully
    reviewed, one reviewed on its left part, in a new session under ``folder``."""
    from napari_unet.core.synthetic import synthetic_nuclei
    from napari_unet.session import Session

    pairs = [synthetic_nuclei((256, 256), n_nuclei=30, seed=s) for s in (3, 4)]
    image = np.stack([np.asarray(i, np.float32) for i, _ in pairs])
    labels = np.stack([np.asarray(lab, np.uint16) for _, lab in pairs])
    session = Session.create(folder / "nuclei.unet", name="nuclei")
    image_id = session.add_image("nuclei", axes="ZYX", image=image, task="instances")
    left = np.zeros((256, 256), bool)
    left[:, :200] = True
    full = np.ones((256, 256), bool)
    session.save_slice(image_id, 0, labels=labels[0], snapshot=labels[0], reviewed=full)
    session.save_slice(image_id, 1, labels=labels[1], snapshot=labels[1], reviewed=left)
    return session, image_id, image, labels


def _add_labels(viewer, labels: np.ndarray, image_id: str) -> None:
    """The plugin's labels layer of ``nuclei`` (as a fluo-nuclei prediction, all reviewed)."""
    tag = {
        "role": "labels",
        "image_layer": "nuclei",
        "task": "instances",
        "output": "instances",
        "model": "fluo-nuclei",
        "snapshot": labels.copy(),
        "reviewed": np.ones(labels.shape, bool),
        "predicted": [0, 1],
        "session_image_id": image_id,
    }
    viewer.add_labels(
        labels.copy(), name="nuclei labels", metadata={"napari_unet": tag}, opacity=0.45
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="PNG to write (e.g. docs/images/finetune.png)")
    parser.add_argument("--seconds", type=float, default=20.0, help="training time before the shot")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import napari

    from napari_unet._widgets import FinetuneWidget
    from napari_unet._widgets.loop_state import LoopState

    with tempfile.TemporaryDirectory() as tmp:
        session, image_id, image, labels = _session(Path(tmp))
        viewer = napari.Viewer(title="napari-unet-loop")
        app = napari.qt.get_qapp()
        viewer.window.resize(1500, 1000)
        viewer.add_image(image, name="nuclei", colormap="gray")
        _add_labels(viewer, labels, image_id)
        LoopState.for_viewer(viewer).set_session(session)
        widget = FinetuneWidget(viewer)
        viewer.window.add_dock_widget(widget, name="U-Net Fine-tune", area="right")
        panel, form = widget.finetune, widget.finetune.form
        form.start.setCurrentIndex(form.start.findData("builtin:fluo-nuclei"))
        form.patch.setValue(96)
        form.batch.setValue(2)
        form.threads.setValue(1)
        form.advanced_section.toggle.setChecked(True)
        form.keep_learning.setChecked(True)

        def pump(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                app.processEvents()
                time.sleep(0.02)

        pump(3)
        panel.start()
        pump(args.seconds)
        logger.info("%s | %s", panel.status.text(), panel.timing.text())
        args.output.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(args.output), canvas_only=False)
        panel.stop()
        pump(4)
        viewer.close()
    logger.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

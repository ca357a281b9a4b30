"""The first-ten-minutes walkthrough, screenshot by screenshot, with the default dock layout.

Usage::

    NAPARI_UNET_DATA_DIR=../shared/data xvfb-run -a -s "-screen 0 1600x1000x24" \\
        python scripts/screenshot_walkthrough.py docs/images/walkthrough

Both docks are opened the way the Plugins menu opens them (they join as tabs), in a 1600x1000
window, and nothing touches a splitter. Steps: open the DSB2018 sample (the Segment dock proposes
``fluo-nuclei``), Run; open the synthetic nuclei sample and Run it too; select the DSB labels
layer, paint one stroke, correct the rest (the ground truth is written in as a user's thorough
correction would be), Mark reviewed, Create session; in the Fine-tune tab, Start (200 steps,
patch 128, batch 2, one trainer thread, learning rate 3e-4, so the run takes about two minutes);
versions are published as they beat the start model on the held-back tile (at 60 steps none did:
the built-in already scores AP@0.5 1.0 there) and the synthetic image's uncorrected prediction
refreshes with the newest. Writes ``PREFIX-1-predicted.png`` ... ``PREFIX-5-refreshed.png``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("screenshot_walkthrough")
PLUGIN = "napari-unet-loop"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefix", type=Path, help="output prefix, e.g. docs/images/walkthrough")
    parser.add_argument("--steps", type=int, default=200, help="fine-tuning steps")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.prefix.parent.mkdir(parents=True, exist_ok=True)

    import napari

    viewer = napari.Viewer(title="napari-unet-loop")
    app = napari.qt.get_qapp()
    viewer.window._qt_window.resize(1600, 1000)  # the full 1600x1000 screen

    def pump(seconds: float = 0.3) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)

    def wait(condition, what: str, timeout: float = 180.0) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError(f"timed out waiting for {what}")
            pump(0.1)

    def shot(step: int, name: str) -> None:
        pump(0.5)
        path = args.prefix.with_name(f"{args.prefix.name}-{step}-{name}.png")
        viewer.screenshot(str(path), canvas_only=False)
        logger.info("wrote %s", path)

    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "U-Net Segment")
    finetune_dock, finetune = viewer.window.add_plugin_dock_widget(PLUGIN, "U-Net Fine-tune")
    pump(1)
    predict, correct, sessions = segment.panels[0], segment.panels[1], segment.panels[2]
    segment_dock = segment.dock_widget()

    # 1. a sample, the proposed model, Run
    viewer.open_sample(PLUGIN, "dsb2018")
    viewer.reset_view()
    pump(1)
    logger.info("model: %s | %s", predict.form.model.currentText(), predict.status.text())
    predict.run()
    wait(lambda: predict.worker is None, "the DSB prediction")
    dsb_labels = viewer.layers["dsb2018 nuclei labels"]
    dsb_labels.opacity = 0.5

    # a second image, predicted and left uncorrected
    viewer.open_sample(PLUGIN, "synthetic_nuclei")
    combo = predict.form.image
    combo.setCurrentIndex(combo.findText("nuclei"))
    predict.run()
    wait(lambda: predict.worker is None, "the synthetic prediction")
    viewer.layers["nuclei"].visible = False
    viewer.layers["nuclei labels"].visible = False
    assert correct.labels_layer is viewer.layers["nuclei labels"]  # follows the new prediction
    viewer.layers.selection.active = dsb_labels  # back to the DSB labels: the panel follows
    combo.setCurrentIndex(combo.findText("dsb2018 nuclei"))
    viewer.reset_view()
    shot(1, "predicted")

    # 2. paint, correct, Mark reviewed, Create session
    stroke = correct.select_next_label()
    dsb_labels.brush_size = 12
    for x in range(600, 660, 4):
        dsb_labels.paint((470, x), stroke)
    truth = viewer.layers["dsb2018 nuclei ground truth"].data
    wrong = np.nonzero(dsb_labels.data != truth)
    dsb_labels.data_setitem(wrong, truth[wrong])  # the rest of a thorough correction
    correct.mark_slice()
    folder = Path(tempfile.mkdtemp(prefix="walkthrough-")) / "dsb2018.unet"
    sessions.create_session(folder)
    pump(2)
    shot(2, "reviewed")

    # 3. Fine-tune: its tab, Start
    finetune_dock.raise_()
    panel = finetune.finetune
    form = panel.form
    wait(lambda: panel.start_button.isEnabled(), "the training data summary", 30)
    logger.info("start from: %s", form.start.currentText())
    form.budget_kind.setCurrentIndex(form.budget_kind.findData("steps"))
    form.budget.setValue(args.steps)
    form.lr.setText("3e-4")
    form.patch.setValue(128)
    form.batch.setValue(2)
    form.threads.setValue(1)
    panel.start()
    wait(lambda: "Step" in panel.status.text(), "the first validation", 180)
    shot(3, "training")

    # 4. the version, and the refreshed prediction of the uncorrected image
    wait(lambda: not panel.client.running, "the end of the run", 300)
    pump(2)
    logger.info("status: %s", panel.status.text())
    shot(4, "version")
    segment_dock.raise_()
    viewer.layers["dsb2018 nuclei"].visible = False
    viewer.layers["dsb2018 nuclei labels"].visible = False
    for name in ("dsb2018 nuclei labels reviewed",):
        if name in viewer.layers:
            viewer.layers[name].visible = False
    viewer.layers["nuclei"].visible = True
    viewer.layers["nuclei labels"].visible = True
    combo.setCurrentIndex(combo.findText("nuclei"))
    repredictor = predict.hot_swap.repredictor
    wait(lambda: not repredictor.running, "the refresh", 120)
    viewer.reset_view()
    logger.info("segment status: %s", predict.status.text())
    shot(5, "refreshed")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Issue 18 in pictures: a version refreshes one 2-D image around the user's work; the eraser.

Usage::

    NAPARI_UNET_DATA_DIR=../shared/data xvfb-run -a -s "-screen 0 1600x1000x24" \\
        python scripts/screenshot_protect.py docs/images/protect

On the DSB2018 sample, in a session whose first version v001 predicts nothing (an untrained
start: a constant-background net), the user corrects two regions (yellow boxes): paints the
nuclei of region A (those objects are the user's), paints region B and marks it reviewed (the
whole box is the user's). The second version v002 (the built-in
``fluo-nuclei``, copied into the session) is published with "Follow the newest version" on:
the rest of the image refreshes in the background; the painted objects and the reviewed box
stay byte-identical. Then the
reviewed eraser un-marks part of region B. Writes ``PREFIX-1-corrected.png``,
``PREFIX-2-refreshed.png`` and ``PREFIX-3-eraser.png``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("screenshot_protect")
PLUGIN = "napari-unet-loop"


def background_checkpoint(path: Path) -> Path:
    """A 3-class instance U-Net that predicts background everywhere (an untrained start)."""
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    model = build_model("unet", depth=2, base_channels=4, in_channels=1, out_channels=3)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([10.0, -10.0, -10.0]))
    return save_checkpoint(path, model, task="instances", tile_shape=(256, 256), overlap=16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefix", type=Path, help="output prefix, e.g. docs/images/protect")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.prefix.parent.mkdir(parents=True, exist_ok=True)

    import napari

    from napari_unet._widgets.loop_state import LoopState
    from napari_unet.core.checkpoint.format import builtin_checkpoints
    from napari_unet.session import Session

    viewer = napari.Viewer(title="napari-unet-loop")
    app = napari.qt.get_qapp()
    viewer.window._qt_window.resize(1600, 1000)

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

    tmp = Path(tempfile.mkdtemp(prefix="protect-"))
    session = Session.create(tmp / "dsb.unet")
    session.add_version(background_checkpoint(tmp / "start.pt"), parent="scratch")
    loop = LoopState.for_viewer(viewer)
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "U-Net Segment")
    pump(1)
    predict, correct, sessions = segment.panels[0], segment.panels[1], segment.panels[2]
    sessions.open_session(session.root)
    viewer.open_sample(PLUGIN, "dsb2018")
    viewer.layers["dsb2018 nuclei ground truth"].visible = False
    viewer.reset_view()
    loop.set_active_version("v001")
    wait(lambda: not predict.loop.jobs.running(predict._info_key), "the model's defaults")
    pump(0.5)
    predict.run()
    wait(lambda: predict.worker is None, "the v001 prediction")
    labels = viewer.layers["dsb2018 nuclei labels"]
    truth = viewer.layers["dsb2018 nuclei ground truth"].data
    height, width = labels.data.shape
    boxes = {
        "A": (
            slice(height // 8, height // 8 + height // 4),
            slice(width // 8, width // 8 + width // 4),
        ),
        "B": (
            slice(height // 2, height // 2 + height // 4),
            slice(width // 2, width // 2 + width // 3),
        ),
    }
    for ys, xs in boxes.values():  # the user paints the nuclei of both regions
        part = np.zeros(labels.data.shape, bool)
        part[ys, xs] = True
        where = np.nonzero(part & (truth > 0))
        labels.data_setitem(where, truth[where].astype(labels.data.dtype))
    ys, xs = boxes["B"]
    correct.set_labels_layer(labels)
    shapes = correct.show_review_regions()
    shapes.add_rectangles(np.array([[ys.start, xs.start], [ys.stop - 1, xs.stop - 1]]))
    correct.mark_regions()  # region B reviewed
    outline = viewer.add_shapes(
        [np.array([[s.start, x.start], [s.stop, x.stop]]) for s, x in boxes.values()],
        shape_type="rectangle",
        edge_color="yellow",
        face_color=[0, 0, 0, 0],
        edge_width=3,
        name="your corrections",
    )
    viewer.layers.selection.active = labels
    before = np.array(labels.data)
    shot(1, "corrected")

    v002 = session.add_version(builtin_checkpoints()["fluo-nuclei"], parent="v001")
    loop.add_version(v002.id)  # published; "Follow the newest" is on
    repredictor = predict.hot_swap.repredictor
    wait(lambda: not repredictor.running, "the background refresh")
    data = np.asarray(labels.data)
    painted = before != 0
    logger.info("painted objects identical: %s", np.array_equal(data[painted], before[painted]))
    ys, xs = boxes["B"]
    logger.info(
        "reviewed region B byte-identical: %s", np.array_equal(data[ys, xs], before[ys, xs])
    )
    logger.info("changed elsewhere: %d pixels", int((data != before).sum()))
    logger.info("%d ids (%s)", len(np.unique(data)), labels.metadata["napari_unet"]["output"])
    logger.info("status: %s", predict.status.text())
    shot(2, "refreshed")

    correct.erase_button.setChecked(True)  # the reviewed eraser
    shapes = correct.show_review_regions()
    half = (ys.start + ys.stop) // 2
    shapes.add_rectangles(np.array([[half, xs.start], [ys.stop - 1, xs.stop - 1]]))
    correct.mark_regions()
    outline.visible = True
    logger.info("eraser: %s", correct.message.text())
    shot(3, "eraser")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Make the README screenshot: napari with the U-Net Segment widget after a prediction.

Usage (under Xvfb, with a screen large enough for the whole window)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshot.py docs/images/segment.png \
        [--checkpoint MODEL.pt] [--size 512]

The model: ``--checkpoint`` (a .pt path or a built-in name such as ``fluo-nuclei``) if given,
else a tiny U-Net trained for 150 quick steps on two other synthetic nuclei images
(``napari_unet.core.training.loop``, 1-4 minutes on 2 busy CPU cores), else random weights (a
useless picture; a warning says so). The image is the synthetic nuclei sample. The built-in
checkpoints are not the default because the shipped ones may be placeholders; pass ``--checkpoint
fluo-nuclei`` once that model meets its card's targets.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger("screenshot")


def pick_checkpoint(folder: Path, given: str | None) -> Path:
    """The checkpoint to show (see the module docstring)."""
    from napari_unet.core.checkpoint.format import builtin_checkpoints

    if given is not None:  # a path, or the name of a built-in model
        return builtin_checkpoints().get(str(given), Path(given))
    try:
        return quick_trained(folder)
    except ImportError as err:
        logger.warning("no training engine (%s): the screenshot uses random weights", err)
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=8, in_channels=1, out_channels=3)
    return save_checkpoint(folder / "random.pt", model, task="instances")


def quick_trained(folder: Path) -> Path:
    """A small instance U-Net trained 150 steps on two synthetic nuclei images."""
    from napari_unet.core.inference.normalization import normalize
    from napari_unet.core.models import build_model
    from napari_unet.core.synthetic import synthetic_nuclei
    from napari_unet.core.training.items import TrainingItem
    from napari_unet.core.training.loop import TrainConfig, train

    items = []
    for seed in (11, 12):
        image, labels = synthetic_nuclei((256, 256), seed=seed)
        items.append(TrainingItem(normalize(image[None]), labels, name=f"nuclei{seed}"))
    model = build_model("unet", depth=3, base_channels=16, in_channels=1, out_channels=3)
    config = TrainConfig(
        task="instances",
        steps=150,
        batch_size=4,
        patch_shape=(128, 128),
        val_every=50,
        checkpoint_dir=str(folder / "train"),
    )
    return Path(train(model, items, config).best_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="PNG to write (e.g. docs/images/segment.png)")
    parser.add_argument("--checkpoint", help="a .pt file or a built-in model name")
    parser.add_argument("--size", type=int, default=512, help="side of the sample image")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import napari

    from napari_unet._widgets import SegmentWidget
    from napari_unet.core.synthetic import synthetic_nuclei

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = pick_checkpoint(Path(tmp), args.checkpoint)
        image, _ = synthetic_nuclei((args.size, args.size), n_nuclei=args.size**2 // 1600)
        viewer = napari.Viewer(title="napari-unet-loop")
        app = napari.qt.get_qapp()
        viewer.window.resize(1560, 960)
        viewer.add_image(image, name="nuclei", colormap="gray")
        widget = SegmentWidget(viewer)
        viewer.window.add_dock_widget(widget, name="U-Net Segment", area="right")
        panel = widget.segment
        panel.form.model.add_checkpoint(checkpoint)
        panel.form.probabilities.setChecked(False)
        deadline = time.perf_counter() + 30  # the model's defaults arrive from a worker
        while panel.form.output.currentData() != "instances" and time.perf_counter() < deadline:
            app.processEvents()
            time.sleep(0.01)
        panel.run_button.click()
        deadline = time.perf_counter() + 600
        while panel.worker is not None and time.perf_counter() < deadline:
            app.processEvents()
            time.sleep(0.01)
        if panel.message.isVisible():
            logger.error("prediction failed: %s", panel.message.text())
            return 1
        labels = [layer for layer in viewer.layers if layer.name.endswith("labels")]
        if labels:
            labels[0].opacity = 0.5
            labels[0].contour = 0
        viewer.reset_view()
        for _ in range(50):
            app.processEvents()
            time.sleep(0.02)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(args.output), canvas_only=False)
        logger.info("wrote %s (%s)", args.output, panel.status.text())
        viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``napari-unet-loop gui [IMAGE]``: napari with the plugin's docks and an image open.

The "U-Net Segment" and "U-Net Fine-tune" docks share the right-hand column as tabs (Segment on
top), and the view is reset once they are docked, so the image fills the canvas. The Segment
dock proposes the built-in model that fits the image. Without IMAGE the synthetic nuclei sample
is shown, so a first prediction is one click away.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

PLUGIN = "napari-unet-loop"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``gui`` subcommand."""
    parser = subparsers.add_parser(
        "gui",
        help="start napari with the plugin's docks and an image",
        description="Start napari with the U-Net Segment and Fine-tune docks (as tabs) and IMAGE "
        "loaded (or the synthetic nuclei sample when no IMAGE is given).",
    )
    parser.add_argument(
        "image", nargs="?", type=Path, help="image to open (TIFF, PNG or a .zarr folder)"
    )
    parser.add_argument(
        "--no-run", action="store_true", help="build the window and exit (for smoke tests)"
    )
    parser.set_defaults(run=run)
    return parser


def open_image(viewer, image: Path | None) -> None:
    """Load ``image`` through the plugin's reader (napari's own as a fallback) or the sample."""
    from napari_unet.core.errors import ImageReadError

    if image is None:
        from napari_unet.core.synthetic import synthetic_nuclei

        pixels, _ = synthetic_nuclei((512, 512))
        tag = {"napari_unet": {"axes": "YX", "origin": "synthetic", "model": "fluo-nuclei"}}
        viewer.add_image(pixels, name="synthetic nuclei", metadata=tag)
        return
    if not image.exists():
        raise ImageReadError(
            f"{image} does not exist; pass the path of a TIFF or PNG image or a .zarr folder."
        )
    try:
        viewer.open(str(image), plugin=PLUGIN)
    except (ValueError, KeyError) as err:  # the reader is not installed or declined the file
        logger.info("the %s reader did not open %s (%s); trying napari's", PLUGIN, image, err)
        viewer.open(str(image))


def dock_segment_widget(viewer):
    """Dock "U-Net Segment" via the manifest when it declares it, else directly."""
    try:
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "U-Net Segment")
    except (KeyError, ValueError, LookupError) as err:
        logger.info("manifest widget not available (%s); docking SegmentWidget directly", err)
        from napari_unet._widgets import SegmentWidget

        widget = SegmentWidget(viewer)
        viewer.window.add_dock_widget(widget, name="U-Net Segment", area="right")
    return widget


def dock_finetune_widget(viewer):
    """Dock "U-Net Fine-tune" as a tab next to the Segment dock; returns it (None if absent)."""
    try:
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "U-Net Fine-tune", tabify=True)
    except (KeyError, ValueError, LookupError) as err:
        logger.info("manifest widget not available (%s); docking FinetuneWidget directly", err)
        from napari_unet._widgets import FinetuneWidget

        widget = FinetuneWidget(viewer)
        viewer.window.add_dock_widget(widget, name="U-Net Fine-tune", area="right", tabify=True)
    return widget


def show_segment_first(viewer, segment) -> None:
    """Raise the Segment tab and fit the image to the canvas now that the docks took their room."""
    from qtpy.QtWidgets import QApplication

    dock = segment.dock_widget() if hasattr(segment, "dock_widget") else None
    QApplication.processEvents()  # let the docks settle (the tabs join after docking)
    if dock is not None:
        dock.raise_()
    QApplication.processEvents()
    viewer.reset_view()


def _import_napari():
    """napari, or a one-sentence error saying how to install it (it is an optional extra)."""
    from napari_unet.core.errors import UserInputError

    try:
        import napari
    except ImportError:
        raise UserInputError(
            "napari is not installed (the headless install has no GUI); install it with "
            'pip install "napari-unet-loop[all]" or use predict/train without a window.'
        ) from None
    return napari


def run(args: argparse.Namespace) -> int:
    """Open the window; returns when napari closes."""
    napari = _import_napari()

    viewer = napari.Viewer(title="napari-unet-loop")
    open_image(viewer, args.image)
    widget = dock_segment_widget(viewer)
    dock_finetune_widget(viewer)
    show_segment_first(viewer, widget)
    if args.no_run:
        from qtpy.QtCore import QThreadPool

        QThreadPool.globalInstance().waitForDone(60_000)  # the widget reads the model in a thread
        napari.qt.get_qapp().processEvents()
        viewer.close()
        return 0
    napari.run()
    return 0

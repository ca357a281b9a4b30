"""Per-object measurements in napari: the labels layer's ``features`` and a CSV beside the labels.

After every prediction written into a plugin labels layer (:func:`measure_after_prediction`,
called by :class:`~napari_unet._widgets.output.OutputWriter`), a background job measures the
layer (:func:`napari_unet.core.postprocess.measure.measure_objects`: area, centroid, bounding box,
mean/min/max intensity per channel of the image) and sets ``layer.features`` to the table, with an
``index`` column = the label value, so napari shows the row of the object under the mouse in the
status bar and the table in the layer's features. Semantic labels are measured per connected
region, which has no label value of its own: their table is only saved, not set as features.

:class:`MeasureButtons` adds *Measure* (again, after edits) and *Save measurements…* (a CSV beside
the image file, the same format as ``predict --measure``). A lazy (Zarr/dask) image is never read
whole: its objects are measured without intensities. Physical sizes use the layer's scale when it
is not 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_unet._widgets import layers as L
from napari_unet._widgets.loop_state import LoopState
from napari_unet.core.errors import UserInputError

if TYPE_CHECKING:
    import napari

    from napari_unet.core.io.axes import StackLayout

logger = logging.getLogger(__name__)

#: Key of the image's axes in the labels tag (what the measuring needs to line image and labels up).
AXES_KEY = "image_axes"
#: Largest labels layer (pixels) measured automatically after each prediction; above it the old
#: table is cleared (it no longer matches) and *Measure* does it on request.
AUTO_PIXELS = 64 * 1024 * 1024


def measure_after_prediction(viewer: napari.Viewer, layer: Any, layout: StackLayout) -> None:
    """Measure ``layer`` (a plugin labels layer just predicted) in the background; set features."""
    tag = L.plugin_tag(layer)
    if tag is None:
        return
    tag[AXES_KEY] = layout.axes
    if L.n_values(layer) > AUTO_PIXELS:
        tag.pop("measurements", None)
        layer.features = {}
        return
    start_measuring(viewer, layer)


def start_measuring(
    viewer: napari.Viewer,
    layer: Any,
    on_done: Callable[[dict[str, np.ndarray]], Any] | None = None,
    on_error: Callable[[str], Any] | None = None,
) -> None:
    """Start the background job measuring ``layer``; features are set when it returns.

    Raises:
        UserInputError: ``layer`` is not a predicted labels layer, or its image is gone.
    """
    args = measure_inputs(viewer, layer)
    loop = LoopState.for_viewer(viewer)

    def done(table: dict[str, np.ndarray]) -> None:
        set_features(layer, table)
        if on_done is not None:
            on_done(table)

    loop.jobs.start(
        (id(layer), "measure"),
        _measure,
        *args,
        what="Measuring",
        on_done=done,
        on_error=on_error or (lambda text: logger.warning("%s", text)),
    )


def measure_inputs(viewer: napari.Viewer, layer: Any) -> tuple:
    """Copies of what :func:`_measure` needs: labels, image (channels last) or None, options."""
    tag = L.plugin_tag(layer)
    if tag is None or tag.get("role") != "labels":
        raise UserInputError("Pick a labels layer made by U-Net Segment to measure (run it first).")
    labels = np.array(layer.data)
    name = tag.get("image_layer")
    image_axes = tag.get(AXES_KEY)
    image = None
    if name in viewer.layers and image_axes and isinstance(viewer.layers[name].data, np.ndarray):
        image = _channels_last(viewer.layers[name].data, image_axes, labels.shape)
    spatial = "".join(a for a in (image_axes or "") if a in "TZS") + "YX"
    axes = spatial if len(spatial) == labels.ndim else None
    options = {"axes": axes, "output": tag.get("output", "instances"), "spacing": _spacing(layer)}
    return labels, image, options


def _channels_last(image: np.ndarray, axes: str, shape: tuple[int, ...]) -> np.ndarray | None:
    spatial = "".join(a for a in axes if a in "TZS") + "YX"
    if len(axes) != image.ndim or not set(spatial) <= set(axes):
        return None
    order = [axes.index(a) for a in spatial] + ([axes.index("C")] if "C" in axes else [])
    moved = np.transpose(image, order)
    return np.array(moved) if moved.shape[: len(shape)] == tuple(shape) else None


def _spacing(layer: Any) -> tuple[float, ...] | None:
    """The layer's scale over the measured axes (the last 2, or 3 for a volume), when not all 1."""
    scale = [float(s) for s in np.asarray(layer.scale)]
    return None if all(s == 1.0 for s in scale) else tuple(scale)


def _measure(labels: np.ndarray, image: np.ndarray | None, options: dict) -> dict[str, np.ndarray]:
    """The worker: the per-object table (runs off the main thread, on copies)."""
    from napari_unet.core.postprocess.measure import PER_SLICE_AXES, measure_objects

    spacing = options.get("spacing")
    axes = options.get("axes") or ("YX" if labels.ndim == 2 else "ZYX")
    if spacing is not None:
        keep = [i for i, a in enumerate(axes) if a not in PER_SLICE_AXES]
        spacing = tuple(spacing[i] for i in keep) if len(spacing) == len(axes) else None
    return measure_objects(
        labels, image, axes=axes, output=options.get("output", "instances"), spacing=spacing
    )


def set_features(layer: Any, table: dict[str, np.ndarray]) -> None:
    """``layer.features`` = ``table`` with ``index`` = label (instances); kept for saving."""
    tag = L.plugin_tag(layer)
    if tag is not None:
        tag["measurements"] = table
    if tag is not None and tag.get("output") == "semantic":
        return  # regions of a class have no label value: napari could not match rows to pixels
    features = {"index": np.asarray(table["label"]), **table}
    try:
        layer.features = features
    except (ValueError, TypeError) as err:  # e.g. a layer removed meanwhile
        logger.warning("measurements not shown on %s: %s", layer.name, err)


def default_csv_path(viewer: napari.Viewer, layer: Any) -> Path:
    """``<image stem>_measurements.csv`` beside the image file (else the working folder)."""
    tag = L.plugin_tag(layer) or {}
    name = tag.get("image_layer") or layer.name
    source = None
    if name in viewer.layers:
        source = getattr(getattr(viewer.layers[name], "source", None), "path", None)
    folder = Path(source).parent if source else Path.cwd()
    stem = Path(source).name.split(".")[0] if source else str(name).replace(" ", "_")
    return folder / f"{stem}_measurements.csv"


def save_measurements(layer: Any, path: str | Path) -> Path:
    """Write the last measurements of ``layer`` to ``path`` (atomic CSV).

    Raises:
        UserInputError: the layer was not measured yet.
    """
    from napari_unet.core.postprocess.measure import write_measurements_csv

    tag = L.plugin_tag(layer) or {}
    table = tag.get("measurements")
    if table is None:
        raise UserInputError(f"'{layer.name}' has no measurements yet: press Measure first.")
    source = {"layer": layer.name, "model": str(tag.get("model", "")), "output": tag.get("output")}
    return write_measurements_csv(path, table, source=source)


class MeasureButtons(QWidget):
    """*Measure* and *Save measurements…* for the labels layer of the chosen image.

    Args:
        viewer: the napari viewer.
        image_layer: returns the image layer chosen in the predict panel (or None).
    """

    def __init__(self, viewer: napari.Viewer, image_layer: Callable[[], Any]) -> None:
        super().__init__()
        self.viewer, self.image_layer = viewer, image_layer
        self.measure_button = QPushButton("Measure")
        self.measure_button.setToolTip(
            "One row per object (area, centroid, box, intensities) as the labels layer's features"
        )
        self.save_button = QPushButton("Save measurements…")
        self.save_button.setToolTip("Write the table as CSV beside the image file")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.measure_button)
        row.addWidget(self.save_button)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(row)
        column.addWidget(self.status)
        self.measure_button.clicked.connect(self.measure)
        self.save_button.clicked.connect(self.save)

    def labels_layer(self) -> Any:
        """The selected plugin labels layer, else the one of the chosen image (or None)."""
        active = self.viewer.layers.selection.active
        if active is not None and (L.plugin_tag(active) or {}).get("role") == "labels":
            return active
        image = self.image_layer()
        if image is None:
            return None
        return L.find_plugin_layer(self.viewer, role="labels", image_layer=image.name)

    def _layer_or_say(self) -> Any:
        layer = self.labels_layer()
        if layer is None:
            self.status.setText("No predicted labels to measure: press Run first.")
        return layer

    def measure(self) -> None:
        """Measure the labels layer in the background (the status line says when it is done)."""
        layer = self._layer_or_say()
        if layer is None:
            return
        self.status.setText(f"Measuring '{layer.name}'…")
        try:
            start_measuring(
                self.viewer,
                layer,
                on_done=lambda t: self.status.setText(f"{len(t['label'])} objects measured."),
                on_error=self.status.setText,
            )
        except UserInputError as err:
            self.status.setText(str(err))

    def save(self) -> None:
        """Ask where, then write the CSV (the dialog confirms replacing a file)."""
        layer = self._layer_or_say()
        if layer is None:
            return
        path = ask_csv_path(self, default_csv_path(self.viewer, layer))
        if not path:
            return
        try:
            written = save_measurements(layer, path)
        except UserInputError as err:
            self.status.setText(str(err))
            return
        except OSError as err:
            from napari_unet.core.errors import describe_os_error

            self.status.setText(describe_os_error(err))
            return
        self.status.setText(f"Saved {written.name}.")


def ask_csv_path(parent: QWidget, default: Path) -> str:
    """The file dialog (a function of its own so tests can answer it)."""
    path, _ = QFileDialog.getSaveFileName(
        parent, "Save measurements", str(default), "CSV files (*.csv)"
    )
    return path

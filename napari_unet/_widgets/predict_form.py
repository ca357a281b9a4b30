"""The controls of the predict panel (no behaviour beyond reading and setting their values).

:class:`PredictForm` holds the image/axes/model/device/output/scope choices and the collapsible
"Advanced" section; :class:`~napari_unet._widgets.segment_panel.SegmentPanel` wires it to the
viewer and the worker.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_unet._widgets.collapsible import CollapsibleForm
from napari_unet._widgets.model_picker import ModelPicker

SCOPES: tuple[tuple[str, str], ...] = (
    ("slice", "Current slice"),
    ("stack", "Whole stack"),
    ("region", "Visible region"),
)
OUTPUTS: tuple[tuple[str, str], ...] = (
    ("instances", "Instance labels"),
    ("semantic", "Semantic labels"),
)
TTA_CHOICES: tuple[tuple[str, str], ...] = (
    ("none", "Off"),
    ("flips", "Flips (4x time)"),
    ("dihedral", "Flips + rotations (8x time)"),
)
UNSEEDED_CHOICES: tuple[tuple[str, str], ...] = (
    ("object", "Own objects"),
    ("drop", "Background"),
)
CHOOSE_AXES = "choose…"
DEFAULT_TILE = 512


def _combo(items: tuple[tuple[str, str], ...], tooltip: str) -> QComboBox:
    combo = QComboBox()
    for key, text in items:
        combo.addItem(text, key)
    combo.setToolTip(tooltip)
    return combo


def _spin(low: int, high: int, value: int, step: int, tooltip: str, suffix: str = "") -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setToolTip(tooltip)
    if suffix:
        spin.setSuffix(suffix)
    return spin


class PredictForm(QWidget):
    """The choices of a prediction run; read them with the accessor methods."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image = QComboBox()
        self.image.setToolTip("The image layer to segment")
        self.axes = QComboBox()
        self.axes.setToolTip("What each dimension of the image is (T time, Z depth, C channel)")
        self.axes_label = QLabel("Axes")
        self.model = ModelPicker()
        self.device = QComboBox()
        self.device.addItem("cpu")
        self.device.setToolTip("Where the network runs (only devices present on this machine)")
        self.output = _combo(OUTPUTS, "One id per object (instances) or one id per class")
        self.probabilities = QCheckBox("Probability layer")
        self.probabilities.setToolTip("Also show the foreground probability as an image layer")
        self.scope = _combo(
            SCOPES,
            "Current slice: the slice on screen; whole stack: every Z/T slice; visible region: "
            "only the part of the current slice in view (fast on huge images)",
        )
        self.overwrite = QCheckBox("Overwrite corrected slices")
        self.overwrite.setToolTip(
            "Off: slices you edited or marked reviewed keep your corrections and are skipped"
        )
        self.advanced_section = CollapsibleForm("Advanced")
        self.advanced_toggle = self.advanced_section.toggle
        self.advanced = self.advanced_section.content
        self.tile = _spin(32, 4096, DEFAULT_TILE, 32, "Tile side fed to the network", " px")
        self.overlap = _spin(0, 512, 32, 8, "Overlap between neighbouring tiles", " px")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(0.5)
        self.threshold.setToolTip("Foreground probability cut")
        self.min_size = _spin(0, 100000, 0, 5, "Objects with fewer pixels are removed", " px")
        self.unseeded = _combo(
            UNSEEDED_CHOICES,
            "Instances: foreground that no object centre (seed) reaches becomes objects of its "
            "own or stays background (fewer specks and rims; the model's tuned choice is preset)",
        )
        self.batch = _spin(1, 64, 4, 1, "Tiles per forward pass (lower it on a small GPU)")
        self.tta = _combo(
            TTA_CHOICES,
            "Test-time augmentation: also predict the image flipped (and rotated) and average; "
            "fewer gaps in thin membranes and fewer split objects, at 4x (8x) the time",
        )
        self.tile.valueChanged.connect(lambda v: self.overlap.setMaximum(max(0, v // 2)))
        self._layout()

    def _layout(self) -> None:
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.addRow("Image", self.image)
        form.addRow(self.axes_label, self.axes)
        form.addRow("Model", self.model)
        form.addRow("Device", self.device)
        form.addRow("Output", self.output)
        form.addRow("", self.probabilities)
        form.addRow("Scope", self.scope)
        form.addRow("", self.overwrite)
        self.advanced_section.add_row("Tile size", self.tile)
        self.advanced_section.add_row("Overlap", self.overlap)
        self.advanced_section.add_row("Threshold", self.threshold)
        self.advanced_section.add_row("Min. object size", self.min_size)
        self.advanced_section.add_row("Unseeded foreground", self.unseeded)
        self.advanced_section.add_row("Batch size", self.batch)
        self.advanced_section.add_row("Augment (TTA)", self.tta)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.advanced_section)
        self.show_axes([])

    def focus_chain(self) -> list[QWidget]:
        """The main controls in keyboard (Tab) order."""
        return [
            self.image,
            self.axes,
            self.model,
            self.device,
            self.output,
            self.probabilities,
            self.scope,
            self.overwrite,
        ]

    def show_axes(self, choices: list[str] | tuple[str, ...]) -> None:
        """Offer ``choices`` in the axes combo (hidden when empty)."""
        self.axes.clear()
        if choices:
            self.axes.addItem(CHOOSE_AXES, "")
            for axes in choices:
                self.axes.addItem(axes, axes)
        self.axes.setVisible(bool(choices))
        self.axes_label.setVisible(bool(choices))

    def chosen_axes(self) -> str | None:
        """The axes picked in the combo, or None when it is hidden or on "choose…"."""
        return (self.axes.currentData() or None) if self.axes.count() else None

    def set_devices(self, devices: list[str]) -> None:
        """List ``devices`` (keeps the current choice when still present)."""
        current = self.device.currentText()
        self.device.clear()
        self.device.addItems(devices or ["cpu"])
        index = self.device.findText(current)
        self.device.setCurrentIndex(max(index, 0))

    def set_model_defaults(
        self,
        *,
        task: str,
        tile_shape: tuple | None,
        overlap: int | None,
        postprocess: Any = None,
    ) -> None:
        """Defaults from a checkpoint: output kind from its task, tiling from its tile defaults,
        threshold, minimum object size and unseeded foreground from its stored post-processing
        (:meth:`~napari_unet.core.checkpoint.format.CheckpointInfo.postprocess_config`)."""
        self.output.setCurrentIndex(
            self.output.findData("instances" if task == "instances" else "semantic")
        )
        if tile_shape:
            self.tile.setValue(int(max(tile_shape)))
        if overlap is not None:
            self.overlap.setValue(int(overlap))
        if postprocess is not None:
            self.threshold.setValue(float(postprocess.threshold))
            self.min_size.setValue(int(postprocess.min_size))
            self.unseeded.setCurrentIndex(max(self.unseeded.findData(postprocess.unseeded), 0))

    def scope_key(self) -> str:
        """``"slice"``, ``"stack"`` or ``"region"``."""
        return str(self.scope.currentData())

    def predict_settings(self) -> dict:
        """``PredictConfig`` fields chosen in the form."""
        tile = int(self.tile.value())
        return {
            "tile_shape": (tile, tile),
            "overlap": min(int(self.overlap.value()), tile - 1),
            "batch_size": int(self.batch.value()),
            "device": self.device.currentText() or "cpu",
            "tta": str(self.tta.currentData()),
        }

    def postprocess_settings(self) -> dict:
        """``PostprocessConfig`` fields chosen in the form."""
        return {
            "output": str(self.output.currentData()),
            "threshold": float(self.threshold.value()),
            "min_size": int(self.min_size.value()),
            "unseeded": str(self.unseeded.currentData()),
        }

"""The controls of the predict panel (no behaviour beyond reading and setting their values).

:class:`PredictForm` holds the image/axes/model choices (built by hand: they follow the viewer)
and rows generated from three configs (:mod:`~napari_unet._widgets.config_form`):
:class:`~napari_unet.core.inference.config.PredictConfig` (device, tiles, batch, TTA),
:class:`~napari_unet._widgets.predict_worker.PostprocessChoice` (output, threshold, minimum
size) and :class:`PredictOptions` (probability layer, scope, overwrite), the advanced ones in a
collapsible section. :class:`~napari_unet._widgets.segment_panel.SegmentPanel` wires it to the
viewer and the worker.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from napari_unet._widgets.collapsible import CollapsibleForm
from napari_unet._widgets.config_form import ConfigWidgets, add_rows
from napari_unet._widgets.model_picker import ModelPicker
from napari_unet._widgets.predict_worker import PostprocessChoice
from napari_unet.core.config import Config, setting
from napari_unet.core.inference.config import PredictConfig

CHOOSE_AXES = "choose…"
DEFAULT_TILE = 512
#: What the form shows first where it differs from the configs' defaults.
PREDICT_DEFAULTS = {"overlap": 32, "device": "cpu"}


@dataclasses.dataclass(frozen=True)
class PredictOptions(Config):
    """What a prediction run writes, and where (the panel's own choices).

    Attributes:
        probabilities: also show the foreground probability as an image layer.
        scope: ``"slice"`` (the slice on screen), ``"stack"`` (every Z/T slice) or
            ``"region"`` (the visible part of the current slice).
        overwrite: also predict slices the user corrected or marked reviewed.
    """

    probabilities: bool = setting(
        False,
        "Probability layer",
        tooltip="Also show the foreground probability as an image layer",
        order=3,
    )
    scope: str = setting(
        "slice",
        "Scope",
        tooltip="Current slice: the slice on screen; whole stack: every Z/T slice; visible "
        "region: only the part of the current slice in view (fast on huge images)",
        choices=(
            ("slice", "Current slice"),
            ("stack", "Whole stack"),
            ("region", "Visible region"),
        ),
        order=4,
    )
    overwrite: bool = setting(
        False,
        "Overwrite corrected slices",
        tooltip="Off: slices you edited or marked reviewed keep your corrections and are skipped",
        order=5,
    )

    def __post_init__(self) -> None:
        if self.scope not in ("slice", "stack", "region"):
            raise ValueError(f"scope must be 'slice', 'stack' or 'region', got {self.scope!r}")


class PredictForm(QWidget):
    """The choices of a prediction run; read them with the accessor methods.

    Attributes:
        fields: the generated settings by field name (magicgui widgets and their values).
        tile, overlap, batch, tta, device, output, threshold, min_size, probabilities, scope,
            overwrite: the Qt widgets of those settings.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image = QComboBox()
        self.image.setToolTip("The image layer to segment")
        self.axes = QComboBox()
        self.axes.setToolTip("What each dimension of the image is (T time, Z depth, C channel)")
        self.axes_label = QLabel("Axes")
        self.model = ModelPicker()
        self.predict_fields = ConfigWidgets(PredictConfig, PREDICT_DEFAULTS)
        self.postprocess_fields = ConfigWidgets(PostprocessChoice, {"output": "instances"})
        self.option_fields = ConfigWidgets(PredictOptions)
        self.groups = (self.predict_fields, self.postprocess_fields, self.option_fields)
        self.fields = {n: f for g in self.groups for n, f in g.fields.items()}
        self.advanced_section = CollapsibleForm("Advanced")
        self.advanced_toggle = self.advanced_section.toggle
        self.advanced = self.advanced_section.content
        native = {name: field.native for name, field in self.fields.items()}
        self.device, self.output = native["device"], native["output"]
        self.probabilities, self.scope = native["probabilities"], native["scope"]
        self.overwrite, self.tile, self.overlap = (
            native["overwrite"],
            native["tile_shape"],
            native["overlap"],
        )
        self.threshold, self.min_size = native["threshold"], native["min_size"]
        self.batch, self.tta = native["batch_size"], native["tta"]
        overlap = self.fields["overlap"].widget
        self.fields["tile_shape"].widget.changed.connect(
            lambda side: setattr(overlap, "max", max(0, int(side) // 2))
        )
        self._layout()
        self.show_z_flip(context_slices=0, spatial_dims=2)  # until a model is read

    def _layout(self) -> None:
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.addRow("Image", self.image)
        form.addRow(self.axes_label, self.axes)
        form.addRow("Model", self.model)
        add_rows(form, self.advanced_section, self.groups)
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
        self.fields["device"].widget.choices = list(devices) or ["cpu"]

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
        self.fields["output"].value = "instances" if task == "instances" else "semantic"
        for name in ("output", "threshold", "min_size", "unseeded", "probabilities"):
            self.fields[name].native.setEnabled(task != "restoration")  # it outputs an image
        if tile_shape:
            self.fields["tile_shape"].value = int(max(tile_shape))
        if overlap is None and tile_shape:  # a 3-D checkpoint leaves it to prediction, which
            # takes at most a quarter of the smallest tile side (32 would refuse a 32-deep tile)
            from napari_unet.core.inference.geometry import tile_overlap

            overlap = tile_overlap(PredictConfig(tile_shape=tuple(tile_shape)), margin=0)
        if overlap is not None:
            self.fields["overlap"].value = int(overlap)
        if postprocess is not None:
            self.fields["threshold"].value = float(postprocess.threshold)
            self.fields["min_size"].value = int(postprocess.min_size)
            self.fields["unseeded"].value = str(postprocess.unseeded)

    def show_z_flip(self, *, context_slices: int, spatial_dims: int) -> None:
        """Enable "Average with Z reversed" only for a 2.5-D (``context_slices`` > 0) or 3-D
        model; greyed for a 2-D one, its tooltip saying why (the setting has no effect there)."""
        native = self.fields["z_flip"].native
        applies = bool(context_slices) or spatial_dims == 3
        native.setEnabled(applies)
        tip = PredictConfig.__dataclass_fields__["z_flip"].metadata.get("tooltip", "")
        native.setToolTip(tip if applies else f"{tip}. Greyed: the chosen model is 2-D.")

    def scope_key(self) -> str:
        """``"slice"``, ``"stack"`` or ``"region"``."""
        return str(self.fields["scope"].value)

    def options(self) -> PredictOptions:
        """The probability-layer, scope and overwrite choices."""
        return self.option_fields.apply(PredictOptions())

    def predict_settings(self) -> PredictConfig:
        """The :class:`PredictConfig` chosen in the form (the overlap kept below the tile)."""
        config = self.predict_fields.apply(PredictConfig())
        overlap = min(config.overlap or 0, min(config.tile_shape) - 1)
        return config.replace(overlap=overlap)

    def postprocess_settings(self) -> PostprocessChoice:
        """The post-processing chosen in the form (over the model's stored defaults)."""
        return self.postprocess_fields.apply(PostprocessChoice())

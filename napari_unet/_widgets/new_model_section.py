"""The Fine-tune dock's collapsible "New model" section: build an untrained start model.

Architecture, task, class names (background first, comma-separated), input channels (taken from
the selected image layer: a multichannel layer's channel axis, 3 for RGB), from scratch or from a
built-in model's weights, and for TernausNet an optional local VGG11 weights file. "Create" writes
the checkpoint into the plugin's configuration folder (``new-models/``) and emits ``created`` with
its path; the fine-tune panel selects it as the start model. Nothing in the session changes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_unet._widgets import layers as L
from napari_unet._widgets.collapsible import CollapsibleForm
from napari_unet._widgets.model_picker import config_dir
from napari_unet.core.checkpoint.new_model import NEW_ARCHITECTURES, NewModelConfig
from napari_unet.core.errors import UserInputError

logger = logging.getLogger(__name__)

TASKS = ("semantic", "binary", "instances", "restoration")


def image_channels(layer: Any) -> int | None:
    """Channels of an image layer (its ``C`` axis, 3 for RGB, else 1); None without one."""
    from napari.layers import Image

    if not isinstance(layer, Image):
        return None
    try:
        axes = L.layer_axes(layer)
    except UserInputError:
        return None
    return int(np.shape(layer.data)[axes.index("C")]) if "C" in axes else 1


def image_voxel_size(layer: Any) -> tuple[float, float, float]:
    """The ``(z, y, x)`` scale of an image layer with a Z axis; (1, 1, 1) otherwise."""
    from napari_unet._widgets.volume_run import layer_spacing

    return layer_spacing(layer) if getattr(layer, "ndim", 0) >= 3 else (1.0, 1.0, 1.0)


class NewModelSection(QWidget):
    """A collapsed "New model" section; ``created(path)`` when a model was written."""

    created = Signal(str)

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        from napari_unet.core.checkpoint.format import builtin_checkpoints

        super().__init__(parent)
        self.viewer = viewer
        self.section = CollapsibleForm("New model")
        self.arch = QComboBox()
        for name, text in NEW_ARCHITECTURES:
            self.arch.addItem(text, name)
        self.task = QComboBox()
        self.task.addItems(TASKS)
        self.classes = QLineEdit("background, foreground")
        self.classes.setToolTip("Class names, background first, separated by commas")
        self.channels = QSpinBox(minimum=1, maximum=64, value=1)
        self.channels.setToolTip("Taken from the selected image layer (its channel axis)")
        self.start = QComboBox()
        self.start.addItem("From scratch", "")
        for name in builtin_checkpoints():
            self.start.addItem(f"Weights of {name}", name)
        self.vgg = QLineEdit(placeholderText="VGG11 .pth (TernausNet, optional)")
        self.vgg_button = QPushButton("…", toolTip="Pick a local torchvision VGG11 weights file")
        self.create_button = QPushButton("Create", toolTip="Write the model; it becomes the start")
        self.info = QLabel("", wordWrap=True)
        self._build()
        self.vgg_button.clicked.connect(self._pick_vgg)
        self.create_button.clicked.connect(self._on_create)
        self.task.currentTextChanged.connect(self._on_task)
        viewer.layers.selection.events.active.connect(self.follow_image)
        self.follow_image()

    def _build(self) -> None:
        vgg = QHBoxLayout()
        vgg.addWidget(self.vgg, 1)
        vgg.addWidget(self.vgg_button)
        holder = QWidget()
        holder.setLayout(vgg)
        vgg.setContentsMargins(0, 0, 0, 0)
        rows = (
            ("Architecture", self.arch),
            ("Task", self.task),
            ("Classes", self.classes),
            ("Input channels", self.channels),
            ("Start", self.start),
            ("Encoder", holder),
            ("", self.create_button),
        )
        for label, widget in rows:
            self.section.add_row(label, widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.section)
        layout.addWidget(self.info)

    def follow_image(self, *_: Any) -> None:
        """Input channels from the selected image layer (kept when it is not an image)."""
        channels = image_channels(self.viewer.layers.selection.active)
        if channels is not None:
            self.channels.setValue(channels)

    def _on_task(self, task: str) -> None:
        self.classes.setEnabled(task == "semantic")

    def _pick_vgg(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "VGG11 weights", "", "PyTorch (*.pth *.pt)")
        if path:
            self.vgg.setText(path)

    def config(self) -> NewModelConfig:
        """The choices as a :class:`NewModelConfig`."""
        names = (
            tuple(n.strip() for n in self.classes.text().split(",")) if self.classes.text() else ()
        )
        return NewModelConfig(
            arch=str(self.arch.currentData()),
            task=self.task.currentText(),
            class_names=names
            if self.task.currentText() == "semantic"
            else ("background", "foreground"),
            in_channels=int(self.channels.value()),
            start=str(self.start.currentData() or ""),
            encoder_weights=self.vgg.text().strip(),
            voxel_size=image_voxel_size(self.viewer.layers.selection.active),
        )

    def create(self) -> str:
        """Write the chosen model and emit ``created``; returns its path.

        Raises:
            UserInputError: an impossible choice (nothing is written).
        """
        from napari_unet.core.checkpoint.new_model import new_checkpoint

        config = self.config()
        folder = config_dir() / "new-models"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = new_checkpoint(config, folder / f"{config.arch}-{config.task}-{stamp}.pt")
        self.info.setText(f"Created {path.name}: it is the start model now.")
        self.created.emit(str(path))
        return str(path)

    def _on_create(self) -> None:
        from napari.utils.notifications import show_error

        try:
            self.create()
        except UserInputError as err:
            self.info.setText(str(err))
            show_error(str(err))

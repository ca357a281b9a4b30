"""Correction tools of the "U-Net Segment" dock widget.

napari's own label tools do the painting; this panel adds what the human-in-the-loop needs:
mark pixels as reviewed, and erase such marks (the whole slice, the current view, or rectangles
drawn in a Shapes layer; :mod:`.correct_review`), the per-slice status (unlabelled / predicted /
edited / reviewed), the next free label id (key ``M`` on the labels layer), and deleting
objects smaller than N pixels (one undoable edit in the layer's own history;
:mod:`.correct_tools`).

Changes to the reviewed mask are announced with ``layer.events.metadata(napari_unet_slices=...)``
so that the autosave (which listens to the layer) saves them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_unet._widgets import reviewed as rv
from napari_unet._widgets.correct_review import ReviewActions
from napari_unet._widgets.correct_tools import NEXT_LABEL_KEY, SCOPES, LabelTools
from napari_unet._widgets.logic.layer_choice import (
    correctable_labels,
    labels_to_follow,
)
from napari_unet._widgets.logic.slice_status import SliceStatusCache, summary_text
from napari_unet._widgets.loop_state import LoopState

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

__all__ = ["NEXT_LABEL_KEY", "SCOPES", "CorrectPanel"]


class CorrectPanel(ReviewActions, LabelTools, QWidget):
    """Correction tools for a Labels layer (the plugin's output or one the user picks)."""

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.loop = LoopState.for_viewer(viewer)
        self.cache = SliceStatusCache()
        self._layer: Any = None
        self._status_timer = QTimer(self, singleShot=True, interval=150)
        self._status_timer.timeout.connect(self.refresh_status)

        self.layer_combo = QComboBox(toolTip="Labels layer to correct")
        self.slice_button = QPushButton("Slice", toolTip="Mark the whole current slice reviewed")
        self.view_button = QPushButton(
            "View", toolTip="Mark the visible part of the slice reviewed"
        )
        self.draw_button = QPushButton(
            "Draw…",
            toolTip="Draw rectangles in a 'review regions' Shapes layer, then click 'Regions'",
        )
        self.regions_button = QPushButton(
            "Regions", toolTip="Mark the drawn rectangles reviewed and clear them"
        )
        self.erase_button = QPushButton(
            "Eraser",
            checkable=True,
            toolTip="On: Slice, View and Regions UN-mark reviewed pixels (they stop being "
            "training data); off: they mark",
        )
        self.next_button = QPushButton(
            f"Next free label id ({NEXT_LABEL_KEY})",
            toolTip=f"Select max(labels) + 1; shortcut: {NEXT_LABEL_KEY} on the labels layer",
        )
        self.min_size = QSpinBox(
            minimum=1,
            maximum=10**7,
            value=20,
            suffix=" px",
            toolTip="Objects with fewer pixels are deleted",
        )
        self.scope = QComboBox(toolTip="Where to delete small objects")
        self.scope.addItems(SCOPES)
        self.delete_button = QPushButton(
            "Delete smaller", toolTip="Delete objects smaller than N pixels (undo with Ctrl+Z)"
        )
        self.slice_status = QLabel("no labels layer")
        self.stack_status = QLabel("")
        self.message = QLabel("", wordWrap=True)
        self._build()
        self._connect(viewer)
        self._on_layers_changed()

    def _build(self) -> None:
        box = QGroupBox("Correct")
        grid = QGridLayout(box)
        grid.addWidget(QLabel("Labels"), 0, 0)
        grid.addWidget(self.layer_combo, 0, 1, 1, 5)
        grid.addWidget(QLabel("Mark reviewed"), 1, 0)
        buttons = (self.slice_button, self.view_button, self.draw_button, self.regions_button)
        for column, button in enumerate((*buttons, self.erase_button), 1):
            grid.addWidget(button, 1, column)
        grid.addWidget(self.next_button, 2, 0, 1, 6)
        row = QHBoxLayout()
        for widget in (QLabel("Objects <"), self.min_size, self.scope, self.delete_button):
            row.addWidget(widget)
        grid.addLayout(row, 3, 0, 1, 6)
        grid.addWidget(self.slice_status, 4, 0, 1, 6)
        grid.addWidget(self.stack_status, 5, 0, 1, 6)
        grid.addWidget(self.message, 6, 0, 1, 6)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(box)

    def _connect(self, viewer: Any) -> None:
        self.slice_button.clicked.connect(self.mark_slice)
        self.view_button.clicked.connect(self.mark_view)
        self.draw_button.clicked.connect(self.show_review_regions)
        self.regions_button.clicked.connect(self.mark_regions)
        self.erase_button.toggled.connect(self._on_eraser)
        self.next_button.clicked.connect(self.select_next_label)
        self.delete_button.clicked.connect(lambda: self.delete_small())
        self.layer_combo.currentIndexChanged.connect(self._on_combo)
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._on_layers_changed)
        viewer.layers.selection.events.active.connect(self._on_active)
        viewer.dims.events.current_step.connect(self._schedule_status)
        self.loop.labels_predicted.connect(self._on_predicted)

    # ------------------------------------------------------------------ layer choice
    @property
    def labels_layer(self) -> Any:
        """The Labels layer being corrected, or None."""
        return self._layer

    def _labels_layers(self) -> list[Any]:
        """The Labels layers that can be corrected (:func:`logic.correctable_labels`)."""
        return correctable_labels(self.viewer.layers)

    def _on_inserted(self, event: Any = None) -> None:
        """A new prediction layer becomes the one to correct (the user is working on it)."""
        layer = getattr(event, "value", None)
        self._on_layers_changed()
        if layer is not None and rv.role_of(layer) == "labels" and layer in self._labels_layers():
            self.set_labels_layer(layer)

    def _on_active(self, event: Any = None) -> None:
        """Follow the layer the user selects, when it is a labels layer to correct."""
        layer = self.viewer.layers.selection.active
        if layer is not None and layer in self._labels_layers():
            self.set_labels_layer(layer)

    def _on_predicted(self, layer: Any) -> None:
        """The predict panel wrote into ``layer``: correct that one now."""
        if layer in self._labels_layers():
            self.set_labels_layer(layer)

    def _on_layers_changed(self, event: Any = None) -> None:
        layers = self._labels_layers()
        current = labels_to_follow(self.viewer.layers, self._layer)
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        for layer in layers:
            self.layer_combo.addItem(layer.name, layer)
            layer.events.name.connect(self._on_layers_changed)  # keep the names current
        if current is not None:
            self.layer_combo.setCurrentIndex(layers.index(current))
        self.layer_combo.blockSignals(False)
        self.set_labels_layer(current)

    def _on_combo(self, index: int) -> None:
        self.set_labels_layer(self.layer_combo.itemData(index) if index >= 0 else None)

    def set_labels_layer(self, layer: Any) -> None:
        """Correct ``layer`` (a napari Labels layer) from now on."""
        if layer is self._layer:
            return
        if self._layer is not None:
            for name, callback in self._callbacks():
                getattr(self._layer.events, name).disconnect(callback)
        self._layer = layer
        self.cache.reset(layer)
        if layer is not None:
            for name, callback in self._callbacks():
                getattr(layer.events, name).connect(callback)
            layer.bind_key(NEXT_LABEL_KEY, self._next_label_key, overwrite=True)
            layers = self._labels_layers()
            if layer in layers and layers.index(layer) != self.layer_combo.currentIndex():
                self.layer_combo.setCurrentIndex(layers.index(layer))
        for button in (
            self.slice_button,
            self.view_button,
            self.draw_button,
            self.regions_button,
            self.erase_button,
            self.next_button,
            self.delete_button,
        ):
            button.setEnabled(layer is not None)
        self.loop.set_labels_layer(layer)
        self.refresh_status()

    def _callbacks(self) -> list[tuple[str, Any]]:
        return [
            ("paint", self._on_paint),
            ("data", self._on_data),
            ("set_data", self._on_set_data),
            ("metadata", self._on_metadata),
        ]

    # ------------------------------------------------------------------ status
    def _on_paint(self, event: Any) -> None:
        self.cache.mark_dirty(rv.paint_slices(event.value, tuple(self._layer.data.shape)))
        self._schedule_status()

    def _on_data(self, event: Any = None) -> None:
        self.cache.mark_dirty(None)
        self._schedule_status()

    def _on_set_data(self, event: Any = None) -> None:
        # undo/redo and refreshes after a prediction emit only set_data: recheck what is shown
        self.cache.mark_dirty({self.current_slice()})
        self._schedule_status()

    def _on_metadata(self, event: Any = None) -> None:
        slices = getattr(event, "napari_unet_slices", None)
        self.cache.mark_dirty(None if slices is None else set(slices))
        self._schedule_status()

    def _schedule_status(self, event: Any = None) -> None:
        self._status_timer.start()

    def current_slice(self) -> int:
        """The slice of the labels layer shown in the viewer (0 for a 2-D layer)."""
        layer = self._layer
        shape = tuple(layer.data.shape)
        if len(shape) <= 2:
            return 0
        position = np.asarray(layer.world_to_data(self.viewer.dims.point), dtype=float)
        return rv.flat_index(shape, np.round(position[-len(shape) : -2]))

    def refresh_status(self) -> None:
        """Show the status of the current slice and the counts over the stack."""
        layer = self._layer
        if layer is None:
            self.slice_status.setText("no labels layer")
            self.stack_status.setText("")
            return
        n = rv.n_slices(tuple(layer.data.shape))
        current = self.current_slice()
        prefix = f"Slice {current}" if n > 1 else "Image"
        self.slice_status.setText(f"{prefix}: {self.cache.status(current)}")
        self.stack_status.setText(summary_text(n, self.cache.counts()))

    def _on_eraser(self, on: bool) -> None:
        verb = "Un-mark" if on else "Mark"
        self.slice_button.setToolTip(f"{verb} the whole current slice reviewed")
        self.view_button.setToolTip(f"{verb} the visible part of the slice reviewed")
        self.regions_button.setToolTip(f"{verb} the drawn rectangles reviewed and clear them")
        self._say(
            "Eraser on: Slice, View and Regions now un-mark reviewed pixels."
            if on
            else "Eraser off: Slice, View and Regions mark pixels reviewed."
        )

    def _say(self, text: str) -> None:
        self.message.setText(text)
        logger.info(text)

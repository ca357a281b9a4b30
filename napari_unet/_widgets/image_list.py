"""Keeps a combo box listing the viewer's Image layers in step with the layer list."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QComboBox

from napari_unet._widgets.layers import plugin_tag

if TYPE_CHECKING:
    import napari


class ImageList(QObject):
    """Fills ``combo`` with the names of Image layers (not the plugin's own outputs).

    Refreshes on layer insert, remove, move and rename, keeping the selection when it survives.

    Signals:
        changed(): the selected image changed (also when the list refresh changed it).
    """

    changed = Signal()

    def __init__(self, viewer: napari.Viewer, combo: QComboBox) -> None:
        super().__init__(combo)
        self.viewer = viewer
        self.combo = combo
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.moved):
            event.connect(self.refresh)
        events.inserted.connect(self._watch_name)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        combo.currentIndexChanged.connect(lambda _index: self.changed.emit())
        self.refresh()

    def _watch_name(self, event: Any) -> None:
        event.value.events.name.connect(self.refresh)

    def refresh(self, *_: Any) -> None:
        """Refill the combo (keeps the selection when that layer is still there)."""
        from napari.layers import Image

        try:
            current = self.combo.currentText()
        except RuntimeError:  # the widget was closed while the viewer lives on
            return
        names = [
            layer.name
            for layer in self.viewer.layers
            if isinstance(layer, Image) and plugin_tag(layer) is None
        ]
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItems(names)
        if current in names:
            self.combo.setCurrentIndex(names.index(current))
        self.combo.blockSignals(False)
        if self.combo.currentText() != current:
            self.changed.emit()

    def layer(self) -> Any:
        """The selected layer, or None."""
        name = self.combo.currentText()
        matches = [layer for layer in self.viewer.layers if layer.name == name]
        return matches[0] if matches else None

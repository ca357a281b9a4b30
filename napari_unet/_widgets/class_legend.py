"""The Segment dock's class legend: the predicted labels layer's class names in its colours.

Shown for semantic and binary labels (the ids are classes); the names come from the model that
predicted the layer (its checkpoint's ``class_names``, the names a new model or a widened head was
given), the colours from the layer itself, so a recoloured layer stays in step. Hidden for
instance labels and when no predicted labels layer is active.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from napari_unet._widgets import layers as L
from napari_unet._widgets.loop_state import LoopState

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=16)
def model_class_names(model: str) -> tuple[str, ...]:
    """The class names stored in checkpoint ``model`` (a path or built-in name); () if unknown."""
    from napari_unet.core.checkpoint.format import builtin_checkpoints, read_checkpoint_info

    path = builtin_checkpoints().get(model, model)
    try:
        info = read_checkpoint_info(path)
    except Exception as err:  # a legend never fails the dock
        logger.debug("no class names from %s: %s", model, err)
        return ()
    if info.task == "binary":
        return ("background", *(info.class_names[-1:] or ("foreground",)))
    return tuple(info.class_names) if info.task == "semantic" else ()


def legend_rows(layer: Any) -> list[tuple[int, str, str]]:
    """``[(class id, name, "#rrggbb"), ...]`` of a predicted semantic labels layer, else []."""
    tag = L.plugin_tag(layer) if layer is not None else None
    if not tag or tag.get("role") != "labels" or tag.get("output") != "semantic":
        return []
    rows = []
    for k, name in enumerate(model_class_names(str(tag.get("model", "")))):
        color = layer.get_color(k) if k else None  # 0 (background) is transparent
        hex_color = "" if color is None else "#" + "".join(f"{int(255 * c):02x}" for c in color[:3])
        rows.append((k, name, hex_color))
    return rows


class ClassLegend(QWidget):
    """A small legend that follows the plugin's active labels layer."""

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.loop = LoopState.for_viewer(viewer)
        self.text = QLabel("", wordWrap=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.addWidget(self.text)
        self.loop.labels_layer_changed.connect(self.show_layer)
        self.loop.labels_predicted.connect(self.show_layer)
        self.show_layer(self.loop.labels_layer)

    def show_layer(self, layer: Any = None) -> None:
        """Show the classes of ``layer`` (hidden when it has none to show)."""
        rows = legend_rows(layer)
        swatch = '<span style="color:{0}">&#9632;</span>'
        cells = [
            f"{swatch.format(color) if color else '&#9633;'} {k}: {name}" for k, name, color in rows
        ]
        self.text.setText("<b>Classes</b>&nbsp;&nbsp;" + "&nbsp;&nbsp; ".join(cells))
        self.setVisible(bool(rows))

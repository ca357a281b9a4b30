"""Label tools of the Correct panel: the next free label id and deleting small objects.

A mixin of :class:`~napari_unet._widgets.correct_panel.CorrectPanel` (moved out of it, same
behaviour): it uses the panel's ``_layer`` (the labels layer corrected), ``min_size`` and
``scope`` widgets, ``current_slice()`` and ``_say()``. Deleting small objects is one undoable
edit in the layer's own history.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from napari_unet._widgets import reviewed as rv
from napari_unet.core.postprocess.labels import remove_small_objects_labels

logger = logging.getLogger(__name__)

NEXT_LABEL_KEY = "M"
SCOPES = ("current slice", "whole stack")


class LabelTools:
    """The next-free-id shortcut and "Delete smaller" (mixed into the Correct panel)."""

    def _next_label_key(self, layer: Any) -> None:
        self.select_next_label(layer)

    def select_next_label(self, layer: Any = None) -> int | None:
        """Select ``max(labels) + 1`` over the whole volume as the label to paint."""
        from napari.utils.notifications import show_warning

        layer = layer if layer is not None else self._layer
        if layer is None:
            return None
        value = rv.next_free_label(np.asarray(layer.data))
        try:
            layer.selected_label = value
        except (ValueError, OverflowError) as err:
            show_warning(
                f"No free label id left in {layer.data.dtype} labels ({err}); convert "
                "the layer to a wider integer type."
            )
            return None
        return value

    def delete_small(self, min_size: int | None = None, scope: str | None = None) -> int:
        """Delete objects smaller than ``min_size`` pixels as one undoable edit; returns pixels.

        Args:
            min_size: defaults to the spin box. scope: ``"current slice"`` or ``"whole stack"``
                (defaults to the combo box).
        """
        layer = self._layer
        if layer is None:
            return 0
        min_size = self.min_size.value() if min_size is None else int(min_size)
        scope = self.scope.currentText() if scope is None else scope
        data = np.asarray(layer.data)
        key = rv.slice_key(data.shape, self.current_slice()) if scope == SCOPES[0] else ()
        part = data[key]
        cleaned = remove_small_objects_labels(
            part, min_size, components=rv.label_kind(layer) == "semantic"
        )
        where = np.nonzero(cleaned != part)
        if where[0].size:
            indices = tuple(np.full(where[0].shape, k) for k in key) + where
            with layer.block_history():
                layer.data_setitem(indices, 0)
        self._say(f"Deleted {where[0].size} pixel(s) of objects smaller than {min_size} px.")
        return int(where[0].size)

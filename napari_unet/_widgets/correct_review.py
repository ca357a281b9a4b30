"""Reviewed marks of the Correct panel: mark, and erase, the pixels the user vouches for.

A mixin of :class:`~napari_unet._widgets.correct_panel.CorrectPanel` (moved out of it): it uses
the panel's ``viewer``, ``_layer`` (the labels layer corrected), ``erase_button`` (the eraser
toggle), ``current_slice()`` and ``_say()``. The three targets — the whole slice, the visible
part, the rectangles drawn in a 'review regions' Shapes layer — mark pixels reviewed, or, with
the eraser on, un-mark them: un-marked pixels stop being training data (unless the user edited
them). Every change is announced with ``layer.events.metadata(napari_unet_slices=...)`` so the
autosave saves the slices' reviewed masks and the status follows.

Bad input gets one sentence and changes nothing: no labels layer, or marking a slice that holds
no labels at all (never predicted, nothing painted).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from napari_unet._widgets import reviewed as rv

logger = logging.getLogger(__name__)


class ReviewActions:
    """Mark / un-mark reviewed pixels (mixed into the Correct panel)."""

    @property
    def erasing(self) -> bool:
        """The reviewed eraser is on: the Slice/View/Regions buttons un-mark."""
        button = getattr(self, "erase_button", None)
        return bool(button is not None and button.isChecked())

    def _can_mark(self, slices: set[int]) -> bool:
        """Say why marking is refused (no layer, slices with no labels); True when it is not."""
        layer = self._layer
        if layer is None:
            self._say(
                "No labels layer to mark: predict the image or pick a Labels layer above, "
                "then mark it reviewed."
            )
            return False
        empty = sorted(s for s in slices if rv.status_of(layer, s) == "unlabelled")
        if empty and not self.erasing:
            where = (
                "The image"
                if rv.n_slices(tuple(layer.data.shape)) == 1
                else ("Slice(s) " + ", ".join(str(s) for s in empty))
            )
            self._say(
                f"{where} of '{layer.name}' has no labels yet (nothing predicted or painted): "
                "predict or paint it first, then mark it reviewed."
            )
            return False
        return True

    def _apply(self, index: int, region: Any = None) -> int:
        """Mark (or, erasing, un-mark) ``region`` of slice ``index``; returns pixels changed."""
        if self.erasing:
            return rv.unmark_reviewed(self._layer, index, region)
        return rv.mark_reviewed(self._layer, index, region)

    def _after_review(self, slices: set[int], changed: int) -> None:
        layer = self._layer
        rv.ensure_overlay(self.viewer, layer)
        layer.events.metadata(napari_unet_slices=tuple(sorted(slices)))
        if self.erasing:
            self._say(f"{changed} pixel(s) un-marked: they are no longer training data.")
        else:
            self._say(f"{changed} pixel(s) newly marked reviewed.")

    def mark_slice(self) -> int:
        """Mark (erasing: un-mark) the whole current slice; returns the pixels changed."""
        index = self.current_slice() if self._layer is not None else 0
        if not self._can_mark({index}):
            return 0
        changed = self._apply(index)
        self._after_review({index}, changed)
        return changed

    def view_region(self) -> tuple[slice, slice]:
        """The (Y, X) box of the current slice visible in the canvas (whole slice in 3-D)."""
        layer = self._layer
        y, x = layer.data.shape[-2:]
        if self.viewer.dims.ndisplay != 2 or list(self.viewer.dims.displayed)[-2:] != [
            self.viewer.dims.ndim - 2,
            self.viewer.dims.ndim - 1,
        ]:
            return slice(0, y), slice(0, x)
        corners = np.asarray(layer.corner_pixels)[:, -2:]
        y0, x0 = np.clip(corners[0], 0, (y, x))
        y1, x1 = np.clip(corners[1] + 1, 0, (y, x))
        if y1 <= y0 or x1 <= x0:
            return slice(0, y), slice(0, x)
        return slice(int(y0), int(y1)), slice(int(x0), int(x1))

    def mark_view(self) -> int:
        """Mark (erasing: un-mark) the visible part of the current slice; returns pixels."""
        index = self.current_slice() if self._layer is not None else 0
        if not self._can_mark({index}):
            return 0
        changed = self._apply(index, self.view_region())
        self._after_review({index}, changed)
        return changed

    def regions_layer(self, *, create: bool = True) -> Any:
        """The 'review regions' Shapes layer of the current labels layer (created on demand)."""
        layer = self._layer
        for candidate in self.viewer.layers:
            meta = rv.plugin_meta(candidate)
            if (
                meta
                and meta.get("role") == rv.REGIONS_ROLE
                and (meta.get("labels_layer") == layer.name)
            ):
                return candidate
        if not create:
            return None
        return self.viewer.add_shapes(
            ndim=layer.ndim,
            name=f"{layer.name} review regions",
            scale=layer.scale,
            translate=layer.translate,
            edge_color="yellow",
            face_color=[1, 1, 0, 0.15],
            edge_width=1,
            metadata={rv.META_KEY: {"role": rv.REGIONS_ROLE, "labels_layer": layer.name}},
        )

    def show_review_regions(self) -> Any:
        """Select the review regions layer in rectangle mode so the user can draw."""
        if not self._can_mark(set()):
            return None
        shapes = self.regions_layer()
        self.viewer.layers.selection.active = shapes
        shapes.mode = "add_rectangle"
        what = "un-mark" if self.erasing else "mark"
        self._say(f"Draw rectangles, then click 'Regions' to {what} them reviewed.")
        return shapes

    def mark_regions(self) -> int:
        """Mark (erasing: un-mark) the drawn rectangles and clear them; returns pixels changed."""
        if not self._can_mark(set()):
            return 0
        shapes = self.regions_layer(create=False)
        if shapes is None or not len(shapes.data):
            self._say("No rectangles drawn: click 'Draw…' and drag rectangles first.")
            return 0
        masks = rv.rectangles_to_masks(shapes, self._layer)
        if not self._can_mark(set(masks)):
            return 0  # the rectangles stay, nothing is marked
        changed = sum(self._apply(s, mask) for s, mask in masks.items())
        shapes.selected_data = set(range(len(shapes.data)))
        shapes.remove_selected()
        self._after_review(set(masks), changed)
        self.viewer.layers.selection.active = self._layer
        return changed

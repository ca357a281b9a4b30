"""The guidance panel's "Next region to review" (moved out of ``guidance_panel``): a mixin of
:class:`~napari_unet._widgets.guidance_panel.GuidancePanel`, which provides ``viewer``,
``_target``, ``show_uncertainty`` and the ``why`` label.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from napari_unet._widgets import layers as L
from napari_unet.core.inference.uncertainty import most_uncertain_tile

logger = logging.getLogger(__name__)

ROLE = "uncertainty"
TILE = 128
MAX_SLICES = 8


def scene_camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, else ``viewer.camera``)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


class RegionJumps:
    """Find the most uncertain unreviewed tile near the current slice and move the camera there."""

    def _excluded(self, image_name: str, layout: Any, s: int) -> np.ndarray | None:
        labels = L.find_plugin_layer(self.viewer, role="labels", image_layer=image_name)
        reviewed = (L.plugin_tag(labels) or {}).get("reviewed") if labels is not None else None
        if not isinstance(reviewed, np.ndarray) or reviewed.shape != tuple(layout.spatial_shape):
            return None
        return reviewed[L.slice_index(layout, s)]

    def next_region(self) -> None:
        """Measure (if needed) then jump to the most uncertain unreviewed tile."""
        image, _, layout, current = self._target()
        candidates = [current]
        for s in sorted(range(layout.n_slices), key=lambda s: abs(s - current)):
            excluded = self._excluded(image.name, layout, s)
            if s != current and (excluded is None or not excluded.all()):
                candidates.append(s)
            if len(candidates) >= MAX_SLICES:
                break
        self.show_uncertainty(candidates, then=lambda: self._jump_best(candidates))

    def _jump_best(self, candidates: list[int]) -> tuple[int, int, int, float] | None:
        image, axes, layout, _ = self._target()
        layer = L.find_plugin_layer(self.viewer, role=ROLE, image_layer=image.name)
        best = None
        for s in candidates:
            if s not in L.plugin_tag(layer)["computed"]:
                continue
            plane = np.asarray(layer.data[L.slice_index(layout, s)])
            found = most_uncertain_tile(plane, self._excluded(image.name, layout, s), TILE)
            if found is not None and (best is None or found[2] > best[3]):
                best = (s, *found)
        if best is None:
            self.why.setText("Everything here is reviewed: nothing left to look at.")
            return None
        s, y0, x0, score = best
        self.jump_to(image, axes, layout, s, (y0, x0))
        where = f", slice {s}" if layout.n_slices > 1 else ""
        self.why.setText(f"Uncertainty {score:.2f}{where}: tile at y={y0}, x={x0}.")
        return best

    def jump_to(self, image: Any, axes: str, layout: Any, s: int, corner: tuple[int, int]) -> None:
        """Centre the camera on the tile at ``corner`` of slice ``s`` and zoom onto it."""
        dims = L._layer_dims(image, axes)
        height, width = layout.yx_shape
        cy = corner[0] + min(TILE, height) / 2
        cx = corner[1] + min(TILE, width) / 2
        stack = dict(zip(layout.stack_axes, L.slice_index(layout, s)))
        point = np.asarray(self.viewer.dims.point, dtype=float)[-len(dims) :]
        data = np.asarray(image.world_to_data(point), dtype=float)[-len(dims) :]
        for d, letter in enumerate(dims):
            data[d] = {"Y": cy, "X": cx}.get(letter, stack.get(letter, data[d]))
        world = np.asarray(image.data_to_world(data), dtype=float)
        offset = self.viewer.dims.ndim - len(world)
        for d, letter in enumerate(dims):
            if letter in stack:
                self.viewer.dims.set_point(offset + d, world[d])
        camera = scene_camera(self.viewer)
        camera.center = (world[dims.index("Y")], world[dims.index("X")])
        canvas = getattr(self.viewer, "_canvas_size", None) or (512, 512)
        scale = float(np.asarray(image.scale)[dims.index("Y")])
        camera.zoom = 0.9 * min(canvas) / (TILE * scale)

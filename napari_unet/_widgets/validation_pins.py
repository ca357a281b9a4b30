"""Pinning validation data from the viewer: the shown slice, or rectangles in a Shapes layer.

Main thread only (it reads layers). The pins go to the session
(:meth:`~napari_unet.session.Session.pin_validation`); the trainer holds those pixels back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_unet._widgets import layers as L
from napari_unet._widgets import reviewed as rv
from napari_unet.core.errors import UserInputError

PINS_ROLE = "validation_regions"
Rect = tuple[int, int, int, int]


def session_labels_layer(viewer: Any) -> Any | None:
    """The labels layer linked to a session image: the active one if linked, else the first."""
    candidates = [
        layer
        for layer in viewer.layers
        if (tag := L.plugin_tag(layer))
        and tag.get("role") == "labels"
        and tag.get("session_image_id")
    ]
    active = viewer.layers.selection.active
    if active in candidates:
        return active
    return candidates[0] if candidates else None


def _require_layer(viewer: Any) -> tuple[Any, str]:
    layer = session_labels_layer(viewer)
    if layer is None:
        raise UserInputError(
            "No labels layer belongs to the session: predict an image in the U-Net Segment dock "
            "and add it to the session first."
        )
    return layer, str(L.plugin_tag(layer)["session_image_id"])


def current_slice(viewer: Any, layer: Any) -> int:
    """The slice of ``layer`` the viewer shows (0 for a 2-D layer)."""
    shape = tuple(layer.data.shape)
    if len(shape) <= 2:
        return 0
    position = np.asarray(layer.world_to_data(viewer.dims.point), dtype=float)
    return rv.flat_index(shape, np.round(position[-len(shape) : -2]))


def pin_current_slice(viewer: Any, session: Any) -> tuple[str, int]:
    """Pin the shown slice of the session's labels layer; returns ``(image_id, slice)``."""
    layer, image_id = _require_layer(viewer)
    index = current_slice(viewer, layer)
    session.pin_validation(image_id, index)
    return image_id, index


def pins_layer(viewer: Any, *, create: bool = True) -> Any | None:
    """The "validation regions" Shapes layer (the active Shapes layer wins), made on request."""
    active = viewer.layers.selection.active
    if active is not None and active._type_string == "shapes":
        return active
    for layer in viewer.layers:
        meta = layer.metadata.get(rv.META_KEY) if isinstance(layer.metadata, dict) else None
        if isinstance(meta, dict) and meta.get("role") == PINS_ROLE:
            return layer
    if not create:
        return None
    labels = session_labels_layer(viewer)
    kwargs = {} if labels is None else {"scale": labels.scale, "translate": labels.translate}
    return viewer.add_shapes(
        name="validation regions",
        ndim=2 if labels is None else labels.ndim,
        edge_color="#f0a030",
        face_color=[0.94, 0.63, 0.19, 0.15],
        edge_width=1,
        metadata={rv.META_KEY: {"role": PINS_ROLE}},
        **kwargs,
    )


def shape_rects(shapes: Any, labels: Any) -> list[tuple[int, Rect]]:
    """``(slice, (y0, x0, y1, x1))`` bounding boxes, in labels pixels, of rectangles/polygons."""
    shape = tuple(labels.data.shape)
    out = []
    for vertices, kind in zip(shapes.data, shapes.shape_type, strict=True):
        if kind not in ("rectangle", "polygon"):
            continue
        world = np.asarray([shapes.data_to_world(v) for v in vertices])
        coords = np.asarray([labels.world_to_data(w) for w in world])
        if coords.shape[1] != len(shape):
            continue
        index = rv.flat_index(shape, np.round(coords[0, :-2]))
        # pixels whose centre lies inside, as the correction tools count them
        low = np.clip(np.ceil(coords[:, -2:].min(axis=0)), 0, shape[-2:]).astype(int)
        high = np.clip(np.floor(coords[:, -2:].max(axis=0)) + 1, 0, shape[-2:]).astype(int)
        if np.all(high > low):
            out.append((index, (int(low[0]), int(low[1]), int(high[0]), int(high[1]))))
    return out


def pin_drawn_rectangles(viewer: Any, session: Any) -> int:
    """Pin every rectangle of the regions layer (then cleared); returns how many were pinned.

    With nothing drawn yet, the regions layer is selected in rectangle mode and 0 is returned.
    """
    layer, image_id = _require_layer(viewer)
    shapes = pins_layer(viewer)
    rects = shape_rects(shapes, layer) if len(shapes.data) else []
    if not rects:
        viewer.layers.selection.active = shapes
        shapes.mode = "add_rectangle"
        return 0
    for index, rect in rects:
        session.pin_validation(image_id, index, rect)
    shapes.selected_data = set(range(len(shapes.data)))
    shapes.remove_selected()
    viewer.layers.selection.active = layer
    return len(rects)

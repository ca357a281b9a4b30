"""Reviewed masks, per-slice status and the reviewed overlay of a labels layer.

The state lives in the labels layer's tag ``layer.metadata["napari_unet"]`` (see the GUI
contracts in DEVELOPERS.md): ``"reviewed"`` is a bool array shaped like ``layer.data``,
``"snapshot"`` what the model last produced and ``"predicted"`` the slices it produced.

Slices: a labels array of shape ``(*stack, Y, X)`` has ``prod(stack)`` slices, numbered in C
order over the stack axes (a 2-D array has the single slice 0). Every helper here takes and
returns plain numpy arrays; only :func:`ensure_overlay` and :func:`find_overlay` touch the viewer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet.session.tracking import annotated_mask, slice_status

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

META_KEY = "napari_unet"
#: Role of the overlay layer that shows the reviewed mask.
REVIEWED_ROLE = "reviewed"
#: Role of the Shapes layer in which the user draws rectangles to mark as reviewed.
REGIONS_ROLE = "review_regions"
#: Faint: a light tint that leaves dim objects under it visible (0.3 washed them out).
OVERLAY_OPACITY = 0.12


def plugin_meta(layer: Any, *, create: bool = False) -> dict | None:
    """The layer's ``metadata["napari_unet"]`` dict (created empty when ``create``)."""
    meta = layer.metadata.get(META_KEY)
    if isinstance(meta, dict):
        return meta
    if not create:
        return None
    meta = {}
    layer.metadata[META_KEY] = meta
    return meta


def role_of(layer: Any) -> str | None:
    """The plugin role of a layer (``"labels"``, ``"reviewed"``...), or None."""
    meta = plugin_meta(layer)
    return meta.get("role") if meta else None


def n_slices(shape: tuple[int, ...]) -> int:
    """Number of 2-D slices of a ``(*stack, Y, X)`` shape."""
    return math.prod(shape[:-2]) if len(shape) > 2 else 1


def slice_key(shape: tuple[int, ...], index: int) -> tuple[int, ...]:
    """Index tuple of slice ``index`` over the stack axes (``()`` for a 2-D array)."""
    if len(shape) <= 2:
        if index != 0:
            raise IndexError(f"a 2-D array has only slice 0, got {index}")
        return ()
    return tuple(int(i) for i in np.unravel_index(index, shape[:-2]))


def plane(array: np.ndarray, index: int) -> np.ndarray:
    """The (Y, X) view of slice ``index`` of a ``(*stack, Y, X)`` array (writes go through)."""
    return array[slice_key(array.shape, index)]


def flat_index(shape: tuple[int, ...], stack_coords: Iterable[int]) -> int:
    """Slice number of integer coordinates over the stack axes, clipped into range."""
    if len(shape) <= 2:
        return 0
    coords = [min(max(int(c), 0), n - 1) for c, n in zip(stack_coords, shape[:-2], strict=True)]
    return int(np.ravel_multi_index(coords, shape[:-2]))


def label_kind(layer: Any) -> str:
    """``"semantic"`` for plugin semantic outputs, else ``"instances"`` (one id per object)."""
    meta = plugin_meta(layer) or {}
    return "semantic" if meta.get("output") == "semantic" else "instances"


def reviewed_mask(layer: Any) -> np.ndarray:
    """The layer's reviewed mask (bool, ``layer.data.shape``), created empty when missing."""
    meta = plugin_meta(layer, create=True)
    shape = tuple(layer.data.shape)
    mask = meta.get("reviewed")
    if not isinstance(mask, np.ndarray) or mask.shape != shape or mask.dtype != bool:
        mask = np.zeros(shape, dtype=bool)
        meta["reviewed"] = mask
    return mask


def snapshot_plane(layer: Any, index: int) -> np.ndarray | None:
    """The prediction snapshot of slice ``index`` (None where the model never predicted)."""
    meta = plugin_meta(layer) or {}
    snapshot = meta.get("snapshot")
    if not isinstance(snapshot, np.ndarray) or snapshot.shape != tuple(layer.data.shape):
        return None
    predicted = meta.get("predicted")
    if predicted is not None and index not in set(predicted):
        return None
    return plane(snapshot, index)


def reviewed_plane(layer: Any, index: int) -> np.ndarray | None:
    """The reviewed mask of slice ``index``, or None when nothing is reviewed there."""
    meta = plugin_meta(layer) or {}
    mask = meta.get("reviewed")
    if not isinstance(mask, np.ndarray) or mask.shape != tuple(layer.data.shape):
        return None
    view = plane(mask, index)
    return view if view.any() else None


def status_of(layer: Any, index: int) -> str:
    """``unlabelled`` | ``predicted`` | ``edited`` | ``reviewed`` of slice ``index``."""
    labels = np.asarray(plane(layer.data, index))
    return slice_status(labels, snapshot_plane(layer, index), reviewed_plane(layer, index))


def annotated_plane(layer: Any, index: int) -> np.ndarray:
    """(Y, X) bool: reviewed ∪ changed ∪ extent of every touched object, for slice ``index``."""
    labels = np.asarray(plane(layer.data, index))
    return annotated_mask(
        labels, snapshot_plane(layer, index), reviewed_plane(layer, index), kind=label_kind(layer)
    )


def mark_reviewed(
    layer: Any, index: int, region: tuple[slice, slice] | np.ndarray | None = None
) -> int:
    """Mark pixels of slice ``index`` reviewed; returns how many were newly marked.

    Args:
        layer: the labels layer.
        index: slice number.
        region: None (whole slice), a ``(slice_y, slice_x)`` box, or a (Y, X) bool mask.
    """
    view = plane(reviewed_mask(layer), index)
    if region is None:
        region = (slice(None), slice(None))
    before = int(np.count_nonzero(view))
    view[region] = True
    return int(np.count_nonzero(view)) - before


def unmark_reviewed(
    layer: Any, index: int, region: tuple[slice, slice] | np.ndarray | None = None
) -> int:
    """Un-mark reviewed pixels of slice ``index`` (the eraser); returns how many were un-marked.

    ``region`` as in :func:`mark_reviewed`.
    """
    view = plane(reviewed_mask(layer), index)
    if region is None:
        region = (slice(None), slice(None))
    before = int(np.count_nonzero(view))
    view[region] = False
    return before - int(np.count_nonzero(view))


def paint_slices(value: Any, shape: tuple[int, ...]) -> set[int] | None:
    """Slices touched by a ``Labels.events.paint`` history item (None: cannot tell).

    The item is a list of atoms, either ``(indices, old_values, new_value)`` with one index
    array per axis, or napari's masked atom with a ``slice_key`` bounding box.
    """
    if len(shape) <= 2:
        return {0}
    stack = shape[:-2]
    touched: set[int] = set()
    try:
        for atom in value:
            key = getattr(atom, "slice_key", None)
            if key is not None:
                ranges = [range(*s.indices(n)) for s, n in zip(key[: len(stack)], stack)]
                grids = np.meshgrid(*[np.asarray(r) for r in ranges], indexing="ij")
                flat = np.ravel_multi_index([g.ravel() for g in grids], stack)
            else:
                indices = atom[0]
                coords = [np.asarray(i).ravel() for i in indices[: len(stack)]]
                flat = np.ravel_multi_index(coords, stack)
            touched.update(int(i) for i in np.unique(flat))
    except (TypeError, ValueError, IndexError):
        return None
    return touched


def next_free_label(data: np.ndarray) -> int:
    """``max(data) + 1`` over the whole array (1 for an empty or all-zero array)."""
    if data.size == 0:
        return 1
    return int(np.max(data)) + 1


def rectangles_to_masks(shapes_layer: Any, labels_layer: Any) -> dict[int, np.ndarray]:
    """Pixels covered by the rectangles and polygons of a Shapes layer, per labels slice.

    Vertices go through world coordinates, so the two layers may differ in scale or translate.
    A pixel counts when its centre lies inside the shape. Lines, paths and ellipses are ignored.

    Returns:
        ``{slice index: (Y, X) bool mask}`` for slices that some shape covers.
    """
    from skimage.draw import polygon2mask

    shape = tuple(labels_layer.data.shape)
    yx = shape[-2:]
    masks: dict[int, np.ndarray] = {}
    for vertices, kind in zip(shapes_layer.data, shapes_layer.shape_type, strict=True):
        if kind not in ("rectangle", "polygon"):
            continue
        world = np.asarray([shapes_layer.data_to_world(v) for v in vertices])
        coords = np.asarray([labels_layer.world_to_data(w) for w in world])
        if coords.shape[1] != len(shape):
            continue
        index = flat_index(shape, np.round(coords[0, :-2]))
        yx_coords = coords[:, -2:]
        box = np.stack([yx_coords.min(axis=0), yx_coords.max(axis=0)])
        mask = masks.setdefault(index, np.zeros(yx, dtype=bool))
        axis_aligned = kind == "rectangle" and all(
            np.allclose(np.sort(np.unique(np.round(yx_coords[:, a], 6))), box[:, a])
            for a in range(2)
        )
        if axis_aligned:
            lo = np.clip(np.ceil(box[0]), 0, yx).astype(int)
            hi = np.clip(np.floor(box[1]) + 1, 0, yx).astype(int)
            mask[lo[0] : hi[0], lo[1] : hi[1]] = True
        else:
            mask |= polygon2mask(yx, yx_coords)
    return masks


def find_overlay(viewer: napari.Viewer, labels_layer: Any) -> Any | None:
    """The reviewed overlay of ``labels_layer`` in the viewer, or None."""
    for layer in viewer.layers:
        meta = plugin_meta(layer)
        if (
            meta
            and meta.get("role") == REVIEWED_ROLE
            and meta.get("labels_layer") == (labels_layer.name)
        ):
            return layer
    return None


def ensure_overlay(viewer: napari.Viewer, labels_layer: Any) -> Any:
    """Create or update the faint overlay that shows the reviewed mask of ``labels_layer``.

    The overlay is an Image layer viewing the mask's memory as uint8 (no copy), additive and
    translucent, so marking pixels in place and calling ``refresh()`` keeps it in sync. Adding it
    keeps ``labels_layer`` the active layer.
    """
    mask = reviewed_mask(labels_layer)
    data = mask.view(np.uint8)
    overlay = find_overlay(viewer, labels_layer)
    if overlay is not None:
        if overlay.data is not data and not np.shares_memory(overlay.data, mask):
            overlay.data = data
        else:
            overlay.refresh()
        return overlay
    meta = plugin_meta(labels_layer) or {}
    active = viewer.layers.selection.active
    overlay = viewer.add_image(
        data,
        name=f"{labels_layer.name} reviewed",
        colormap="cyan",
        contrast_limits=(0, 1),
        opacity=OVERLAY_OPACITY,
        blending="additive",
        scale=labels_layer.scale,
        translate=labels_layer.translate,
        metadata={
            META_KEY: {
                "role": REVIEWED_ROLE,
                "image_layer": meta.get("image_layer", labels_layer.name),
                "labels_layer": labels_layer.name,
            }
        },
    )
    if active is not None and active in viewer.layers:
        viewer.layers.selection.active = active
    return overlay

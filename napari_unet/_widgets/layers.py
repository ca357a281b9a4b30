"""Plugin layers: tags in ``layer.metadata``, axes, slices, visible region, safe label writes.

Everything here runs on the main thread (it touches layers) and imports no Qt. The tag contract
(DEVELOPERS.md, "GUI contracts"): ``layer.metadata["napari_unet"]`` is a dict with ``role``,
``image_layer`` and, for ``role == "labels"``, ``task``, ``output``, ``model``, ``snapshot``
(what the model last produced, same shape as ``layer.data``), ``predicted`` (sorted slice
indices), ``reviewed`` (bool, same shape as ``layer.data``) and ``session_image_id``.

Slice ``s`` is the flattened index over the image's stack axes (:class:`StackLayout`); a 2-D image
has the single slice 0. Labels layers have the image's spatial shape (stack axes, then Y, X).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet.core.io.axes import StackLayout, check_axes, guess_axes

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels, Layer

logger = logging.getLogger(__name__)

TAG = "napari_unet"
Region = tuple[slice, slice]

#: Axes offered when the shape alone cannot tell them (by number of dimensions).
AXES_CHOICES: dict[int, tuple[str, ...]] = {
    3: ("ZYX", "TYX", "CYX", "YXC"),
    4: ("ZCYX", "CZYX", "TZYX", "ZYXC"),
    5: ("TZCYX", "TCZYX", "CTZYX"),
}


def plugin_tag(layer: Layer) -> dict | None:
    """The plugin's tag dict of ``layer``, or None for layers the plugin did not create."""
    tag = layer.metadata.get(TAG) if isinstance(layer.metadata, dict) else None
    return tag if isinstance(tag, dict) and "role" in tag else None


def find_plugin_layer(viewer: napari.Viewer, *, role: str, image_layer: str) -> Layer | None:
    """The plugin layer with ``role`` that belongs to the image layer named ``image_layer``."""
    for layer in viewer.layers:
        tag = plugin_tag(layer)
        if tag and tag.get("role") == role and tag.get("image_layer") == image_layer:
            return layer
    return None


def n_values(layer: Layer) -> int:
    """Number of values in ``layer.data``, from its shape: never reads a lazy (dask) array.

    (``np.size`` would: dask does not implement it and computes the whole array instead.)
    """
    return math.prod(int(s) for s in np.shape(layer.data))


def layer_axes(layer: Image) -> str:
    """Axes of the image layer's data: the reader's, napari's ``rgb`` flag, else a safe guess.

    Raises:
        AxesError: the axes cannot be told from the shape (the message says to pick them).
    """
    tag = layer.metadata.get(TAG) if isinstance(layer.metadata, dict) else None
    axes = tag.get("axes") if isinstance(tag, dict) else None
    shape = tuple(np.shape(layer.data))
    if axes:
        return check_axes(str(axes), shape)
    return guess_axes(shape, rgb=bool(getattr(layer, "rgb", False)))


def axes_choices(ndim: int) -> tuple[str, ...]:
    """Axes strings to offer for an image with ``ndim`` dimensions."""
    return AXES_CHOICES.get(ndim, ())


def layout_of(layer: Image, axes: str) -> StackLayout:
    """The :class:`StackLayout` of the image layer's data read with ``axes``."""
    shape = tuple(int(s) for s in np.shape(layer.data))
    return StackLayout(axes=check_axes(axes, shape), shape=shape)


def _layer_dims(layer: Image, axes: str) -> str:
    """The axes letters of the layer's napari dimensions (an RGB channel is not a dimension)."""
    return axes[:-1] if getattr(layer, "rgb", False) and axes.endswith("C") else axes


def current_slice(viewer: napari.Viewer, layer: Image, axes: str) -> int:
    """The flattened stack index of the slice the viewer shows for ``layer`` (0 for 2-D)."""
    layout = layout_of(layer, axes)
    if layout.n_slices == 1:
        return 0
    dims = _layer_dims(layer, axes)
    position = np.asarray(layer.world_to_data(viewer.dims.point), dtype=float)[-len(dims) :]
    index = []
    for letter, size in zip(layout.stack_axes, layout.stack_shape):
        value = int(np.round(position[dims.index(letter)]))
        index.append(min(max(value, 0), size - 1))
    return int(np.ravel_multi_index(tuple(index), layout.stack_shape))


def visible_region(viewer: napari.Viewer, layer: Image, axes: str) -> Region | None:
    """The (Y, X) part of the image in the canvas field of view, or None for the whole image.

    Uses ``layer.corner_pixels`` (data coordinates of the viewport, set on every draw). When Y and
    X are not the displayed dimensions (3-D view, transposed axes) the whole image is used.
    """
    layout = layout_of(layer, axes)
    height, width = layout.yx_shape
    dims = _layer_dims(layer, axes)
    y_dim, x_dim = dims.index("Y"), dims.index("X")
    offset = viewer.dims.ndim - layer.ndim  # layers are right-aligned in the world dims
    displayed = {int(d) - offset for d in viewer.dims.displayed}
    if viewer.dims.ndisplay != 2 or displayed != {y_dim, x_dim}:
        return None
    (y0, x0), (y1, x1) = _level0_corners(layer)[:, [y_dim, x_dim]]
    y0, x0 = max(int(y0), 0), max(int(x0), 0)
    y1, x1 = min(int(y1), height), min(int(x1), width)
    if y1 - y0 < 2 or x1 - x0 < 2 or (y0, x0, y1, x1) == (0, 0, height, width):
        return None
    return slice(y0, y1), slice(x0, x1)


def _level0_corners(layer: Image) -> np.ndarray:
    """``layer.corner_pixels`` as full-resolution ``[start, stop)`` pixels, shape (2, ndim).

    For a pyramid napari gives the corners in the pixels of the level on screen
    (``data_level``); prediction runs on level 0, so they are scaled by that level's factors.
    """
    corners = np.asarray(layer.corner_pixels, dtype=float)
    factors = np.ones(corners.shape[1])
    if getattr(layer, "multiscale", False):
        factors = np.asarray(layer.downsample_factors[layer.data_level], dtype=float)
    return np.stack([np.floor(corners[0] * factors), np.ceil((corners[1] + 1) * factors)])


def labels_metadata(
    image_name: str,
    shape: tuple[int, ...],
    *,
    task: str,
    output: str,
    model: str,
    dtype: Any = np.uint16,
) -> dict[str, Any]:
    """A fresh ``"labels"`` tag for a labels layer of ``shape`` (nothing predicted or reviewed)."""
    return {
        "role": "labels",
        "image_layer": image_name,
        "task": task,
        "output": output,
        "model": model,
        "snapshot": np.zeros(shape, dtype=dtype),
        "predicted": [],
        "reviewed": np.zeros(shape, dtype=bool),
        "session_image_id": None,
    }


def spatial_transform(layer: Image, axes: str) -> dict[str, Any]:
    """``scale`` and ``translate`` for a spatial (channel-free) layer aligned with ``layer``."""
    dims = _layer_dims(layer, axes)
    keep = [i for i, letter in enumerate(dims) if letter != "C"]
    return {
        "scale": np.asarray(layer.scale)[keep],
        "translate": np.asarray(layer.translate)[keep],
    }


def slice_index(layout: StackLayout, s: int) -> tuple[int, ...]:
    """The index tuple of slice ``s`` into a spatial array (stack axes, Y, X)."""
    if not layout.stack_shape:
        return ()
    return tuple(int(i) for i in np.unravel_index(s, layout.stack_shape))


def fully_reviewed(layer: Labels, layout: StackLayout, slices: list[int]) -> list[int]:
    """The slices among ``slices`` whose every pixel is reviewed: nothing there is replaced.

    Everything else is predicted and merged around the user's work
    (:mod:`napari_unet._widgets.label_writes`): edited and reviewed pixels are kept.
    """
    reviewed = (plugin_tag(layer) or {}).get("reviewed")
    if not isinstance(reviewed, np.ndarray) or reviewed.shape != tuple(layer.data.shape):
        return []
    return [s for s in slices if reviewed[slice_index(layout, s)].all()]


def offset_ids(labels: np.ndarray, offset: int) -> np.ndarray:
    """Instance ids shifted by ``offset`` (background stays 0), in a dtype that holds them."""
    if offset <= 0 or not labels.any():
        return labels
    top = int(labels.max()) + offset
    dtype = np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32
    shifted = labels.astype(np.promote_types(labels.dtype, dtype))
    shifted[shifted > 0] += offset
    return shifted


def write_into(
    data: np.ndarray,
    tag: dict[str, Any],
    layout: StackLayout,
    labels: np.ndarray,
    slices: list[int],
    region: Region | None,
) -> np.ndarray:
    """Write predicted ``labels`` (n, h, w) for ``slices`` into ``data`` and ``tag["snapshot"]``.

    Instance ids written into a region are shifted above the ids left around it in that slice,
    so the region's objects never merge with older ones. ``tag["predicted"]`` is updated.

    Returns:
        ``data`` itself, or a copy in a wider dtype when the new ids need one.
    """
    snapshot = tag["snapshot"]
    instances = tag.get("output") == "instances"
    ys, xs = region if region is not None else (slice(None), slice(None))
    pieces = []
    for i, s in enumerate(slices):
        piece = labels[i]
        if instances and region is not None:
            around = data[slice_index(layout, s)].copy()
            around[ys, xs] = 0
            piece = offset_ids(piece, int(around.max()))
        pieces.append(piece)
    dtype = np.result_type(data.dtype, *(p.dtype for p in pieces))
    if dtype != data.dtype:
        data = data.astype(dtype)
    if snapshot.dtype != np.result_type(snapshot.dtype, dtype):
        snapshot = snapshot.astype(dtype)
    for s, piece in zip(slices, pieces):
        index = (*slice_index(layout, s), ys, xs)
        data[index] = piece
        snapshot[index] = piece
    tag["snapshot"] = snapshot
    tag["predicted"] = sorted(set(tag.get("predicted", [])) | {int(s) for s in slices})
    return data


def write_probabilities_into(
    data: np.ndarray,
    layout: StackLayout,
    probabilities: np.ndarray,
    slices: list[int],
    region: Region | None,
) -> None:
    """Write foreground ``probabilities`` (n, h, w) into ``data`` (*spatial) in place."""
    ys, xs = region if region is not None else (slice(None), slice(None))
    for i, s in enumerate(slices):
        data[(*slice_index(layout, s), ys, xs)] = probabilities[i]

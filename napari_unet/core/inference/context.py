"""2.5-D prediction: each slice of a Z-stack given to a 2-D net with its neighbours as channels.

A 2.5-D model (``model.context_slices = r > 0``, set by
:func:`~napari_unet.core.checkpoint.format.load_checkpoint` from the checkpoint) is a 2-D net
whose input is slice ``z`` and the ``r`` slices above and below it
(:func:`~napari_unet.core.models.context25d.stack_neighbour_slices`: neighbour-major channels,
mirrored beyond the first and last slice). :func:`with_context` turns the image a caller gives
``iter_predict`` into that input, so every caller (``predict``, the GUI, ``simulate``) predicts a
2.5-D model as it predicts a 2-D one: each slice is then normalised per channel on its own, as the
training items were (:mod:`napari_unet.core.training.context`).

Only a ``Z`` axis gives neighbours. An image without one (a single 2-D image, a ``T`` series, a
generic ``S`` stack of slices that need not be consecutive, as the GUI sends the slices it
predicts) is predicted slice by slice with each slice repeated as its own neighbours, and a warning
says so: the user gets a segmentation of the image they gave (the net saw the same structure
above and below, the case of a structure that runs straight through Z), not a refusal, and learns
that the whole Z-stack gives the context the model was trained with.

Example:
    >>> import numpy as np
    >>> image, axes = with_context_radius(np.zeros((5, 8, 8), np.uint8), "ZYX", 1)
    >>> image.shape, axes
    ((5, 3, 8, 8), 'ZCYX')
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np

from napari_unet.core.io.axes import StackLayout, check_axes, to_stack
from napari_unet.core.io.lazy import full_resolution, stack_slices
from napari_unet.core.io.neighbours import neighbour_indices

logger = logging.getLogger(__name__)

__all__ = ["context_radius", "neighbour_stack", "with_context", "with_context_radius"]


def context_radius(model: object) -> int:
    """Neighbour slices on each side that ``model`` takes as channels (0: a plain 2-D model)."""
    return int(getattr(model, "context_slices", 0) or 0)


def with_context(model: object, image: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """``(image, axes)`` as ``model`` takes it: unchanged for a model without 2.5-D context, or
    for slices that already hold their neighbours (``model.in_channels`` channels, e.g. from
    :func:`neighbour_stack`); otherwise :func:`with_context_radius`."""
    radius = context_radius(model)
    if radius == 0 or to_stack(image, axes)[1].n_channels == getattr(model, "in_channels", 0):
        return image, axes
    return with_context_radius(image, axes, radius)


def neighbour_stack(image: Any, axes: str, indices: Iterable[int], radius: int) -> np.ndarray:
    """Flat slices ``indices`` of ``image``, each with its ``radius`` Z neighbours as channels.

    For callers that predict a few slices of a Z-stack (the GUI's displayed slice): only those
    slices and their neighbours are read (:func:`~napari_unet.core.io.lazy.stack_slices`, so a
    Zarr/dask image stays lazy). Without a Z axis each slice is its own neighbour.

    Returns:
        ``(n, C * (2r + 1), Y, X)`` in the image's dtype (axes ``"SCYX"``), which a model with
        ``in_channels = C * (2r + 1)`` takes as it is (:func:`with_context`).
    """
    image = full_resolution(image)  # a pyramid: its full-resolution level
    layout = StackLayout(
        axes=check_axes(axes, tuple(np.shape(image))), shape=tuple(np.shape(image))
    )
    indices = [int(i) for i in indices]
    shape, stack_axes = layout.stack_shape, layout.stack_axes
    coords = (
        np.array(np.unravel_index(indices, shape)) if shape else np.zeros((0, len(indices)), int)
    )
    if "Z" in stack_axes:
        z = stack_axes.index("Z")
        around = neighbour_indices(shape[z], radius)[coords[z]]  # (n, 2r + 1)
        coords = np.repeat(coords[:, :, None], around.shape[1], axis=2)
        coords[z] = around
        flat = np.ravel_multi_index(tuple(coords), shape)  # (n, 2r + 1)
    else:
        flat = np.repeat(np.asarray(indices)[:, None], 2 * radius + 1, axis=1)
    unique, inverse = np.unique(flat, return_inverse=True)
    planes = stack_slices(image, axes, unique)[inverse.reshape(flat.shape)]  # (n, 2r+1, C, Y, X)
    return planes.reshape(len(indices), -1, *planes.shape[-2:])


def with_context_radius(image: np.ndarray, axes: str, radius: int) -> tuple[np.ndarray, str]:
    """Each slice of ``image`` with ``radius`` neighbours on each side as extra channels.

    Args:
        image: Any real dtype, dimensions named by ``axes`` (not modified).
        axes: E.g. ``"ZYX"``, ``"TZCYX"``, ``"YX"``.
        radius: Neighbours on each side (``r``).

    Returns:
        ``(stacked, stack_axes + "CYX")``: ``stacked`` is ``(*stack_shape, C * (2r + 1), Y, X)``
        in the image's dtype (a copy), its stack axes in their original order, so the
        probabilities of ``iter_predict`` keep the image's spatial layout.

    Raises:
        AxesError: ``axes`` does not fit ``image``.
    """
    stack, layout = to_stack(image, axes)  # (S, C, Y, X)
    full = stack.reshape(*layout.stack_shape, *stack.shape[1:])
    stack_axes = layout.stack_axes
    if "Z" not in stack_axes or layout.stack_shape[stack_axes.index("Z")] < 2:
        logger.warning(
            "this 2.5-D model takes %d slice(s) above and below each slice, but the image (axes "
            "%s) has no Z-stack to take them from: each slice is used as its own neighbours; "
            "predict the whole Z-stack for the context it was trained with.",
            radius,
            layout.axes,
        )
        stacked = np.tile(full, (1,) * len(stack_axes) + (2 * radius + 1, 1, 1))
        return stacked, stack_axes + "CYX"
    z = stack_axes.index("Z")
    moved = np.moveaxis(full, z, -4)  # (*others, Z, C, Y, X)
    index = neighbour_indices(moved.shape[-4], radius)  # (Z, 2r + 1)
    gathered = moved[..., index, :, :, :]  # (*others, Z, 2r + 1, C, Y, X)
    shape = (*gathered.shape[:-4], -1, *gathered.shape[-2:])
    stacked = np.ascontiguousarray(np.moveaxis(gathered.reshape(shape), -4, z))
    return stacked, stack_axes + "CYX"

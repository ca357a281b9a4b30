"""Images that are not in memory (Zarr arrays, dask arrays): read them one 2-D slice at a time.

Everything here takes any array-like that supports ``shape`` and basic indexing (numpy, zarr,
dask) and only ever materialises the slices asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from napari_unet.core.errors import ImageReadError
from napari_unet.core.io.axes import STACK_LETTERS, StackLayout, check_axes, to_stack


def full_resolution(image: Any) -> Any:
    """Level 0 of a pyramid (napari ``MultiScaleData``, a list/tuple of arrays), else ``image``.

    napari-ome-zarr and bioio open an OME-Zarr image as a pyramid: a sequence of array-likes,
    full resolution first. Prediction always runs on that first level; the layer's ``scale`` and
    ``translate`` are those of level 0, so outputs stay aligned.

    Raises:
        ImageReadError: an empty pyramid, or one whose first level is not an array.
    """
    if isinstance(image, np.ndarray) or not isinstance(image, Sequence):
        return image
    if len(image) == 0 or not hasattr(image[0], "shape"):
        raise ImageReadError(
            "the image is an empty pyramid or a list that is not one of arrays: open it as a "
            "single array (or a pyramid whose first level is the full-resolution image)."
        )
    return image[0]


def slice_axes(axes: str) -> str:
    """Axes of one 2-D slice of an image with ``axes``: the stack letters removed (``"CYX"``)."""
    return "".join(a for a in axes if a not in STACK_LETTERS)


def stack_index(layout: StackLayout, index: int) -> tuple[int, ...]:
    """The position along the stack axes (in their order) of flat slice ``index``."""
    if not 0 <= index < layout.n_slices:
        raise IndexError(f"slice {index} is outside 0..{layout.n_slices - 1}")
    return (
        tuple(int(i) for i in np.unravel_index(index, layout.stack_shape))
        if layout.stack_axes
        else ()
    )


def read_slice(array: Any, layout: StackLayout, index: int) -> np.ndarray:
    """Load flat slice ``index`` of ``array`` (laid out as ``layout``) into memory.

    Returns:
        The slice with the axes :func:`slice_axes` gives (e.g. ``(C, Y, X)`` for ``"TCZYX"``).

    Raises:
        ImageReadError: a chunk of the slice cannot be read or decoded (damaged store).
    """
    position = dict(zip(layout.stack_axes, stack_index(layout, index), strict=True))
    key = tuple(position.get(a, slice(None)) for a in layout.axes)
    try:
        return np.asarray(array[key])
    except (ValueError, OSError, RuntimeError) as err:
        raise ImageReadError(
            f"cannot read slice {index} of the image: a chunk is damaged or unreadable "
            f"({type(err).__name__}: {err})."
        ) from err


def iter_slices(
    array: Any, layout: StackLayout, indices: Any = None
) -> Iterator[tuple[int, np.ndarray]]:
    """``(flat index, slice)`` for each of ``indices`` (default all), loading one at a time."""
    for index in range(layout.n_slices) if indices is None else indices:
        yield int(index), read_slice(array, layout, int(index))


def stack_slices(image: Any, axes: str, indices: Iterable[int]) -> np.ndarray:
    """Slices ``indices`` of ``image`` as an in-memory ``(n, C, Y, X)`` array.

    A numpy ``image`` is indexed through its :func:`~napari_unet.core.io.axes.to_stack` view; any
    other array-like (Zarr, dask) is read slice by slice, so only those slices are loaded. A
    pyramid (napari ``MultiScaleData``, a list of arrays) is read at its full resolution
    (:func:`full_resolution`).
    """
    indices = [int(i) for i in indices]
    image = full_resolution(image)
    if isinstance(image, np.ndarray):
        stack, _ = to_stack(image, axes)
        return np.ascontiguousarray(stack[indices])
    layout = StackLayout(axes=check_axes(axes, tuple(image.shape)), shape=tuple(image.shape))
    per_slice = slice_axes(layout.axes)
    planes = [to_stack(read_slice(image, layout, i), per_slice)[0][0] for i in indices]
    if not planes:
        return np.empty((0, layout.n_channels, *layout.yx_shape), dtype=np.dtype(image.dtype))
    return np.stack(planes)

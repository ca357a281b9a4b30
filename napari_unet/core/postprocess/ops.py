"""Label-level helpers shared by post-processing and the GUI: sizes, holes, ids and dtypes.

Everything here works on integer label images (``0`` = background) and avoids full-image
``int64``/``float64`` temporaries: counts and look-up tables are applied in row chunks of at most
:data:`CHUNK_PIXELS` pixels, so the extra memory is a few look-up tables plus one chunk.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

logger = logging.getLogger(__name__)

#: Pixels per row chunk for counting and look-up-table passes (4 Mpx: 32 MB of int64).
CHUNK_PIXELS = 1 << 22

#: 8-connectivity in 2-D (the scikit-image default for objects).
STRUCTURE_8 = np.ones((3, 3), dtype=bool)


def row_chunks(shape: tuple[int, ...], chunk_pixels: int = CHUNK_PIXELS) -> list[slice]:
    """Slices over the first axis of an array of ``shape``, each about ``chunk_pixels`` big."""
    row_pixels = max(1, int(np.prod(shape[1:], dtype=np.int64)))
    rows = max(1, chunk_pixels // row_pixels)
    return [slice(start, min(start + rows, shape[0])) for start in range(0, shape[0], rows)]


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer array, got dtype {labels.dtype}")
    if labels.size and np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
        raise ValueError("labels must not be negative")
    return labels


def label_counts(labels: np.ndarray, minlength: int = 0) -> np.ndarray:
    """Pixel count per id, like ``np.bincount(labels.ravel())`` but chunked.

    Args:
        labels: (...) non-negative integer labels.
        minlength: the result has at least this many entries.

    Returns:
        (max(labels) + 1 or minlength,) int64 counts; entry 0 counts the background.
    """
    labels = _check_labels(labels)
    if labels.ndim == 0:
        labels = labels.reshape(1)
    size = max(minlength, int(labels.max()) + 1 if labels.size else 1)
    counts = np.zeros(size, dtype=np.int64)
    for rows in row_chunks(labels.shape):
        counts += np.bincount(labels[rows].ravel(), minlength=size)
    return counts


def apply_lut_(labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Replace every id ``i`` of ``labels`` by ``lut[i]`` in place, chunk by chunk."""
    if labels.ndim == 0:
        labels[...] = lut[labels]
        return labels
    for rows in row_chunks(labels.shape):
        labels[rows] = lut[labels[rows]]
    return labels


def instance_label_dtype(max_id: int) -> np.dtype:
    """The label dtype for instance ids up to ``max_id``: uint16 up to 65535, else uint32.

    uint16 is the floor (not uint8) so that painting new objects in napari does not overflow.
    """
    if max_id < 0:
        raise ValueError(f"max_id must be >= 0, got {max_id}")
    if max_id <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    if max_id <= np.iinfo(np.uint32).max:
        return np.dtype(np.uint32)
    return np.dtype(np.uint64)


def semantic_label_dtype(n_classes: int) -> np.dtype:
    """uint8 for up to 256 classes (ids 0..255), else uint16."""
    return np.dtype(np.uint8) if n_classes <= 256 else np.dtype(np.uint16)


def sequential_lut(counts: np.ndarray, *, min_size: int = 0, offset: int = 0) -> np.ndarray:
    """Look-up table that drops ids with fewer than ``min_size`` pixels and numbers the rest.

    Args:
        counts: (N,) pixel count per id (entry 0 = background, always mapped to 0).
        min_size: ids with fewer pixels are mapped to 0.
        offset: kept ids become ``offset + 1, offset + 2, ...`` in increasing id order.

    Returns:
        (N,) uint32 (uint64 if the ids do not fit) look-up table.
    """
    keep = counts >= max(1, min_size)
    keep[0] = False
    n_kept = int(keep.sum())
    dtype = np.uint32 if offset + n_kept <= np.iinfo(np.uint32).max else np.uint64
    lut = np.zeros(counts.shape[0], dtype=dtype)
    lut[keep] = np.arange(offset + 1, offset + n_kept + 1, dtype=dtype)
    return lut


def relabel_sequential_dtype(labels: np.ndarray, *, min_size: int = 0) -> np.ndarray:
    """Number the objects 1..N (order of their old ids) in the smallest instance dtype.

    Args:
        labels: (...) non-negative integer instance labels; not modified.
        min_size: objects with fewer pixels are removed first (0 keeps all).

    Returns:
        (...) labels of :func:`instance_label_dtype` ``(N)`` (uint16 or uint32).
    """
    labels = _check_labels(labels)
    lut = sequential_lut(label_counts(labels), min_size=min_size)
    n = int(lut.max()) if lut.size else 0
    dtype = instance_label_dtype(n)
    out = np.empty(labels.shape, dtype=dtype)
    if labels.ndim == 0:
        out[...] = lut[labels]
        return out
    for rows in row_chunks(labels.shape):
        out[rows] = lut[labels[rows]]
    return out


def remove_small_objects_labels(
    labels: np.ndarray, min_size: int, *, components: bool = False
) -> np.ndarray:
    """Set objects with fewer than ``min_size`` pixels to 0; ids and dtype are kept.

    Args:
        labels: (...) non-negative integer labels; not modified.
        min_size: objects with fewer pixels are removed (0 or 1 keeps all).
        components: False: an object is all pixels of one id (instance labels). True: an object
            is a connected component (8-connectivity in each 2-D plane) of one id, as needed for
            semantic labels where one class has many separate regions.

    Returns:
        (...) a new array of the same dtype with the small objects set to 0.
    """
    return remove_small_objects_(_check_labels(labels).copy(), min_size, components=components)


def remove_small_objects_(
    labels: np.ndarray, min_size: int, *, components: bool = False
) -> np.ndarray:
    """In-place :func:`remove_small_objects_labels`; returns ``labels``."""
    labels = _check_labels(labels)
    if min_size <= 1 or not labels.size:
        return labels
    if not components:
        counts = label_counts(labels)
        lut = np.arange(counts.shape[0], dtype=labels.dtype)
        lut[counts < min_size] = 0
        return apply_lut_(labels, lut)
    for plane in _planes(labels):
        for value in np.flatnonzero(label_counts(plane)[1:]) + 1:
            structure = STRUCTURE_8 if plane.ndim == 2 else None
            regions, _ = ndimage.label(plane == value, structure=structure)
            small = label_counts(regions) < min_size
            small[0] = False
            plane[small[regions]] = 0
    return labels


def fill_holes_labels(labels: np.ndarray) -> np.ndarray:
    """Fill background holes that are enclosed by a single object, in place, plane by plane.

    A hole is a 4-connected background region that does not touch the image border and whose
    neighbours all carry the same id; it takes that id. Regions bordered by two objects (a gap
    where touching objects meet) stay background. Works for instance and semantic labels.

    Args:
        labels: (Y, X) or (S, Y, X) non-negative integer labels, modified in place.

    Returns:
        ``labels``. Extra memory: one int32 plane of background regions plus boolean masks.
    """
    labels = _check_labels(labels)
    if labels.ndim < 2:
        raise ValueError(f"fill_holes_labels needs 2-D planes, got shape {labels.shape}")
    for plane in _planes(labels):
        _fill_holes_plane(plane)
    return labels


def _planes(labels: np.ndarray) -> list[np.ndarray]:
    """Views of the trailing 2-D planes of ``labels`` (the array itself below 2-D)."""
    if labels.ndim < 2:
        return [labels]
    return [labels[index] for index in np.ndindex(labels.shape[:-2])]


def _fill_holes_plane(plane: np.ndarray) -> None:
    regions, n = ndimage.label(plane == 0)
    if n == 0:
        return
    big = np.iinfo(np.uint64).max
    lowest = np.full(n + 1, big, dtype=np.uint64)
    highest = np.zeros(n + 1, dtype=np.uint64)
    # Each background region's neighbours, through the four axis-aligned pixel pairs.
    for a_reg, b_lab, b_reg, a_lab in (
        (regions[:-1], plane[1:], regions[1:], plane[:-1]),
        (regions[:, :-1], plane[:, 1:], regions[:, 1:], plane[:, :-1]),
    ):
        for reg, lab in ((a_reg, b_lab), (b_reg, a_lab)):
            touch = (reg > 0) & (lab > 0)
            ids, values = reg[touch], lab[touch].astype(np.uint64)
            np.minimum.at(lowest, ids, values)
            np.maximum.at(highest, ids, values)
    border = np.zeros(n + 1, dtype=bool)
    for edge in (regions[0], regions[-1], regions[:, 0], regions[:, -1]):
        border[edge] = True
    fill = (lowest == highest) & ~border
    fill[0] = False
    if not fill.any():
        return
    lut = np.where(fill, lowest, 0).astype(plane.dtype)
    holes = fill[regions]
    plane[holes] = lut[regions[holes]]
    logger.debug("filled %d holes", int(fill.sum()))

"""Instance ids -> the three classes of an instance model (background, interior, boundary).

Moved out of :mod:`napari_unet.core.training.targets`, which re-exports
:func:`instances_to_classes`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["instances_to_classes"]


def _shifted_pairs(ndim: int):
    """For each axis and direction: (slice of pixels, slice of their neighbours)."""
    for axis in range(ndim):
        for here, there in ((slice(1, None), slice(None, -1)), (slice(None, -1), slice(1, None))):
            a = [slice(None)] * ndim
            b = [slice(None)] * ndim
            a[axis], b[axis] = here, there
            yield tuple(a), tuple(b)


def instances_to_classes(
    labels: np.ndarray, *, boundary_width: int = 2, annotated_mask: np.ndarray | None = None
) -> np.ndarray:
    """Instance ids -> 3 classes: 0 background, 1 interior, 2 boundary.

    A pixel of an object is a boundary pixel when one of its 4-neighbours (2-D) has a different
    label, background included; the boundary is then widened inward, within the same object, to
    ``boundary_width`` pixels. Two touching objects are therefore separated by
    ``2 · boundary_width`` boundary pixels. The image edge is not a boundary, nor are neighbours
    outside ``annotated_mask`` (their labels are not vouched for). Objects thinner than
    ``2 · boundary_width`` become boundary only.

    Args:
        labels: (Y, X) non-negative integer instance ids, 0 = background.
        boundary_width: boundary thickness in pixels, >= 1.
        annotated_mask: optional (Y, X) bool; see above.

    Returns:
        (Y, X) uint8 classes.
    """
    labels = np.asarray(labels)
    if boundary_width < 1:
        raise ValueError(f"boundary_width must be >= 1, got {boundary_width}")
    known = np.ones(labels.shape, bool) if annotated_mask is None else np.asarray(annotated_mask)
    objects = labels != 0
    boundary = np.zeros(labels.shape, bool)
    for here, there in _shifted_pairs(labels.ndim):
        boundary[here] |= objects[here] & known[there] & (labels[here] != labels[there])
    for _ in range(boundary_width - 1):
        grown = boundary.copy()
        for here, there in _shifted_pairs(labels.ndim):
            grown[here] |= objects[here] & boundary[there] & (labels[here] == labels[there])
        boundary = grown
    classes = objects.astype(np.uint8)
    classes[boundary] = 2
    return classes

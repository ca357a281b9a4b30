"""Targets and loss of the distance head of an instance model (``aux="distance"``, issue 17).

The target of a pixel of object ``i`` is its Euclidean distance to the nearest pixel outside
``i``, divided by the largest such distance in ``i``: 1 at each object's centre, small at its rim,
0 on background (per-object max-normalised EDT, as StarDist/DCAN-style auxiliary targets), so
the maxima of the prediction mark one seed per object however large it is and however it
touches its neighbours.

During training the target is computed from the (augmented, cropped) 3-class map of each batch
(:func:`distance_from_classes`: objects = connected interior regions, which the boundary class
separates), so it follows every augmentation exactly; :func:`distance_target` computes it from
instance ids.

Example:
    >>> labels = np.zeros((7, 7), np.int32); labels[1:6, 1:6] = 1
    >>> [round(float(v), 2) for v in distance_target(labels)[3]]
    [0.0, 0.33, 0.67, 1.0, 0.67, 0.33, 0.0]
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from napari_unet.core.training.targets import IGNORE_INDEX

__all__ = ["distance_from_classes", "distance_loss", "distance_target"]

logger = logging.getLogger(__name__)


def _normalise_per_object(edt: np.ndarray, objects: np.ndarray, count: int) -> np.ndarray:
    """``edt`` divided by its maximum within each object of ``objects`` (0 outside them)."""
    if count == 0:
        return np.zeros(edt.shape, np.float32)
    peaks = np.asarray(ndimage.maximum(edt, objects, index=np.arange(1, count + 1)), np.float64)
    table = np.concatenate([[1.0], np.where(peaks > 0, peaks, 1.0)])
    out = edt / table[objects]
    out[objects == 0] = 0.0
    return out.astype(np.float32)


def distance_target(labels: np.ndarray) -> np.ndarray:
    """(Y, X) float32 in [0, 1]: each object's distance to its boundary, max-normalised.

    Args:
        labels: (Y, X) instance ids, 0 = background; touching objects have different ids.
    """
    labels = np.asarray(labels)
    edt = np.zeros(labels.shape, np.float64)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        padded = np.pad(labels[box] == index, 1)  # the object's own outside is its boundary
        inside = padded[1:-1, 1:-1]
        edt[box][inside] = ndimage.distance_transform_edt(padded)[1:-1, 1:-1][inside]
    objects = labels.astype(np.int64, copy=False)
    return _normalise_per_object(edt, objects, int(objects.max(initial=0)))


def distance_from_classes(classes: np.ndarray) -> np.ndarray:
    """(B, Y, X) float32 targets from (B, Y, X) background/interior/boundary classes (0/1/2,
    :data:`IGNORE_INDEX` ignored): per connected interior region, the max-normalised distance to
    the nearest non-interior pixel; 0 on boundary and background."""
    out = np.zeros(classes.shape, np.float32)
    for b, plane in enumerate(classes):
        interior = plane == 1
        objects, count = ndimage.label(interior)
        edt = ndimage.distance_transform_edt(interior)
        out[b] = _normalise_per_object(edt, objects, count)
    return out


def distance_loss(raw: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Smooth L1 between ``sigmoid(raw)`` and the target, over annotated foreground pixels.

    Args:
        raw: (B, 1, h, w) the head's output (any float dtype).
        classes: (B, h, w) int64 classes at the output size.

    Returns:
        float32 scalar, 0 (differentiable) when no foreground pixel is annotated.
    """
    target = torch.from_numpy(distance_from_classes(classes.cpu().numpy())).to(raw.device)
    foreground = (classes != IGNORE_INDEX) & (classes > 0)
    predicted = torch.sigmoid(raw.float()[:, 0])
    if not bool(foreground.any()):
        return predicted.sum() * 0.0
    return F.smooth_l1_loss(predicted[foreground], target[foreground], beta=0.1)

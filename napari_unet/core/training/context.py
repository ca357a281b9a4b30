"""2.5-D training items: each annotated slice of a volume with its neighbours as input channels.

A 2.5-D model is a 2-D net whose input is slice ``z`` and the ``r`` slices above and below it
(:func:`~napari_unet.core.models.context25d.stack_neighbour_slices`, mirrored at the volume's
ends). From a volume annotated on a few slices, each slice that holds annotation becomes one 2-D
:class:`~napari_unet.core.training.items.TrainingItem`: image ``(C * (2r + 1), Y, X)``, the
slice's labels and mask. The neighbour slices are input context only: their labels (if any) are
not learnt from in that item, and slices without annotation give no item.

Each item is normalised per channel on its own (each neighbour slice measured alone), as
``iter_predict`` normalises the slices of a 2.5-D model (:mod:`napari_unet.core.inference.context`),
so training and prediction see the same intensities.
"""

from __future__ import annotations

import logging

import numpy as np

from napari_unet.core.inference.normalization import NormalizationConfig, normalize
from napari_unet.core.io.neighbours import neighbour_indices
from napari_unet.core.training.items import TrainingItem

logger = logging.getLogger(__name__)

__all__ = ["annotated_slices", "context_items"]


def annotated_slices(labels: np.ndarray, annotated_mask: np.ndarray | None) -> list[int]:
    """The Z indices of ``(Z, Y, X)`` labels whose XY slice holds an annotated pixel (all when
    ``annotated_mask`` is None)."""
    if annotated_mask is None:
        return list(range(labels.shape[0]))
    return [
        int(z) for z in np.flatnonzero(np.asarray(annotated_mask).reshape(len(labels), -1).any(1))
    ]


def context_items(
    volume: np.ndarray,
    labels: np.ndarray,
    annotated_mask: np.ndarray | None,
    radius: int,
    *,
    normalization: NormalizationConfig | None = None,
    name: str = "",
    flat_copies: bool = False,
) -> list[TrainingItem]:
    """One 2-D item per annotated slice of ``volume``, its neighbours as channels.

    Args:
        volume: ``(C, Z, Y, X)`` of any real dtype, not normalised (not modified).
        labels: ``(Z, Y, X)`` class or instance ids.
        annotated_mask: ``(Z, Y, X)`` bool (non-zero = annotated), or None: every voxel.
        radius: Neighbours on each side ``r`` (0: the annotated slices alone).
        normalization: How each item is normalised, per channel (default percentiles).
        name: The volume's name; item ``z`` is named ``name[z]``.
        flat_copies: Also give each slice as its own neighbours (item ``name[z]/flat``), so about
            half the patches carry no context (a dropout of the neighbours): the model must
            segment a slice alone and uses the neighbours on top of that.

    Returns:
        Items with image ``(C * (2r + 1), Y, X)`` float32, labels ``(Y, X)``, mask ``(Y, X)``
        or None, in Z order.
    """
    index = neighbour_indices(volume.shape[1], radius)  # (Z, 2r + 1)
    items = []
    for z in annotated_slices(labels, annotated_mask):
        stacked = np.asarray(volume[:, index[z]])  # (C, 2r + 1, Y, X)
        image = stacked.transpose(1, 0, 2, 3).reshape(-1, *stacked.shape[-2:])  # neighbour-major
        mask = None if annotated_mask is None else np.asarray(annotated_mask[z], dtype=bool)
        image = normalize(image, normalization)
        items.append(TrainingItem(image, np.asarray(labels[z]), mask, f"{name}[{z}]"))
        if flat_copies:
            centre = image[radius * volume.shape[0] : (radius + 1) * volume.shape[0]]
            flat = np.concatenate([centre] * (2 * radius + 1))
            items.append(TrainingItem(flat, items[-1].labels, mask, f"{name}[{z}]/flat"))
    logger.info(
        "%s: %d annotated slice(s) of %d, each with %d neighbour(s) on each side as channels",
        name or "volume",
        len(items),
        volume.shape[1],
        radius,
    )
    return items

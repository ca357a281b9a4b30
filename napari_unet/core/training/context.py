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

Flat copies (on by default, :data:`FLAT_COPIES`): each annotated slice is also given with itself
as its own neighbours (item ``name[z]/flat``), so about half the patches carry no context. From
3 annotated ISBI slices a 2.5-D model without them learnt neighbour patterns that do not carry to
the other slices (Rand error 0.91 against the 2-D model's 0.25 on one seed of
``bench_3d.py --quick``); with them it stayed within 0.03 of the 2-D model. A copy is the same
annotation: counts skip it (:func:`originals`), and the validation split keeps it on its
original's side (:func:`original_name`, ``core.training.split``).

In training the neighbours of each sample are also reversed at random
(``AugmentConfig.flip_context``, :mod:`napari_unet.core.training.augment_context`): on ISBI it
took the 2.5-D model's Rand error from 0.340 ± 0.107 to 0.191 ± 0.027 (seeds 0-2 of
``bench_3d.py --quick``), level with the 2-D model over 4 seeds.
"""

from __future__ import annotations

import logging

import numpy as np

from napari_unet.core.inference.normalization import NormalizationConfig, normalize
from napari_unet.core.io.neighbours import neighbour_indices
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.split import FLAT_SUFFIX, is_flat_copy, original_name

logger = logging.getLogger(__name__)

__all__ = [
    "FLAT_COPIES",
    "FLAT_SUFFIX",
    "annotated_slices",
    "context_items",
    "flat_copy",
    "is_flat_copy",
    "original_name",
    "originals",
    "with_flat_copies",
]

#: The one default for every place that makes 2.5-D training items (``train``/``simulate``
#: ``--context-slices``, the Fine-tune dock): also give each slice as its own neighbours.
FLAT_COPIES = True


def originals(items: list[TrainingItem]) -> list[TrainingItem]:
    """``items`` without the flat copies (what the user annotated, for counts)."""
    return [item for item in items if not is_flat_copy(item)]


def flat_copy(item: TrainingItem, radius: int) -> TrainingItem:
    """``item`` (image ``(C * (2r + 1), Y, X)``, neighbour-major) with every neighbour replaced by
    the centre slice; labels and mask shared, named ``item.name + FLAT_SUFFIX``."""
    channels = item.image.shape[0] // (2 * radius + 1)
    centre = item.image[radius * channels : (radius + 1) * channels]
    flat = np.concatenate([centre] * (2 * radius + 1))
    return TrainingItem(flat, item.labels, item.annotated_mask, f"{item.name}{FLAT_SUFFIX}")


def with_flat_copies(items: list[TrainingItem], radius: int) -> list[TrainingItem]:
    """Each 2.5-D item followed by its :func:`flat_copy` (``items`` as they are for ``r = 0``
    or items that are copies already)."""
    if radius <= 0:
        return list(items)
    out = []
    for item in items:
        out.append(item)
        if not is_flat_copy(item):
            out.append(flat_copy(item, radius))
    return out


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
    flat_copies: bool = FLAT_COPIES,
) -> list[TrainingItem]:
    """One 2-D item per annotated slice of ``volume``, its neighbours as channels.

    Args:
        volume: ``(C, Z, Y, X)`` of any real dtype, not normalised (not modified).
        labels: ``(Z, Y, X)`` class or instance ids.
        annotated_mask: ``(Z, Y, X)`` bool (non-zero = annotated), or None: every voxel.
        radius: Neighbours on each side ``r`` (0: the annotated slices alone).
        normalization: How each item is normalised, per channel (default percentiles).
        name: The volume's name; item ``z`` is named ``name[z]``.
        flat_copies: Also give each slice as its own neighbours (item ``name[z]/flat``, right
            after ``name[z]``), so about half the patches carry no context (a dropout of the
            neighbours): the model must segment a slice alone and uses the neighbours on top.

    Returns:
        Items with image ``(C * (2r + 1), Y, X)`` float32, labels ``(Y, X)``, mask ``(Y, X)``
        or None, in Z order (each flat copy after its slice).
    """
    index = neighbour_indices(volume.shape[1], radius)  # (Z, 2r + 1)
    items = []
    for z in annotated_slices(labels, annotated_mask):
        stacked = np.asarray(volume[:, index[z]])  # (C, 2r + 1, Y, X)
        image = stacked.transpose(1, 0, 2, 3).reshape(-1, *stacked.shape[-2:])  # neighbour-major
        mask = None if annotated_mask is None else np.asarray(annotated_mask[z], dtype=bool)
        image = normalize(image, normalization)
        items.append(TrainingItem(image, np.asarray(labels[z]), mask, f"{name}[{z}]"))
    logger.info(
        "%s: %d annotated slice(s) of %d, each with %d neighbour(s) on each side as channels%s",
        name or "volume",
        len(items),
        volume.shape[1],
        radius,
        " (and as its own neighbours)" if flat_copies and radius else "",
    )
    return with_flat_copies(items, radius) if flat_copies else items

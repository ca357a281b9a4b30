"""The fine-tune process with a 3-D start model: a session's slices become volume items.

The Correct dock stores corrections per 2-D slice of a Z-stack (``TrainingSlice``). A 3-D
network learns from volumes, so every image with annotated slices becomes ONE sparse volume
item: the whole image ``(C, Z, Y, X)`` normalised as a volume, its labels ``(Z, Y, X)`` with
the annotated slices filled in, and an ``annotated_mask`` that is True only at the annotated
pixels of those slices (every other voxel is ignored by the loss, as in the 3-D U-Net paper's
sparse annotation). The item is named ``"<image_id>/volume"``; a correction made while
training rebuilds it, and the core's pool replaces it by name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_unet.core.errors import TrainingDataError

logger = logging.getLogger(__name__)

#: Slices per training patch of a 3-D model (fewer when the volume is thinner).
PATCH_DEPTH = 16


def volume_name(image_id: str) -> str:
    """The name of an image's volume item."""
    return f"{image_id}/volume"


def is_volumetric(info: Any) -> bool:
    """Whether the start model (a ``CheckpointInfo``) is a 3-D network."""
    return int(getattr(info, "spatial_dims", 2)) == 3


def _volume_image(session: Any, image_id: str) -> tuple[np.ndarray, Any]:
    """``((C, Z, Y, X) image, entry)`` of a session image that is one Z-stack.

    Raises:
        TrainingDataError: the image has no Z axis of 2+ slices, or other stack axes.
    """
    from napari_unet.core.io.axes import to_stack

    entry = session.image(image_id)
    stack, layout = to_stack(np.asarray(session.load_image(image_id)), entry.axes)
    if layout.stack_axes != "Z" or layout.stack_shape[0] < 2:
        raise TrainingDataError(
            f"image {entry.name!r} has axes {entry.axes!r}: a 3-D model learns from Z-stacks "
            "(axes ZYX) of 2 or more slices; remove it from the session or start from a 2-D model."
        )
    return np.moveaxis(stack, 0, 1), entry  # (S=Z, C, Y, X) -> (C, Z, Y, X)


def volume_items(session: Any, slices: Sequence[Any], normalization: Any) -> list[Any]:
    """One sparse volume :class:`TrainingItem` per image among the annotated ``slices``.

    Args:
        session: the open ``Session``.
        slices: ``TrainingSlice`` records (labels and annotated masks of 2-D slices).
        normalization: the start model's ``NormalizationConfig`` (applied to the whole volume).
    """
    from napari_unet.core.inference.normalization import normalize
    from napari_unet.core.training.items import TrainingItem

    by_image: dict[str, list[Any]] = {}
    for piece in slices:
        by_image.setdefault(piece.image_id, []).append(piece)
    items = []
    for image_id, pieces in by_image.items():
        image, _ = _volume_image(session, image_id)
        channels, depth, height, width = image.shape
        flat = np.asarray(image, dtype=np.float32).reshape(channels, depth * height, width)
        dtype = np.result_type(*(np.asarray(p.labels).dtype for p in pieces))
        labels = np.zeros((depth, height, width), dtype=dtype)
        mask = np.zeros((depth, height, width), dtype=bool)
        for piece in pieces:
            labels[piece.slice_index] = np.asarray(piece.labels)
            mask[piece.slice_index] = np.asarray(piece.annotated_mask, dtype=bool)
        items.append(
            TrainingItem(
                image=normalize(flat, normalization).reshape(image.shape),
                labels=labels,
                annotated_mask=mask,
                name=volume_name(image_id),
            )
        )
        logger.info("volume item %s: %d annotated slice(s) of %d", image_id, len(pieces), depth)
    return items


def volume_settings(items: Sequence[Any], info: Any, config: Any) -> tuple[Any, Any]:
    """``(fingerprint, config)`` for volume items: the Y/X patch and batch from the data (as
    for 2-D), :data:`PATCH_DEPTH` slices deep (at most the thinnest volume)."""
    import dataclasses

    from napari_unet.trainer.guard import data_settings

    depth = min(PATCH_DEPTH, *(int(item.image.shape[1]) for item in items))
    flat = config.replace(patch_shape=tuple(config.patch_shape[-2:]))
    data, fitted = data_settings(list(items), info, flat)
    patch = (depth, *tuple(fitted.patch_shape)[-2:])
    return dataclasses.replace(data, patch_shape=patch), fitted.replace(patch_shape=patch)


__all__ = ["PATCH_DEPTH", "is_volumetric", "volume_items", "volume_name", "volume_settings"]

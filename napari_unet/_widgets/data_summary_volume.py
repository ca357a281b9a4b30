"""A 3-D model's validation units, for the Fine-tune dock's data summary.

The trainer of a 3-D model trains one volume item per image (``trainer.volume.volume_items``,
named ``<image_id>/volume``) and splits it as :mod:`napari_unet.core.training.split` does: by Y/X
tile through all of Z or, when the volume's Y/X extent fits in one tile, by Z plane. These helpers
turn the summary's per-slice tile counts into the same units, named as the trainer names them, so
the stable hash chooses exactly what the trainer will hold back. Pure (numpy; no Qt).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet.core.training.split import splits_by_plane
from napari_unet.trainer.volume import volume_name

if TYPE_CHECKING:
    from napari_unet.session import Session

__all__ = ["held_pixels", "stack_shapes", "volume_units"]


def stack_shapes(session: Session, counts: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    """``(Z, Y, X)`` of every image with a counted slice (``counts`` keyed ``<image_id>/<s>``)."""
    ids = {name.rsplit("/", 1)[0] for name in counts}
    return {i: (session.image(i).n_slices, *session.image(i).yx_shape) for i in ids}


def volume_units(
    counts: dict[str, Any], shapes: dict[str, tuple[int, int, int]], tile: int
) -> dict[str, tuple[np.ndarray, str]]:
    """``{volume item name: (annotated pixels per unit, kind)}`` from per-slice counts.

    Args:
        counts: ``<image_id>/<slice:05d>`` -> a record with ``tile_pixels`` ((ny, nx) annotated
            pixels of each ``tile`` square, outside the pins).
        shapes: ``(Z, Y, X)`` of each image.
        tile: the validation tile side.

    Returns:
        per volume: ``(ny, nx)`` pixels of each Y/X tile summed through Z (kind ``tile``), or
        ``(Z, 1, 1)`` pixels of each plane (kind ``slice``) for a volume split by plane; either
        array, split with ``tile=1``, gives the trainer's unit indices.
    """
    by_image: dict[str, dict[int, Any]] = {}
    for name, record in counts.items():
        image_id, index = name.rsplit("/", 1)
        by_image.setdefault(image_id, {})[int(index)] = record
    units: dict[str, tuple[np.ndarray, str]] = {}
    for image_id, slices in by_image.items():
        shape = shapes[image_id]
        if splits_by_plane(shape, tile):
            planes = np.zeros((shape[0], 1, 1), dtype=np.int64)
            for z, record in slices.items():
                planes[z, 0, 0] = int(record.tile_pixels.sum())
            units[volume_name(image_id)] = (planes, "slice")
        else:
            total = sum(np.asarray(r.tile_pixels, dtype=np.int64) for r in slices.values())
            units[volume_name(image_id)] = (total, "tile")
    return units


def held_pixels(unit: tuple[np.ndarray, str], held: np.ndarray) -> int:
    """Annotated pixels of the held-back units (``held``: a bool mask over ``unit``'s array)."""
    return int(unit[0][held].sum())

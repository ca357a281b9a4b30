"""The fine-tune process with a 2.5-D start model: each corrected slice with its neighbours.

A 2.5-D model (``train --context-slices R``; its checkpoint says ``context_slices``) is a 2-D
net whose input is slice ``z`` and the ``R`` slices above and below it. The Correct dock stores
corrections per 2-D slice; here each corrected slice becomes one 2-D training item whose image
is that slice with its ``R`` neighbours read from the session's image (the image layer's data),
mirrored beyond the first and last slice, neighbour-major as
:func:`~napari_unet.core.inference.context.neighbour_stack` gives them to ``predict``, and
normalised per channel as in :mod:`napari_unet.core.training.context`. Only the corrected slice
is learnt from; its neighbours are input context. A version trained from such a model keeps
``context_slices`` in its checkpoint (:func:`context_provenance`). Each slice is also given with
itself as its own neighbours (a flat copy, ``core.training.context.FLAT_COPIES``, the default that
``train --context-slices`` has too), so the model does not lean on neighbour patterns it cannot
generalise from a few corrected slices; the copies are not counted and never validated.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_unet.core.errors import TrainingDataError

logger = logging.getLogger(__name__)

__all__ = ["context_provenance", "context_slice_items", "context_slices_of"]


def context_slices_of(info: Any) -> int:
    """Neighbour slices on each side the start model (a ``CheckpointInfo``) takes (0: 2-D)."""
    return int(getattr(info, "context_slices", 0) or 0)


def context_provenance(info: Any) -> dict[str, int]:
    """What a published version records of the start model's context (empty for 2-D)."""
    radius = context_slices_of(info)
    return {"context_slices": radius} if radius else {}


def _check_z_stack(entry: Any, radius: int) -> None:
    """Refuse an image without a Z axis of 2+ slices (there are no neighbours to learn with)."""
    from napari_unet.core.io.axes import StackLayout

    layout = StackLayout(axes=entry.axes, shape=tuple(entry.shape))
    stack_axes = layout.stack_axes
    if "Z" not in stack_axes or layout.stack_shape[stack_axes.index("Z")] < 2:
        raise TrainingDataError(
            f"image {entry.name!r} has axes {entry.axes!r}: this 2.5-D model learns each slice "
            f"with its {radius} neighbour slice(s) from a Z-stack; remove the image from the "
            "session or start from a 2-D model."
        )


def context_slice_items(
    session: Any,
    slices: Sequence[Any],
    radius: int,
    normalization: Any,
    flat_copies: bool | None = None,
) -> list[Any]:
    """One 2-D :class:`TrainingItem` per annotated slice, its ``radius`` neighbours as channels.

    Args:
        session: the open ``Session`` (its images are read once each, lazily for Zarr).
        slices: ``TrainingSlice`` records (labels and annotated masks of 2-D slices).
        radius: neighbours on each side ``R``. normalization: the start model's
            ``NormalizationConfig`` (per channel, each neighbour measured alone).
        flat_copies: each item followed by its flat copy (``name/flat``); None: the core's
            default :data:`~napari_unet.core.training.context.FLAT_COPIES`.

    Returns:
        Items named as the slices, image ``(C * (2R + 1), Y, X)`` float32, labels and mask
        ``(Y, X)``.

    Raises:
        TrainingDataError: an image without a Z axis of 2 or more slices.
    """
    from napari_unet.core.inference.context import neighbour_stack
    from napari_unet.core.inference.normalization import normalize
    from napari_unet.core.training.context import FLAT_COPIES, with_flat_copies
    from napari_unet.core.training.items import TrainingItem

    by_image: dict[str, list[Any]] = {}
    for piece in slices:
        by_image.setdefault(piece.image_id, []).append(piece)
    items = []
    for image_id, pieces in by_image.items():
        entry = session.image(image_id)
        _check_z_stack(entry, radius)
        image = session.load_image(image_id)
        indices = [int(p.slice_index) for p in pieces]
        stacked = neighbour_stack(image, entry.axes, indices, radius)  # (n, C*(2R+1), Y, X)
        for piece, planes in zip(pieces, stacked):
            items.append(
                TrainingItem(
                    image=normalize(np.asarray(planes), normalization),
                    labels=np.asarray(piece.labels),
                    annotated_mask=np.asarray(piece.annotated_mask, dtype=bool),
                    name=piece.name,
                )
            )
        logger.info("%s: %d slice(s) with %d neighbour(s) each side", image_id, len(pieces), radius)
    copies = FLAT_COPIES if flat_copies is None else flat_copies
    return with_flat_copies(items, radius) if copies else items

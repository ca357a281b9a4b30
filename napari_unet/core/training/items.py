"""Annotated training images and the window arithmetic shared by sampling and validation.

A :class:`TrainingItem` is one normalised image with its labels and the ``annotated_mask`` the
user vouches for. :func:`check_item` says what to change when one cannot be trained on.
Windows that leave the image are mirror-padded for the image input and ignored for the targets.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import numpy as np

from napari_unet.core.errors import TrainingDataError
from napari_unet.core.training.targets import IGNORE_INDEX

logger = logging.getLogger(__name__)

#: ``targets_fn(labels, annotated_mask) -> (classes, weights)``: integer class targets (Y, X) with
#: IGNORE_INDEX outside the mask (or a float target image (C, Y, X) for restoration) and a float32
#: weight map (Y, X) that is 0 where nothing is learnt.
TargetsFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(frozen=True, eq=False)
class TrainingItem:
    """One annotated image.

    Attributes:
        image: (C, Y, X) float32, normalised and finite.
        labels: (Y, X) integer class or instance ids (0 = background); for restoration a float
            target image (C', Y, X) or (Y, X).
        annotated_mask: (Y, X) bool, the pixels the user vouches for; ``None`` means all of them.
        name: stable identifier (file name, layer name); the validation split hashes it.
    """

    image: np.ndarray
    labels: np.ndarray
    annotated_mask: np.ndarray | None = None
    name: str = ""

    @property
    def spatial_shape(self) -> tuple[int, int]:
        """(Y, X) of the image."""
        return tuple(self.image.shape[-2:])  # type: ignore[return-value]

    @property
    def mask(self) -> np.ndarray:
        """The annotated mask as a (Y, X) bool array (all True when none was given)."""
        if self.annotated_mask is None:
            return np.ones(self.spatial_shape, dtype=bool)
        return np.asarray(self.annotated_mask, dtype=bool)


def check_item(item: TrainingItem, task: str) -> None:
    """Raise :class:`TrainingDataError` saying what to change when ``item`` cannot be used."""
    label = f"image {item.name!r}" if item.name else "the image"
    image = np.asarray(item.image)
    if image.ndim != 3:
        raise TrainingDataError(
            f"{label} has shape {image.shape}; training needs (C, Y, X) images — add a channel "
            "axis."
        )
    if not np.issubdtype(image.dtype, np.floating) or not np.isfinite(image).all():
        raise TrainingDataError(
            f"{label} is not a finite float image; normalise it before training."
        )
    labels = np.asarray(item.labels)
    spatial = image.shape[-2:]
    if labels.shape[-2:] != spatial or (task != "restoration" and labels.ndim != 2):
        raise TrainingDataError(
            f"the labels of {label} have shape {labels.shape} but the image is {tuple(spatial)} "
            "(Y, X); give labels with the same height and width as the image."
        )
    if item.annotated_mask is not None and np.shape(item.annotated_mask) != tuple(spatial):
        raise TrainingDataError(
            f"the annotated mask of {label} has shape {np.shape(item.annotated_mask)} but the "
            f"image is {tuple(spatial)}; give a mask with the same height and width."
        )
    if task == "restoration":
        if not np.isfinite(labels.astype(np.float32, copy=False)).all():
            raise TrainingDataError(f"the target image of {label} contains NaN or Inf values.")
        return
    if labels.dtype == bool:
        return
    _check_finite_labels(labels, label)
    whole = np.issubdtype(labels.dtype, np.integer) or (
        np.issubdtype(labels.dtype, np.floating) and np.array_equal(labels, np.round(labels))
    )
    if not whole:
        raise TrainingDataError(
            f"the labels of {label} are {labels.dtype} values that are not whole numbers; labels "
            "must be integer class or instance ids (0 = background) — save them as an integer "
            "image, not a probability map or a resized image."
        )
    if labels.size and labels.min() < 0:
        raise TrainingDataError(
            f"the labels of {label} contain negative values ({int(labels.min())}); use 0 for "
            "background and positive ids, and mark pixels to skip with the annotated mask."
        )


def _check_finite_labels(labels: np.ndarray, label: str) -> None:
    """Name NaN or infinite values in float labels (a resampled or masked image, typically)."""
    if not np.issubdtype(labels.dtype, np.floating) or np.isfinite(labels).all():
        return
    what = "NaN" if np.isnan(labels).any() else "infinite"
    raise TrainingDataError(
        f"the labels of {label} hold {what} values; labels must be integer class or instance ids "
        f"(0 = background) — replace the {what} pixels with 0 or an id, or leave them out of the "
        "annotated mask."
    )


def mirror_index(start: int, length: int, size: int) -> np.ndarray:
    """Indices ``start .. start+length`` folded into ``[0, size)`` by mirroring (no edge repeat)."""
    index = np.arange(start, start + length)
    if size == 1:
        return np.zeros(length, dtype=np.intp)
    period = 2 * (size - 1)
    index = np.abs(index) % period
    return np.where(index >= size, period - index, index).astype(np.intp)


def window_start(centre: int, length: int, size: int) -> int:
    """Top-left of a ``length`` window around ``centre``, shifted to overlap the image most.

    A window that fits is kept inside ``[0, size)``; a larger one covers the whole image. Either
    way ``centre`` stays inside the window.
    """
    start = centre - length // 2
    low, high = min(0, size - length), max(0, size - length)
    return min(max(start, low), high)


def crop_targets(
    classes: np.ndarray, weights: np.ndarray, y0: int, x0: int, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Target window at ``(y0, x0)`` of ``shape``; outside the image: IGNORE_INDEX, weight 0."""
    h, w = shape
    size_y, size_x = weights.shape[-2:]
    sy = slice(max(y0, 0), min(y0 + h, size_y))
    sx = slice(max(x0, 0), min(x0 + w, size_x))
    dy = slice(sy.start - y0, sy.stop - y0)
    dx = slice(sx.start - x0, sx.stop - x0)
    out_weights = np.zeros((h, w), dtype=np.float32)
    out_weights[dy, dx] = weights[sy, sx]
    if classes.dtype.kind == "f":  # restoration target image (C', Y, X) or (Y, X)
        target = classes if classes.ndim == 3 else classes[None]
        out_classes = np.zeros((target.shape[0], h, w), dtype=np.float32)
        out_classes[:, dy, dx] = target[:, sy, sx]
    else:
        out_classes = np.full((h, w), IGNORE_INDEX, dtype=np.int64)
        out_classes[dy, dx] = classes[sy, sx]
    return out_classes, out_weights

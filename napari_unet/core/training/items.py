"""Annotated training images and the window arithmetic shared by sampling and validation.

A :class:`TrainingItem` is one normalised image -- a (C, Y, X) image for 2-D models or a
(C, Z, Y, X) volume for 3-D ones -- with its labels and the ``annotated_mask`` the user vouches
for (in a volume: any voxels, e.g. a few slices in any orientation). :func:`check_item` says
what to change when one cannot be trained on. Windows that leave the image are mirror-padded
for the image input and ignored for the targets.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

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
        image: (C, Y, X) float32, normalised and finite; a volume for 3-D models is
            (C, Z, Y, X) and every shape below then has Z first.
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
    def spatial_shape(self) -> tuple[int, ...]:
        """(Y, X) of the image, (Z, Y, X) of a volume."""
        return tuple(self.image.shape[1:])

    @property
    def mask(self) -> np.ndarray:
        """The annotated mask as a bool array of :attr:`spatial_shape` (all True when none
        was given)."""
        if self.annotated_mask is None:
            return np.ones(self.spatial_shape, dtype=bool)
        return np.asarray(self.annotated_mask, dtype=bool)


def check_item(item: TrainingItem, task: str) -> None:
    """Raise :class:`TrainingDataError` saying what to change when ``item`` cannot be used."""
    label = f"image {item.name!r}" if item.name else "the image"
    image = np.asarray(item.image)
    if image.ndim not in (3, 4) or (image.ndim == 4 and task == "restoration"):
        raise TrainingDataError(
            f"{label} has shape {image.shape}; training needs (C, Y, X) images (or (C, Z, Y, X) "
            "volumes for 3-D models) — add a channel axis."
        )
    if not np.issubdtype(image.dtype, np.floating) or not np.isfinite(image).all():
        raise TrainingDataError(
            f"{label} is not a finite float image; normalise it before training."
        )
    labels = np.asarray(item.labels)
    spatial = image.shape[1:]
    restoration = task == "restoration" and labels.shape[-2:] == spatial
    if labels.shape != spatial and not restoration:
        axes, sides = (
            ("(Z, Y, X)", "shape") if len(spatial) == 3 else ("(Y, X)", "height and width")
        )
        raise TrainingDataError(
            f"the labels of {label} have shape {labels.shape} but the image is {tuple(spatial)} "
            f"{axes}; give labels with the same {sides} as the image."
        )
    if item.annotated_mask is not None and np.shape(item.annotated_mask) != tuple(spatial):
        raise TrainingDataError(
            f"the annotated mask of {label} has shape {np.shape(item.annotated_mask)} but the "
            f"image is {tuple(spatial)}; give a mask with the same "
            f"{'shape' if len(spatial) == 3 else 'height and width'}."
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


def window_start(centre: int, length: int, size: int, *, offset: int | None = None) -> int:
    """Top-left of a ``length`` window holding ``centre`` at ``offset`` (default ``length //
    2``, the middle), shifted to overlap the image most.

    A window that fits is kept inside ``[0, size)``; a larger one covers the whole image. Either
    way ``centre`` stays inside the window.
    """
    start = centre - (length // 2 if offset is None else offset)
    low, high = min(0, size - length), max(0, size - length)
    return min(max(start, low), high)


def window_starts(
    centre: Sequence[int],
    shape: Sequence[int],
    sizes: Sequence[int],
    rng: np.random.Generator,
) -> list[int]:
    """Window starts (one per axis) of a ``shape`` window holding the annotated pixel ``centre``.

    An image (2 axes) puts it in the window's middle. In a volume (3 axes) it lands at a random
    place in the window: a volume annotated on a few slices would otherwise always put the
    annotated slice at the window's middle depth, and a 3-D net learns that depth and pooling
    phase only (the other slices of a 3-D prediction turn to garbage). Dense 2-D annotation
    already covers every offset.
    """
    if len(centre) == 3:
        offsets = [int(rng.integers(n)) for n in shape]
    else:
        offsets = [n // 2 for n in shape]
    return [window_start(c, n, s, offset=o) for c, n, s, o in zip(centre, shape, sizes, offsets)]


def crop_targets(
    classes: np.ndarray, weights: np.ndarray, y0: int, x0: int, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Target window at ``(y0, x0)`` of ``shape``; outside the image: IGNORE_INDEX, weight 0."""
    return crop_targets_nd(classes, weights, (y0, x0), shape)


def crop_targets_nd(
    classes: np.ndarray, weights: np.ndarray, starts: tuple[int, ...], shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Target window at ``starts`` of ``shape`` (2 or 3 axes, the last axes of ``weights``).

    Outside the image: IGNORE_INDEX (restoration: 0) and weight 0.
    """
    sizes = weights.shape[-len(shape) :]
    source = tuple(slice(max(s, 0), min(s + n, size)) for s, n, size in zip(starts, shape, sizes))
    dest = tuple(slice(src.start - s, src.stop - s) for src, s in zip(source, starts))
    out_weights = np.zeros(shape, dtype=np.float32)
    out_weights[dest] = weights[source]
    if classes.dtype.kind == "f":  # restoration target image (C', Y, X) or (Y, X)
        target = classes if classes.ndim == len(shape) + 1 else classes[None]
        out_classes = np.zeros((target.shape[0], *shape), dtype=np.float32)
        out_classes[(slice(None), *dest)] = target[(slice(None), *source)]
    else:
        out_classes = np.full(shape, IGNORE_INDEX, dtype=np.int64)
        out_classes[dest] = classes[source]
    return out_classes, out_weights
